//! The fuzz target for this crate's decoder of peer input, gossip announcements,
//! replayed on stable Rust: every committed corpus file under
//! `fuzz/corpus/gossip_announcement/`, then seeded mutants of them, through the check
//! the fuzz target runs (`fuzz/checks/gossip_announcement.rs`). CI runs this;
//! cargo-fuzz is for longer hunts by hand (`docs/protocol.md`, "Fuzzing").
//!
//! `cargo test -p peerdoc-node --test fuzz_corpus -- --ignored write_seed_corpus`
//! rewrites the generated seeds.

#[path = "../../../fuzz/checks/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/checks/gossip_announcement.rs"]
mod gossip_announcement;

use automerge::ChangeHash;
use corpus::{MUTANTS, check_corpus, check_mutants, write_seeds};
use peerdoc_core::DocumentId;
use peerdoc_node::fuzzing::{decode_announcement, encode_announcement};

const TARGET: &str = "gossip_announcement";

#[test]
fn gossip_announcement_corpus() {
    assert!(check_corpus(TARGET, gossip_announcement::check) >= 5);
}

#[test]
fn gossip_announcement_mutants() {
    check_mutants(TARGET, gossip_announcement::check, MUTANTS);
}

/// The seeds must stay what their names say: valid ones decode, malformed ones do not.
#[test]
fn seeds_are_what_their_names_say() {
    for (name, bytes) in corpus::seeds(TARGET) {
        let decoded = decode_announcement(&bytes);
        if name.starts_with("ok-") {
            assert!(decoded.is_ok(), "{name}: {decoded:?}");
        } else if name.starts_with("bad-") {
            assert!(decoded.is_err(), "{name}: {decoded:?}");
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus/: run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    let doc = DocumentId::from_bytes(std::array::from_fn(|i| 0x10 + i as u8));
    let heads: Vec<ChangeHash> = (0..9u8).map(|n| ChangeHash([n * 17; 32])).collect();
    let text = doc.to_string();
    let head = heads[1].to_string();
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("ok-no-heads", encode_announcement(doc, &[])),
        ("ok-one-head", encode_announcement(doc, &heads[..1])),
        ("ok-eight-heads", encode_announcement(doc, &heads[..8])),
        // More heads than announced: encoded as none.
        ("ok-nine-heads", encode_announcement(doc, &heads)),
        // Another JSON writer's spelling: spaces, key order, escapes, extra keys.
        (
            "ok-reordered",
            format!(r#"{{ "heads" : [ "{head}" ], "x": null, "doc": "{text}", "v": 1 }}"#)
                .into_bytes(),
        ),
        ("bad-empty", Vec::new()),
        ("bad-not-json", b"\xff\x00garbage".to_vec()),
        (
            "bad-version-2",
            format!(r#"{{"v":2,"doc":"{text}","heads":[]}}"#).into_bytes(),
        ),
        (
            "bad-doc",
            br#"{"v":1,"doc":"not a doc id","heads":[]}"#.to_vec(),
        ),
        (
            "bad-head",
            format!(r#"{{"v":1,"doc":"{text}","heads":["zz"]}}"#).into_bytes(),
        ),
        (
            "bad-heads-not-a-list",
            format!(r#"{{"v":1,"doc":"{text}","heads":"none"}}"#).into_bytes(),
        ),
        (
            "bad-deep-nesting",
            [b"[".repeat(200), b"]".repeat(200)].concat(),
        ),
        ("bad-too-large", vec![b' '; 2 * 1024 + 1]),
    ];
    write_seeds(TARGET, &seeds);
}
