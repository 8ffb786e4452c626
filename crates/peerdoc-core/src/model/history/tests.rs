use super::*;
use crate::model::{
    EditOp, apply_ops, init_from_json, put_json, reconcile_to_json, to_json, to_json_at,
};
use automerge::{ActorId, PatchLog, ReadDoc, ScalarValue, Value};
use proptest::prelude::*;
use serde_json::{Value as Json, json};

fn commit_ops(doc: &mut Automerge, time: i64, message: &str, ops: Json) -> ChangeHash {
    let ops: Vec<EditOp> = serde_json::from_value(ops).unwrap();
    let mut tx = doc.transaction();
    apply_ops(&mut tx, &ops).unwrap();
    let opts = CommitOptions::default()
        .with_time(time)
        .with_message(message);
    tx.commit_with(opts).0.unwrap()
}

fn planned() -> (Automerge, Vec<ChangeHash>) {
    let mut doc = Automerge::new().with_actor(ActorId::from(&[0x42; 16][..]));
    let mut tx = doc.transaction();
    init_from_json(
        &mut tx,
        &json!({"title": "Barn wedding", "timeline": ["Ceremony"], "photos": {"$counter": 0}}),
    )
    .unwrap();
    let first = tx
        .commit_with(
            CommitOptions::default()
                .with_time(1_000)
                .with_message("create"),
        )
        .0
        .unwrap();
    let second = commit_ops(
        &mut doc,
        2_000,
        "add dinner",
        json!([
            {"op": "insert", "path": "/timeline/-", "values": ["Dinner"]},
            {"op": "increment", "path": "/photos", "by": 40},
        ]),
    );
    let third = commit_ops(
        &mut doc,
        3_000,
        "rename",
        json!([
            {"op": "splice", "path": "/title", "index": 0, "delete": 4, "insert": "Farm"},
            {"op": "set", "path": "/dj", "value": {"name": "Sam"}},
            {"op": "remove", "path": "/timeline/0", "count": 1},
        ]),
    );
    (doc, vec![first, second, third])
}

#[test]
fn history_lists_changes_with_messages_times_and_deps() {
    let (doc, hashes) = planned();
    let entries = history(&doc);
    assert_eq!(entries.iter().map(|e| e.hash).collect::<Vec<_>>(), hashes);
    assert_eq!(
        entries
            .iter()
            .map(|e| e.message.as_deref())
            .collect::<Vec<_>>(),
        [Some("create"), Some("add dinner"), Some("rename")]
    );
    assert_eq!(
        entries.iter().map(|e| e.time).collect::<Vec<_>>(),
        [1_000, 2_000, 3_000]
    );
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(entries.iter().all(|e| e.actor == "42".repeat(16)));
    assert!(entries[0].deps.is_empty());
    assert_eq!(entries[1].deps, [hashes[0]]);
    assert_eq!(entries[2].deps, [hashes[1]]);
}

#[test]
fn to_json_at_shows_each_version() {
    let (doc, hashes) = planned();
    assert_eq!(
        to_json_at(&doc, &hashes[..1]),
        json!({"title": "Barn wedding", "timeline": ["Ceremony"], "photos": {"$counter": 0}})
    );
    assert_eq!(
        to_json_at(&doc, &hashes[1..2]),
        json!({"title": "Barn wedding", "timeline": ["Ceremony", "Dinner"], "photos": {"$counter": 40}})
    );
    assert_eq!(to_json_at(&doc, &hashes[2..]), to_json(&doc));
}

#[test]
fn revert_to_writes_one_change_restoring_old_content() {
    let (mut doc, hashes) = planned();
    let old = to_json_at(&doc, &hashes[..1]);
    let opts = CommitOptions::default()
        .with_time(4_000)
        .with_message("undo");
    let hash = revert_to(&mut doc, &hashes[..1], opts).unwrap().unwrap();
    assert_eq!(to_json(&doc), old);
    assert_eq!(doc.get_heads(), [hash]);
    let last = history(&doc).pop().unwrap();
    assert_eq!(
        (last.hash, last.time, last.message.as_deref()),
        (hash, 4_000, Some("undo"))
    );
    // The counter was moved back, not replaced by a fresh one.
    assert_eq!(
        doc.get(ObjId::Root, "photos").unwrap().unwrap().0,
        Value::Scalar(std::borrow::Cow::Owned(ScalarValue::counter(0)))
    );
    // Nothing left to revert: no change is written.
    let heads = doc.get_heads();
    assert_eq!(
        revert_to(&mut doc, &hashes[..1], CommitOptions::default()).unwrap(),
        None
    );
    assert_eq!(doc.get_heads(), heads);
}

#[test]
fn revert_refuses_unknown_heads_and_writes_nothing() {
    let (mut doc, _) = planned();
    let heads = doc.get_heads();
    let bogus = ChangeHash([9; 32]);
    assert!(matches!(
        revert_to(&mut doc, &[bogus], CommitOptions::default()),
        Err(ModelError::UnknownHeads { heads }) if heads == [bogus]
    ));
    assert_eq!(doc.get_heads(), heads);
}

#[test]
fn a_revert_merges_with_concurrent_edits() {
    let (mut doc, hashes) = planned();
    let mut other = doc.fork().with_actor(ActorId::from(&[0x43; 16][..]));
    commit_ops(
        &mut other,
        5_000,
        "late",
        json!([{"op": "set", "path": "/late", "value": 1},
        {"op": "increment", "path": "/photos", "by": 2}]),
    );
    revert_to(&mut doc, &hashes[1..2], CommitOptions::default()).unwrap();
    doc.merge(&mut other).unwrap();
    assert_eq!(
        to_json(&doc),
        json!({"title": "Barn wedding", "timeline": ["Ceremony", "Dinner"], "photos": {"$counter": 42}, "late": 1})
    );
}

#[test]
fn revert_in_logs_patches_in_the_callers_transaction() {
    let (mut doc, hashes) = planned();
    let mut tx = doc.transaction_log_patches(PatchLog::active()).unwrap();
    revert_in(&mut tx, &hashes[..1]).unwrap();
    let (hash, mut log) = tx.commit_with(CommitOptions::default().with_time(9));
    assert!(hash.is_some());
    assert!(!doc.make_patches(&mut log).is_empty());
}

// ---- properties ---------------------------------------------------------------------

fn arb_leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        (-1.0e12..1.0e12f64).prop_map(Json::from),
        "[a-zé🎉 ]{0,6}".prop_map(Json::from),
        any::<Vec<u8>>().prop_map(|b| json!({"$bytes": hex::encode(b)})),
    ]
}

/// Arbitrary JSON of depth ≤ 4 whose objects never look like tags.
fn arb_json() -> impl Strategy<Value = Json> {
    arb_leaf().prop_recursive(4, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::btree_map("[a-z~/]{0,3}", inner, 0..4)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

/// Values for edits: like [`arb_json`] but also typed scalars.
fn arb_value() -> impl Strategy<Value = Json> {
    prop_oneof![
        4 => arb_json(),
        1 => (-5i64..5).prop_map(|n| json!({"$counter": n})),
        1 => (0i64..1_000_000).prop_map(|n| json!({"$timestamp": n})),
        1 => "[a-z]{0,4}".prop_map(|s| json!({"$str": s})),
    ]
}

fn one_of(paths: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(paths).prop_map(str::to_owned)
}

const ANY_PATH: &[&str] = &[
    "/a", "/b", "/m", "/m/a", "/m/b", "/l/0", "/l/1", "/l/-", "/t", "/n", "/m/a/0",
];

/// Edits aimed mostly at places where they fit, sometimes where they fail.
fn arb_op() -> impl Strategy<Value = EditOp> {
    prop_oneof![
        3 => (one_of(ANY_PATH), arb_value()).prop_map(|(path, value)| EditOp::Set { path, value }),
        1 => one_of(ANY_PATH).prop_map(|path| EditOp::Delete { path }),
        2 => (one_of(&["/l/0", "/l/1", "/l/-", "/m/a/0"]), prop::collection::vec(arb_value(), 0..3))
            .prop_map(|(path, values)| EditOp::Insert { path, values }),
        1 => (one_of(&["/l/0", "/l/1", "/m/a/1"]), 0usize..3)
            .prop_map(|(path, count)| EditOp::Remove { path, count }),
        3 => (one_of(&["/t", "/t", "/m/a", "/a"]), 0usize..6, 0usize..3, "[a-zé ]{0,4}").prop_map(
            |(path, index, delete, insert)| EditOp::Splice { path, index, delete, insert }
        ),
        2 => (one_of(&["/n", "/n", "/a", "/l/0"]), -5i64..5)
            .prop_map(|(path, by)| EditOp::Increment { path, by }),
    ]
}

proptest! {
    #[test]
    fn put_json_then_to_json_round_trips(
        value in prop::collection::btree_map("[a-z~/]{0,3}", arb_json(), 0..5)
    ) {
        let value = Json::Object(value.into_iter().collect());
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init_from_json(&mut tx, &value).unwrap();
        put_json(&mut tx, &ObjId::Root, "extra", &value).unwrap();
        tx.commit();
        let mut expected = value.clone();
        if let Json::Object(map) = &mut expected {
            map.insert("extra".into(), value.clone());
        }
        prop_assert_eq!(to_json(&doc), expected.clone());
        // Reconciling a document with its own view writes nothing.
        let mut tx = doc.transaction();
        reconcile_to_json(&mut tx, &expected).unwrap();
        prop_assert_eq!(tx.pending_ops(), 0);
    }

    #[test]
    fn reconcile_to_json_reaches_any_target(
        start in prop::collection::btree_map("[a-c]", arb_json(), 0..4),
        target in prop::collection::btree_map("[a-c]", arb_json(), 0..4),
    ) {
        let start = Json::Object(start.into_iter().collect());
        let target = Json::Object(target.into_iter().collect());
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init_from_json(&mut tx, &start).unwrap();
        tx.commit();
        let mut tx = doc.transaction();
        reconcile_to_json(&mut tx, &target).unwrap();
        tx.commit();
        prop_assert_eq!(to_json(&doc), target);
    }

    #[test]
    fn revert_to_restores_any_earlier_version(
        batches in prop::collection::vec(prop::collection::vec(arb_op(), 1..5), 1..8),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init_from_json(&mut tx, &json!({"l": [], "t": "hello", "n": {"$counter": 0}, "m": {}})).unwrap();
        tx.commit();
        let mut versions = vec![(doc.get_heads(), to_json(&doc))];
        for (time, batch) in batches.iter().enumerate() {
            let mut tx = doc.transaction();
            for op in batch {
                // Ops that do not fit the current shape fail; the state stays valid either way.
                let _ = apply_ops(&mut tx, std::slice::from_ref(op));
            }
            tx.commit_with(CommitOptions::default().with_time(i64::try_from(time).unwrap_or(0)));
            versions.push((doc.get_heads(), to_json(&doc)));
        }
        let (heads, json_then) = pick.get(&versions).clone();
        prop_assert_eq!(to_json_at(&doc, &heads), json_then.clone());
        revert_to(&mut doc, &heads, CommitOptions::default()).unwrap();
        prop_assert_eq!(to_json(&doc), to_json_at(&doc, &heads));
        prop_assert_eq!(to_json(&doc), json_then);
        // Reverting again finds nothing to change.
        prop_assert_eq!(revert_to(&mut doc, &heads, CommitOptions::default()).unwrap(), None);
    }

    #[test]
    fn revert_to_restores_versions_with_merged_heads(
        batches in prop::collection::vec(
            (prop::collection::vec(arb_op(), 1..4), prop::collection::vec(arb_op(), 1..4)),
            1..5,
        ),
        pick in any::<prop::sample::Index>(),
    ) {
        // Two devices edit concurrently and sync after every round, so versions have
        // two heads and values conflict.
        let mut a = Automerge::new().with_actor(ActorId::from(&[0xaa; 16][..]));
        let mut tx = a.transaction();
        init_from_json(&mut tx, &json!({"l": [], "t": "hello", "n": {"$counter": 0}, "m": {}})).unwrap();
        tx.commit();
        let mut b = a.fork().with_actor(ActorId::from(&[0xbb; 16][..]));
        let mut versions = vec![(a.get_heads(), to_json(&a))];
        for (ops_a, ops_b) in &batches {
            for (doc, ops) in [(&mut a, ops_a), (&mut b, ops_b)] {
                let mut tx = doc.transaction();
                for op in ops {
                    let _ = apply_ops(&mut tx, std::slice::from_ref(op));
                }
                tx.commit();
            }
            a.merge(&mut b).unwrap();
            b.merge(&mut a).unwrap();
            versions.push((a.get_heads(), to_json(&a)));
        }
        let (heads, json_then) = pick.get(&versions).clone();
        revert_to(&mut b, &heads, CommitOptions::default()).unwrap();
        prop_assert_eq!(to_json(&b), json_then);
        a.merge(&mut b).unwrap();
        prop_assert_eq!(to_json(&a), to_json(&b));
    }
}
