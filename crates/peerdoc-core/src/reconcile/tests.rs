//! Reconciliation tests: exact results, message and byte bounds, and hostile input.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::wire::{Bound, Message, Range, RangeBody, WIRE_VERSION};
use super::*;

/// What one run cost and found.
#[derive(Debug)]
struct Outcome {
    /// Payloads sent, both directions.
    messages: u32,
    /// Bytes of all payloads, both directions.
    bytes: usize,
    /// The largest single payload.
    largest: usize,
    initiator_rounds: u32,
    responder_rounds: u32,
    initiator_found: Vec<Difference>,
    responder_found: Vec<Difference>,
}

/// Runs a whole exchange between an initiator holding `ours` and a responder holding
/// `theirs`, delivering each payload in turn.
fn run(ours: &ItemSet, theirs: &ItemSet, config: &ReconcileConfig) -> Outcome {
    let (mut initiator, first) = Reconciliation::initiate(ours, config);
    let mut responder = Reconciliation::respond(config);
    let mut outcome = Outcome {
        messages: 0,
        bytes: 0,
        largest: 0,
        initiator_rounds: 0,
        responder_rounds: 0,
        initiator_found: Vec::new(),
        responder_found: Vec::new(),
    };
    let mut in_flight = Some(first);
    let mut to_responder = true;
    while let Some(payload) = in_flight {
        outcome.messages += 1;
        outcome.bytes += payload.len();
        outcome.largest = outcome.largest.max(payload.len());
        in_flight = if to_responder {
            responder.receive(theirs, &payload)
        } else {
            initiator.receive(ours, &payload)
        }
        .expect("an honest peer's payload is valid");
        // Drain as we go, as the engine would.
        outcome.initiator_found.extend(initiator.take_differences());
        outcome.responder_found.extend(responder.take_differences());
        to_responder = !to_responder;
    }
    assert!(initiator.is_done(), "initiator still waiting");
    assert!(responder.is_done(), "responder still waiting");
    outcome.initiator_rounds = initiator.rounds();
    outcome.responder_rounds = responder.rounds();
    outcome
}

fn random_set(rng: &mut ChaCha8Rng, len: usize) -> ItemSet {
    (0..len)
        .map(|_| (DocumentId::random(rng), random_digest(rng)))
        .collect()
}

fn random_digest(rng: &mut ChaCha8Rng) -> HeadsDigest {
    let mut digest = [0u8; 16];
    rng.fill_bytes(&mut digest);
    HeadsDigest(digest)
}

/// The true symmetric difference, from the point of view of `ours`.
fn truth(
    ours: &ItemSet,
    theirs: &ItemSet,
) -> BTreeMap<DocumentId, (Option<HeadsDigest>, Option<HeadsDigest>)> {
    let ids: BTreeSet<DocumentId> = ours.iter().chain(theirs.iter()).map(|(id, _)| id).collect();
    ids.into_iter()
        .filter_map(|id| {
            let pair = (ours.get(&id), theirs.get(&id));
            (pair.0 != pair.1).then_some((id, pair))
        })
        .collect()
}

fn as_map(
    found: &[Difference],
) -> BTreeMap<DocumentId, (Option<HeadsDigest>, Option<HeadsDigest>)> {
    let map: BTreeMap<_, _> = found
        .iter()
        .map(|d| (d.document_id, (d.ours, d.theirs)))
        .collect();
    assert_eq!(map.len(), found.len(), "a document was reported twice");
    map
}

fn swapped(
    map: BTreeMap<DocumentId, (Option<HeadsDigest>, Option<HeadsDigest>)>,
) -> BTreeMap<DocumentId, (Option<HeadsDigest>, Option<HeadsDigest>)> {
    map.into_iter().map(|(id, (a, b))| (id, (b, a))).collect()
}

/// Asserts both sides found exactly the true differences, each from its own side.
fn assert_exact(ours: &ItemSet, theirs: &ItemSet, outcome: &Outcome) {
    let expected = truth(ours, theirs);
    assert_eq!(as_map(&outcome.initiator_found), expected);
    assert_eq!(swapped(as_map(&outcome.responder_found)), expected);
}

/// `n` shared items, then `k` changes spread over the three kinds: digest changed, only
/// on our side, only on theirs.
fn pair_with_changes(seed: u64, n: usize, k: usize) -> (ItemSet, ItemSet) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ours = random_set(&mut rng, n);
    let mut theirs = ours.clone();
    let ids: Vec<DocumentId> = ours.iter().map(|(id, _)| id).collect();
    let mut changed = BTreeSet::new();
    let mut ours = ours;
    while changed.len() < k {
        let kind = changed.len() % 3;
        if kind == 2 || ids.is_empty() {
            let id = DocumentId::random(&mut rng);
            theirs.insert(id, random_digest(&mut rng));
            changed.insert(id);
            continue;
        }
        let id = ids[rng.random_range(0..ids.len())];
        if !changed.insert(id) {
            continue;
        }
        if kind == 0 {
            theirs.insert(id, random_digest(&mut rng));
        } else {
            ours.remove(&id);
        }
    }
    (ours, theirs)
}

#[test]
fn identical_ten_thousand_cost_two_small_messages() {
    let (ours, theirs) = pair_with_changes(1, 10_000, 0);
    let outcome = run(&ours, &theirs, &ReconcileConfig::default());
    println!(
        "identical 10,000: {} messages, {} bytes",
        outcome.messages, outcome.bytes
    );
    assert_eq!(outcome.messages, 2);
    assert!(outcome.bytes < 64, "{} bytes", outcome.bytes);
    assert!(outcome.initiator_found.is_empty() && outcome.responder_found.is_empty());
}

#[test]
fn ten_changed_of_ten_thousand_are_found_exactly() {
    let (ours, theirs) = pair_with_changes(2, 10_000, 10);
    let outcome = run(&ours, &theirs, &ReconcileConfig::default());
    println!(
        "10 of 10,000: {} messages, {} bytes, rounds {}/{}",
        outcome.messages, outcome.bytes, outcome.initiator_rounds, outcome.responder_rounds
    );
    assert_exact(&ours, &theirs, &outcome);
    assert_eq!(outcome.initiator_found.len(), 10);
    assert!(outcome.messages <= 8, "{} messages", outcome.messages);
    assert!(outcome.bytes < 12 * 1024, "{} bytes", outcome.bytes);
}

#[test]
fn one_side_empty() {
    let (full, _) = pair_with_changes(3, 1_000, 0);
    let empty = ItemSet::new();
    for (ours, theirs) in [(&full, &empty), (&empty, &full)] {
        let outcome = run(ours, theirs, &ReconcileConfig::default());
        assert_exact(ours, theirs, &outcome);
        assert_eq!(outcome.initiator_found.len(), 1_000);
        // Every item crosses once; the overhead on top is small.
        assert!(
            outcome.bytes < 1_000 * 32 + 2_048,
            "{} bytes",
            outcome.bytes
        );
    }
}

#[test]
fn both_empty() {
    let outcome = run(
        &ItemSet::new(),
        &ItemSet::new(),
        &ReconcileConfig::default(),
    );
    assert_eq!(outcome.messages, 2);
    assert!(outcome.initiator_found.is_empty());
}

#[test]
fn disjoint_sets() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let ours = random_set(&mut rng, 700);
    let theirs = random_set(&mut rng, 900);
    let outcome = run(&ours, &theirs, &ReconcileConfig::default());
    assert_exact(&ours, &theirs, &outcome);
    assert_eq!(outcome.initiator_found.len(), 1_600);
}

#[test]
fn tombstone_against_live_digest_is_a_difference() {
    let (ours, mut theirs) = pair_with_changes(5, 2_000, 0);
    let (deleted, live) = ours.iter().nth(777).expect("2,000 items");
    theirs.insert(deleted, HeadsDigest::TOMBSTONE);
    let outcome = run(&ours, &theirs, &ReconcileConfig::default());
    assert_eq!(
        outcome.initiator_found,
        vec![Difference {
            document_id: deleted,
            ours: Some(live),
            theirs: Some(HeadsDigest::TOMBSTONE),
        }]
    );
    assert_eq!(outcome.responder_found.len(), 1);
}

#[test]
fn small_payload_limit_defers_but_finds_everything() {
    let config = ReconcileConfig {
        max_payload: MIN_PAYLOAD,
        ..ReconcileConfig::default()
    };
    let (ours, theirs) = pair_with_changes(6, 5_000, 1_500);
    let outcome = run(&ours, &theirs, &config);
    assert_exact(&ours, &theirs, &outcome);
    assert!(outcome.largest <= MIN_PAYLOAD, "{} bytes", outcome.largest);
}

#[test]
fn item_set_keeps_its_fingerprint_incrementally() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut set = random_set(&mut rng, 300);
    let ids: Vec<DocumentId> = set.iter().map(|(id, _)| id).take(100).collect();
    for id in &ids {
        set.insert(*id, random_digest(&mut rng));
    }
    for id in &ids[..50] {
        set.remove(id);
    }
    set.remove(&DocumentId::from_bytes([3; 16]));
    let rebuilt: ItemSet = set.iter().collect();
    assert_eq!(set.fingerprint(), rebuilt.fingerprint());
    assert_eq!(set.len(), 250);
    // Two ranges that meet at an arbitrary bound add up to the whole.
    let middle = DocumentId::from_bytes([0x80; 16]);
    let below = set.range_fingerprint(wire::MIN_ID, Bound::Id(middle));
    let above = set.range_fingerprint(middle, Bound::Infinity);
    assert_eq!(below.sum.wrapping_add(above.sum), set.fingerprint().sum);
    assert_eq!(below.count + above.count, 250);
}

#[test]
fn sets_edited_mid_run_still_finish_with_a_snapshot() {
    let (ours, mut theirs) = pair_with_changes(10, 5_000, 30);
    let before = truth(&ours, &theirs);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let config = ReconcileConfig::default();
    let (mut initiator, first) = Reconciliation::initiate(&ours, &config);
    let mut responder = Reconciliation::respond(&config);
    let (mut initiator_found, mut responder_found) = (Vec::new(), Vec::new());
    let mut in_flight = Some(first);
    let mut to_responder = true;
    while let Some(payload) = in_flight {
        // A local edit on the responder between every two rounds.
        theirs.insert(DocumentId::random(&mut rng), random_digest(&mut rng));
        in_flight = if to_responder {
            responder.receive(&theirs, &payload).unwrap()
        } else {
            initiator.receive(&ours, &payload).unwrap()
        };
        initiator_found.extend(initiator.take_differences());
        responder_found.extend(responder.take_differences());
        to_responder = !to_responder;
    }
    assert!(initiator.is_done() && responder.is_done());
    // Every difference that existed before the run and was not touched is still found.
    let found = as_map(&initiator_found);
    for id in before.keys() {
        assert!(found.contains_key(id), "missed {id}");
    }
    as_map(&responder_found);
}

#[test]
fn payload_after_the_end_is_rejected() {
    let set = ItemSet::new();
    let (mut initiator, first) = Reconciliation::initiate(&set, &ReconcileConfig::default());
    let mut responder = Reconciliation::respond(&ReconcileConfig::default());
    let reply = responder.receive(&set, &first).unwrap().unwrap();
    assert!(responder.is_done());
    assert_eq!(initiator.receive(&set, &reply).unwrap(), None);
    assert!(initiator.is_done());
    assert_eq!(
        initiator.receive(&set, &reply),
        Err(ReconcileError::UnexpectedPayload)
    );
    assert_eq!(
        responder.receive(&set, &first),
        Err(ReconcileError::UnexpectedPayload)
    );
}

#[test]
fn rounds_are_bounded() {
    let config = ReconcileConfig {
        max_rounds: 2,
        ..ReconcileConfig::default()
    };
    let (ours, theirs) = pair_with_changes(8, 10_000, 10);
    let (_, first) = Reconciliation::initiate(&ours, &config);
    let mut responder = Reconciliation::respond(&config);
    // A peer that replays the same opening payload would keep a naive responder busy.
    responder.awaiting_reply = true;
    responder.receive(&theirs, &first).unwrap();
    responder.awaiting_reply = true;
    responder.receive(&theirs, &first).unwrap();
    responder.awaiting_reply = true;
    assert_eq!(
        responder.receive(&theirs, &first),
        Err(ReconcileError::TooManyRounds { max: 2 })
    );
}

#[test]
fn oversized_payload_is_rejected_before_decoding() {
    let mut responder = Reconciliation::respond(&ReconcileConfig::default());
    let huge = vec![0u8; ReconcileConfig::default().max_payload + 1];
    assert!(matches!(
        responder.receive(&ItemSet::new(), &huge),
        Err(ReconcileError::PayloadTooLarge { .. })
    ));
}

#[test]
fn hostile_counts_are_rejected_cheaply() {
    // Claims 2^63 ranges in a 12-byte payload.
    let mut payload = vec![WIRE_VERSION];
    payload.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    payload.extend_from_slice(&[0xff, 0]);
    assert!(matches!(
        Message::decode(&payload),
        Err(ReconcileError::Malformed(_))
    ));
    // One range with an item list claiming 2^56 items.
    let mut payload = vec![WIRE_VERSION, 1, 0xff, 3];
    payload.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    payload.extend_from_slice(&[0; 64]);
    assert!(matches!(
        Message::decode(&payload),
        Err(ReconcileError::Malformed(_))
    ));
    // A fingerprint claiming 2^64 - 1 items is just a mismatch, answered in bounded space.
    let message = Message {
        ranges: vec![Range {
            upper: Bound::Infinity,
            body: RangeBody::Fingerprint {
                fp: 0,
                count: u64::MAX,
            },
        }],
    };
    let (ours, _) = pair_with_changes(9, 100, 0);
    let mut responder = Reconciliation::respond(&ReconcileConfig::default());
    let reply = responder
        .receive(&ours, &message.encode())
        .unwrap()
        .unwrap();
    assert!(reply.len() < 1_024);
}

#[test]
fn decoder_rejects_bad_ranges() {
    let id = |byte: u8| Bound::Id(DocumentId::from_bytes([byte; 16]));
    let skip = |upper| Range {
        upper,
        body: RangeBody::Skip,
    };
    let bad = [
        // Does not reach infinity.
        Message {
            ranges: vec![skip(id(5))],
        },
        // Not increasing.
        Message {
            ranges: vec![skip(id(5)), skip(id(5)), skip(Bound::Infinity)],
        },
        // Empty first range.
        Message {
            ranges: vec![skip(id(0)), skip(Bound::Infinity)],
        },
        // Something after infinity.
        Message {
            ranges: vec![skip(Bound::Infinity), skip(Bound::Infinity)],
        },
        // An item outside its range.
        Message {
            ranges: vec![
                skip(id(5)),
                Range {
                    upper: Bound::Infinity,
                    body: RangeBody::Items {
                        items: vec![(DocumentId::from_bytes([1; 16]), HeadsDigest([0; 16]))],
                        reply_wanted: true,
                    },
                },
            ],
        },
        // Items out of order.
        Message {
            ranges: vec![Range {
                upper: Bound::Infinity,
                body: RangeBody::Items {
                    items: vec![
                        (DocumentId::from_bytes([2; 16]), HeadsDigest([0; 16])),
                        (DocumentId::from_bytes([1; 16]), HeadsDigest([0; 16])),
                    ],
                    reply_wanted: false,
                },
            }],
        },
        Message { ranges: vec![] },
    ];
    for message in bad {
        assert!(
            Message::decode(&message.encode()).is_err(),
            "accepted {message:?}"
        );
    }
    let mut trailing = Message {
        ranges: vec![skip(Bound::Infinity)],
    }
    .encode();
    trailing.push(0);
    assert!(Message::decode(&trailing).is_err());
    assert_eq!(
        Message::decode(&[9, 1, 0xff, 0]),
        Err(ReconcileError::UnsupportedVersion { version: 9 })
    );
}

#[test]
fn separators_are_short_and_between() {
    let a = DocumentId::from_bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    let b = DocumentId::from_bytes([1, 2, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let cut = wire::separator(&a, &b);
    assert!(a < cut && cut <= b);
    assert_eq!(wire::bound_len(&Bound::Id(cut)), 4);
    let c = DocumentId::from_bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17]);
    let cut = wire::separator(&a, &c);
    assert!(a < cut && cut <= c);
}

fn arbitrary_message() -> impl Strategy<Value = Message> {
    let body = prop_oneof![
        Just(RangeBody::Skip),
        (any::<u128>(), any::<u64>()).prop_map(|(fp, count)| RangeBody::Fingerprint { fp, count }),
        (
            proptest::collection::vec((any::<[u8; 16]>(), any::<[u8; 16]>()), 0..4),
            any::<bool>()
        )
            .prop_map(|(items, reply_wanted)| RangeBody::Items {
                items: items
                    .into_iter()
                    .map(|(id, digest)| (DocumentId::from_bytes(id), HeadsDigest(digest)))
                    .collect(),
                reply_wanted,
            }),
    ];
    (
        proptest::collection::btree_set(any::<[u8; 16]>(), 0..6),
        proptest::collection::vec(body, 7),
    )
        .prop_map(|(bounds, bodies)| {
            let mut uppers: Vec<Bound> = bounds
                .into_iter()
                .filter(|b| *b != [0; 16])
                .map(|b| Bound::Id(DocumentId::from_bytes(b)))
                .collect();
            uppers.push(Bound::Infinity);
            let mut lower = wire::MIN_ID;
            let ranges = uppers
                .into_iter()
                .zip(bodies)
                .map(|(upper, mut body)| {
                    // Keep only the items that belong to the range, sorted and distinct.
                    if let RangeBody::Items { items, .. } = &mut body {
                        items.retain(|(id, _)| *id >= lower && Bound::Id(*id) < upper);
                        items.sort_by_key(|(id, _)| *id);
                        items.dedup_by_key(|(id, _)| *id);
                    }
                    if let Bound::Id(id) = upper {
                        lower = id;
                    }
                    Range { upper, body }
                })
                .collect();
            Message { ranges }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random pairs of sets, with overlap, changed digests and one-sided items: both
    /// sides find exactly the symmetric difference.
    #[test]
    fn both_sides_find_the_symmetric_difference(
        seed in any::<u64>(),
        shared in 0usize..2_000,
        only_ours in 0usize..200,
        only_theirs in 0usize..200,
        changed_per_mille in 0u32..1_000,
        small_pieces in any::<bool>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut ours = random_set(&mut rng, shared);
        let mut theirs = ItemSet::new();
        for (id, digest) in ours.iter() {
            let digest = if rng.random_range(0..1_000) < changed_per_mille {
                random_digest(&mut rng)
            } else {
                digest
            };
            theirs.insert(id, digest);
        }
        ours.extend(random_set(&mut rng, only_ours).iter());
        theirs.extend(random_set(&mut rng, only_theirs).iter());
        let config = if small_pieces {
            ReconcileConfig { branching: 2, items_threshold: 1, max_payload: MIN_PAYLOAD, ..ReconcileConfig::default() }
        } else {
            ReconcileConfig::default()
        };
        let outcome = run(&ours, &theirs, &config);
        assert_exact(&ours, &theirs, &outcome);
    }

    /// Arbitrary bytes never panic the decoder or a state machine.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::decode(&bytes);
        let mut with_version = vec![WIRE_VERSION];
        with_version.extend_from_slice(&bytes);
        let _ = Message::decode(&with_version);
        let set: ItemSet = (0..40u8).map(|n| (DocumentId::from_bytes([n.wrapping_mul(6); 16]), HeadsDigest([n; 16]))).collect();
        let mut responder = Reconciliation::respond(&ReconcileConfig::default());
        let _ = responder.receive(&set, &with_version);
    }

    /// A valid message with one byte changed decodes or fails, never panics, and a
    /// state machine fed with it answers or errs within the payload budget.
    #[test]
    fn mutated_messages_never_panic(
        message in arbitrary_message(),
        position in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let mut bytes = message.encode();
        let at = position.index(bytes.len());
        bytes[at] = value;
        let _ = Message::decode(&bytes);
        let set: ItemSet = (0..200u8).map(|n| (DocumentId::from_bytes([n; 16]), HeadsDigest([n; 16]))).collect();
        let config = ReconcileConfig { max_payload: MIN_PAYLOAD, ..ReconcileConfig::default() };
        let mut responder = Reconciliation::respond(&config);
        if let Ok(Some(reply)) = responder.receive(&set, &bytes) {
            prop_assert!(reply.len() <= MIN_PAYLOAD);
            prop_assert!(Message::decode(&reply).is_ok());
        }
    }

    /// Valid messages round-trip, and every strict prefix of one is rejected.
    #[test]
    fn messages_round_trip_and_truncations_fail(message in arbitrary_message()) {
        let bytes = message.encode();
        prop_assert_eq!(Message::decode(&bytes), Ok(message));
        for len in 0..bytes.len() {
            prop_assert!(Message::decode(&bytes[..len]).is_err());
        }
    }
}

/// Prints the cost table in `docs/reconciliation.md`:
/// `cargo test -p peerdoc-core reconcile::tests::cost_table -- --ignored --nocapture`
#[test]
#[ignore = "prints the cost table for docs/reconciliation.md; takes a while"]
fn cost_table() {
    println!("| n | k | messages | rounds (initiator/responder) | total bytes | largest payload |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in [1_000usize, 10_000, 100_000] {
        for k in [0usize, 1, 10, 100, 1_000] {
            let (ours, theirs) = pair_with_changes(n as u64 + k as u64, n, k);
            let outcome = run(&ours, &theirs, &ReconcileConfig::default());
            assert_exact(&ours, &theirs, &outcome);
            println!(
                "| {n} | {k} | {} | {}/{} | {} | {} |",
                outcome.messages,
                outcome.initiator_rounds,
                outcome.responder_rounds,
                outcome.bytes,
                outcome.largest
            );
        }
    }
}

/// Prints how branching and the items threshold trade rounds for bytes (n = 10,000):
/// `cargo test -p peerdoc-core reconcile::tests::config_sweep -- --ignored --nocapture`
#[test]
#[ignore = "prints the tuning table for docs/reconciliation.md"]
fn config_sweep() {
    println!("| branching | items_threshold | k | messages | total bytes |");
    println!("|---:|---:|---:|---:|---:|");
    for branching in [4usize, 8, 16, 32] {
        for items_threshold in [4usize, 8, 16, 32] {
            for k in [10usize, 100] {
                let (ours, theirs) = pair_with_changes(10_000 + k as u64, 10_000, k);
                let config = ReconcileConfig {
                    branching,
                    items_threshold,
                    ..ReconcileConfig::default()
                };
                let outcome = run(&ours, &theirs, &config);
                assert_exact(&ours, &theirs, &outcome);
                println!(
                    "| {branching} | {items_threshold} | {k} | {} | {} |",
                    outcome.messages, outcome.bytes
                );
            }
        }
    }
}
