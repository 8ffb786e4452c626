//! The fuzz targets for this crate's decoders of peer input, replayed on stable Rust:
//! every committed corpus file under `fuzz/corpus/<target>/`, then seeded mutants of
//! them, through the same checks the fuzz targets run (`fuzz/checks/`). CI runs this;
//! cargo-fuzz is for longer hunts by hand (`docs/protocol.md`, "Fuzzing").
//!
//! `cargo test -p peerdoc-core --test fuzz_corpus -- --ignored write_seed_corpus`
//! rewrites the generated seeds from real encodings.

#[path = "../../../fuzz/checks/automerge_sync.rs"]
mod automerge_sync;
#[path = "../../../fuzz/checks/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/checks/decode_message.rs"]
mod decode_message;
#[path = "../../../fuzz/checks/reconcile_payload.rs"]
mod reconcile_payload;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, Automerge, ROOT};
use peerdoc_core::reconcile::{
    Bound, ItemSet, Message, Range, RangeBody, ReconcileConfig, Reconciliation,
};
use peerdoc_core::wire::decode_sync_data;
use peerdoc_core::{DocumentId, HeadsDigest};

use corpus::{MUTANTS, check_corpus, check_mutants, write_seeds};

#[test]
fn decode_message_corpus() {
    assert!(check_corpus("decode_message", decode_message::check) >= 5);
}

#[test]
fn decode_message_mutants() {
    check_mutants("decode_message", decode_message::check, MUTANTS);
}

#[test]
fn reconcile_payload_corpus() {
    assert!(check_corpus("reconcile_payload", reconcile_payload::check) >= 5);
}

#[test]
fn reconcile_payload_mutants() {
    check_mutants("reconcile_payload", reconcile_payload::check, MUTANTS);
}

#[test]
fn automerge_sync_corpus() {
    assert!(check_corpus("automerge_sync", automerge_sync::check) >= 5);
}

#[test]
fn automerge_sync_mutants() {
    check_mutants("automerge_sync", automerge_sync::check, MUTANTS);
}

/// The seeds must stay what their names say: valid ones decode, malformed ones do not.
#[test]
fn seeds_are_what_their_names_say() {
    for target in ["decode_message", "reconcile_payload", "automerge_sync"] {
        for (name, bytes) in corpus::seeds(target) {
            if name.starts_with("bad-") {
                assert!(!decodes(target, &bytes), "{target}/{name} decodes");
            } else if name.starts_with("ok-") {
                assert!(decodes(target, &bytes), "{target}/{name} does not decode");
            }
        }
    }
}

/// Whether `bytes` get through `target`'s decoder.
fn decodes(target: &str, bytes: &[u8]) -> bool {
    match target {
        "decode_message" => peerdoc_core::wire::Message::decode(bytes, usize::MAX).is_ok(),
        "reconcile_payload" => Message::decode(bytes).is_ok(),
        "automerge_sync" => decode_sync_data(bytes).is_ok(),
        _ => unreachable!("no target {target}"),
    }
}

#[test]
#[ignore = "writes fuzz/corpus/: run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    write_seeds("decode_message", &message_seeds());
    write_seeds("reconcile_payload", &reconcile_seeds());
    write_seeds("automerge_sync", &sync_seeds());
}

/// The wire golden vectors (real cbor-x output), and inputs the decoder must refuse.
fn message_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut seeds = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/vectors")
        .map(|entry| entry.expect("vector").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "hex"))
        .collect();
    names.sort();
    for path in names {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("vector");
        let name: &'static str = format!("ok-{stem}").leak();
        seeds.push((name, hex::decode(text.trim()).expect("hex vector")));
    }
    let sync = seeds
        .iter()
        .find(|(name, _)| *name == "ok-sync")
        .expect("sync vector")
        .1
        .clone();
    seeds.push(("bad-empty", Vec::new()));
    seeds.push(("bad-truncated-sync", sync[..sync.len() / 2].to_vec()));
    // Nested arrays deeper than the decoder walks.
    let mut deep = vec![0xa1, 0x61, b'x'];
    deep.extend([0x81; 40]);
    deep.push(0x00);
    seeds.push(("bad-too-deep", deep));
    // A map header announcing 2^32 entries in a few bytes.
    seeds.push(("bad-huge-map", vec![0xba, 0xff, 0xff, 0xff, 0xff, 0x60]));
    seeds
}

/// Payloads of real reconciliation runs between sets that differ in a few documents,
/// hand-made payloads for each range kind, and inputs the decoder must refuse.
fn reconcile_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (size, differ) in [(0, 0), (1, 1), (40, 1), (300, 7)] {
        let (ours, theirs) = item_sets(size, differ);
        for (round, payload) in reconcile_run(&ours, &theirs).into_iter().enumerate() {
            let name: &'static str = format!("ok-run-{size}-{differ}-round-{round}").leak();
            seeds.push((name, payload));
        }
    }
    let id = |byte: u8| DocumentId::from_bytes([byte; 16]);
    let handmade = Message {
        ranges: vec![
            Range {
                upper: Bound::Id(DocumentId::from_bytes([
                    0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ])),
                body: RangeBody::Skip,
            },
            Range {
                upper: Bound::Id(id(0x60)),
                body: RangeBody::Fingerprint {
                    fp: u128::MAX - 7,
                    count: 300,
                },
            },
            Range {
                upper: Bound::Id(id(0x90)),
                body: RangeBody::Items {
                    items: vec![
                        (id(0x61), HeadsDigest([1; 16])),
                        (id(0x70), HeadsDigest([2; 16])),
                    ],
                    reply_wanted: true,
                },
            },
            Range {
                upper: Bound::Infinity,
                body: RangeBody::Items {
                    items: vec![(id(0xf0), HeadsDigest([3; 16]))],
                    reply_wanted: false,
                },
            },
        ],
    };
    seeds.push(("ok-every-range-kind", handmade.encode()));
    seeds.push(("bad-empty", Vec::new()));
    seeds.push(("bad-version-2", vec![2, 1, 0xff, 0]));
    seeds.push(("bad-no-ranges", vec![1, 0]));
    // A count of 2^63 ranges in eleven bytes.
    seeds.push((
        "bad-huge-count",
        vec![
            1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
        ],
    ));
    // Bounds that go down, and a range after infinity.
    seeds.push(("bad-decreasing-bounds", vec![1, 2, 1, 0x50, 0, 1, 0x40, 0]));
    seeds.push(("bad-after-infinity", vec![1, 2, 0xff, 0, 0xff, 0]));
    seeds.push(("bad-bound-too-long", vec![1, 1, 17, 0]));
    let mut trailing = handmade.encode();
    trailing.push(0);
    seeds.push(("bad-trailing-byte", trailing));
    seeds
}

/// Two sets of `size` documents whose digests differ for the first `differ` of them.
fn item_sets(size: u16, differ: u16) -> (ItemSet, ItemSet) {
    let mut ours = ItemSet::new();
    let mut theirs = ItemSet::new();
    for n in 0..size {
        // An odd multiplier spreads the ids over the id space without collisions.
        let [high, low] = n.wrapping_mul(40_503).to_be_bytes();
        let id = DocumentId::from_bytes(std::array::from_fn(|i| match i {
            0 => high,
            1 => low,
            _ => i as u8,
        }));
        ours.insert(id, HeadsDigest([1; 16]));
        theirs.insert(id, HeadsDigest([if n < differ { 2 } else { 1 }; 16]));
    }
    (ours, theirs)
}

/// Every payload of one reconciliation run, in order.
fn reconcile_run(ours: &ItemSet, theirs: &ItemSet) -> Vec<Vec<u8>> {
    let config = ReconcileConfig::default();
    let (mut initiator, first) = Reconciliation::initiate(ours, &config);
    let mut responder = Reconciliation::respond(&config);
    let mut payloads = Vec::new();
    let mut in_flight = Some(first);
    let mut responder_turn = true;
    while let Some(payload) = in_flight {
        in_flight = if responder_turn {
            responder.receive(theirs, &payload)
        } else {
            initiator.receive(ours, &payload)
        }
        .expect("a run between honest peers");
        payloads.push(payload);
        responder_turn = !responder_turn;
    }
    payloads
}

/// Sync messages of a real exchange between two documents that both changed, and inputs
/// the decoder must refuse.
fn sync_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Fixed actors and times: the seeds come out the same on every run.
    let at_zero = || CommitOptions::default().with_time(0);
    let mut left = AutoCommit::new().with_actor(ActorId::from(&[1u8; 16][..]));
    left.put(ROOT, "title", "run of show").expect("put");
    left.put(ROOT, "guests", 120).expect("put");
    left.commit_with(at_zero());
    let mut right = left.fork().with_actor(ActorId::from(&[2u8; 16][..]));
    left.put(ROOT, "firstDance", "21:00").expect("put");
    left.commit_with(at_zero());
    right.put(ROOT, "firstDance", "21:15").expect("put");
    right.commit_with(at_zero());
    let (mut left, mut right) = (left.document().clone(), right.document().clone());
    let (mut left_state, mut right_state) = (sync::State::new(), sync::State::new());

    let mut seeds = Vec::new();
    let opening = Automerge::new()
        .generate_sync_message(&mut sync::State::new())
        .expect("an empty document opens");
    seeds.push(("ok-empty-document", opening.encode()));
    for round in 0..6 {
        let mut quiet = true;
        if let Some(message) = left.generate_sync_message(&mut left_state) {
            quiet = false;
            let bytes = message.clone().encode();
            seeds.push((format!("ok-round-{round}-left").leak() as &str, bytes));
            right
                .receive_sync_message(&mut right_state, message)
                .expect("receive");
        }
        if let Some(message) = right.generate_sync_message(&mut right_state) {
            quiet = false;
            let bytes = message.clone().encode();
            seeds.push((format!("ok-round-{round}-right").leak() as &str, bytes));
            left.receive_sync_message(&mut left_state, message)
                .expect("receive");
        }
        if quiet {
            break;
        }
    }
    let first = seeds[1].1.clone();
    seeds.push(("bad-empty", Vec::new()));
    seeds.push(("bad-unknown-type", vec![0x99, 0, 0, 0]));
    seeds.push(("bad-truncated", first[..first.len() / 2].to_vec()));
    // Bloom filters automerge decodes but cannot consult (`wire/sync_data.rs`): entries
    // without bits, and 2^32 - 1 probes per hash.
    let with_bloom = |bloom: &[u8]| {
        let mut bytes = vec![0x42, 0x01];
        bytes.extend([0xab; 32]);
        bytes.extend([0x00, 0x01, 0x00, bloom.len() as u8]);
        bytes.extend_from_slice(bloom);
        bytes.push(0x00);
        bytes
    };
    seeds.push(("bad-bitless-bloom", with_bloom(&[0x01, 0x00, 0x07])));
    seeds.push((
        "bad-bloom-probes",
        with_bloom(&[0x01, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00]),
    ));
    seeds
}
