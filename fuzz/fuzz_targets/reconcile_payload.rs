//! Fuzz target `reconcile_payload`: arbitrary bytes, as a hostile peer would send them, through the
//! check in `fuzz/checks/reconcile_payload.rs` (shared with the stable corpus test that CI runs).

#![no_main]

#[path = "../checks/reconcile_payload.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
