//! Fuzz target `gossip_announcement`: arbitrary bytes, as a hostile peer would send them, through the
//! check in `fuzz/checks/gossip_announcement.rs` (shared with the stable corpus test that CI runs).

#![no_main]

#[path = "../checks/gossip_announcement.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
