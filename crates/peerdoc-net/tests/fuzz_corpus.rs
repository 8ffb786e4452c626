//! The fuzz target for this crate's decoder of peer input, the sync stream's framing,
//! replayed on stable Rust: every committed corpus file under `fuzz/corpus/frame_prefix/`,
//! then seeded mutants of them, through the check the fuzz target runs
//! (`fuzz/checks/frame_prefix.rs`). CI runs this; cargo-fuzz is for longer hunts by hand
//! (`docs/protocol.md`, "Fuzzing").
//!
//! `cargo test -p peerdoc-net --test fuzz_corpus -- --ignored write_seed_corpus`
//! rewrites the generated seeds.

#[path = "../../../fuzz/checks/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/checks/frame_prefix.rs"]
mod frame_prefix;

use corpus::{MUTANTS, check_corpus, check_mutants, write_seeds};
use peerdoc_net::fuzzing::{decode_frame_len, encode_frame_len};

const TARGET: &str = "frame_prefix";

#[test]
fn frame_prefix_corpus() {
    assert!(check_corpus(TARGET, frame_prefix::check) >= 5);
}

#[test]
fn frame_prefix_mutants() {
    check_mutants(TARGET, frame_prefix::check, MUTANTS);
}

/// The seeds must stay what their names say: a prefix that decodes, one that needs more
/// bytes, or one that is malformed.
#[test]
fn seeds_are_what_their_names_say() {
    for (name, bytes) in corpus::seeds(TARGET) {
        let decoded = decode_frame_len(&bytes);
        if name.starts_with("ok-") {
            assert!(matches!(decoded, Ok(Some(_))), "{name}: {decoded:?}");
        } else if name.starts_with("bad-") {
            assert!(decoded.is_err(), "{name}: {decoded:?}");
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus/: run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    // Each length where the prefix grows by a byte, alone.
    for (name, len) in [
        ("ok-len-0", 0),
        ("ok-len-127", 127),
        ("ok-len-128", 128),
        ("ok-len-16383", 16_383),
        ("ok-len-16384", 16_384),
        ("ok-len-2097152", 2_097_152),
        ("ok-len-u32-max", u32::MAX),
    ] {
        seeds.push((name, encode_frame_len(len)));
    }
    // Whole frames as a peer writes them: a few of different lengths, one at the cap
    // (256 bytes, `frame_prefix.rs`) and one over it.
    let mut stream = Vec::new();
    for payload in [&b"hello"[..], &[], &[0x42; 200]] {
        stream.extend(encode_frame_len(payload.len() as u32));
        stream.extend_from_slice(payload);
    }
    seeds.push(("ok-three-frames", stream));
    let mut at_cap = encode_frame_len(256);
    at_cap.extend([7; 256]);
    seeds.push(("ok-frame-at-cap", at_cap));
    let mut over_cap = encode_frame_len(257);
    over_cap.extend([7; 257]);
    seeds.push(("ok-frame-over-cap", over_cap));
    seeds.push(("ok-truncated-payload", vec![5, 1, 2]));
    seeds.push(("incomplete-prefix", vec![0x80, 0x80]));
    seeds.push(("empty", Vec::new()));
    // Malformed: zero with a non-minimal encoding, a trailing zero group, over u32::MAX,
    // and six bytes of continuation.
    seeds.push(("bad-non-minimal-zero", vec![0x80, 0x00]));
    seeds.push(("bad-trailing-zero-group", vec![0x81, 0x80, 0x00]));
    seeds.push(("bad-over-u32", vec![0xff, 0xff, 0xff, 0xff, 0x7f]));
    seeds.push(("bad-six-bytes", vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
    write_seeds(TARGET, &seeds);
}
