//! Fuzz target `enrol_frame`: arbitrary bytes, as a hostile peer would send them, through the
//! check in `fuzz/checks/enrol_frame.rs` (shared with the stable corpus test that CI runs).

#![no_main]

#[path = "../checks/enrol_frame.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
