//! Fuzz target `frame_prefix`: arbitrary bytes, as a hostile peer would send them, through the
//! check in `fuzz/checks/frame_prefix.rs` (shared with the stable corpus test that CI runs).

#![no_main]

#[path = "../checks/frame_prefix.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
