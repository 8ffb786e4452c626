//! Fuzz target `team_entry`: arbitrary bytes, as a hostile peer would send them, through the
//! check in `fuzz/checks/team_entry.rs` (shared with the stable corpus test that CI runs).

#![no_main]

#[path = "../checks/team_entry.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
