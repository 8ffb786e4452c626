//! Check for the `team_entry` fuzz target: one entry of a team's membership document,
//! which every member (and so a malicious or broken one) can write and which syncs like
//! any document. The daemon reads each entry as a signed op (`peerdoc_team::SignedOp`)
//! or a signed address record (`SignedAddresses`), then verifies it
//! (`crates/peerdoc/src/team/doc.rs`, `team/addrs.rs`).
//!
//! Shared by `fuzz/fuzz_targets/team_entry.rs` and the stable corpus test
//! `crates/peerdoc-team/tests/fuzz_corpus.rs`. Panics when a property fails.

use peerdoc_team::{Membership, SignedAddresses, SignedOp, TeamId};

/// The id of the team the committed seeds were signed in (the corpus generator asserts
/// it), so that valid seeds get past the team check into the fold.
pub(crate) const SEED_TEAM: [u8; 16] = [
    0x82, 0x09, 0xe5, 0xfd, 0x2a, 0x75, 0x62, 0xb6, 0xe8, 0x90, 0x33, 0x2e, 0xdb, 0x70, 0x0f, 0x28,
];

/// Besides "never panics": an entry that decodes re-encodes to JSON that decodes to the
/// same entry; an op that verifies decodes to the same body; folding an entry into a
/// membership never panics.
pub(crate) fn check(data: &[u8]) {
    let team = TeamId::from_bytes(SEED_TEAM);
    if let Ok(op) = serde_json::from_slice::<SignedOp>(data) {
        let json = serde_json::to_vec(&op).expect("an op encodes");
        let again = serde_json::from_slice::<SignedOp>(&json).expect("re-encoded op");
        assert_eq!(again, op, "re-encoded op differs");
        let body = op.body();
        if let Ok(verified) = op.verify() {
            assert_eq!(body.as_ref(), Ok(&verified), "verify and body disagree");
        }
        let _ = format!("{op:?}");
        let _ = Membership::from_ops(team, [op]);
    }
    if let Ok(record) = serde_json::from_slice::<SignedAddresses>(data) {
        let json = serde_json::to_vec(&record).expect("a record encodes");
        let again = serde_json::from_slice::<SignedAddresses>(&json).expect("re-encoded record");
        assert_eq!(again, record, "re-encoded record differs");
        let _ = record.verify(&team);
    }
}
