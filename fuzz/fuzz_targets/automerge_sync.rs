//! Fuzz target `automerge_sync`: arbitrary bytes, as a hostile peer would send them, through the
//! check in `fuzz/checks/automerge_sync.rs` (shared with the stable corpus test that CI runs).

#![no_main]

#[path = "../checks/automerge_sync.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
