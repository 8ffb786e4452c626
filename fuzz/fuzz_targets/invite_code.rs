//! Fuzz target `invite_code`: arbitrary bytes, as a code a stranger hands out, through the
//! check in `fuzz/checks/invite_code.rs` (shared with the stable corpus test that CI runs).

#![no_main]

#[path = "../checks/invite_code.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
