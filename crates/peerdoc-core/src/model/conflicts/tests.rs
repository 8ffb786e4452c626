use super::*;
use crate::model::{EditOp, apply_ops, init_from_json, to_json};
use automerge::{ActorId, PatchLog, transaction::CommitOptions};
use serde_json::json;

fn actor(byte: u8) -> ActorId {
    ActorId::from(&[byte; 16][..])
}

fn base() -> Automerge {
    let mut doc = Automerge::new().with_actor(actor(0x01));
    let mut tx = doc.transaction();
    init_from_json(
        &mut tx,
        &json!({
            "vendors": {"florist": {"phone": {"$str": "0123"}, "name": "Petals"}},
            "timeline": ["Ceremony", "Dinner"],
        }),
    )
    .unwrap();
    tx.commit_with(CommitOptions::default().with_time(500));
    doc
}

/// Applies `ops` on a fork with actor `byte` at `time`; returns the fork and its change.
fn edit(doc: &Automerge, byte: u8, time: i64, ops: Json) -> (Automerge, ChangeHash) {
    let mut fork = doc.fork().with_actor(actor(byte));
    let ops: Vec<EditOp> = serde_json::from_value(ops).unwrap();
    let mut tx = fork.transaction();
    apply_ops(&mut tx, &ops).unwrap();
    let (hash, _) = tx.commit_with(CommitOptions::default().with_time(time));
    (fork, hash.unwrap())
}

/// Merges `theirs` into `ours` and returns the patches the merge produced.
fn merge(ours: &mut Automerge, theirs: &mut Automerge) -> Vec<Patch> {
    let mut log = PatchLog::active();
    ours.merge_and_log_patches(theirs, &mut log).unwrap();
    ours.make_patches(&mut log)
}

fn set(path: &str, value: Json) -> Json {
    json!([{"op": "set", "path": path, "value": value}])
}

#[test]
fn concurrent_writes_are_reported_with_actor_change_time_and_winner() {
    let doc = base();
    let (mut a, hash_a) = edit(
        &doc,
        0xaa,
        1_000,
        set("/vendors/florist/phone", json!({"$str": "0111"})),
    );
    let (mut b, hash_b) = edit(
        &doc,
        0xbb,
        2_000,
        set("/vendors/florist/phone", json!({"$str": "0222"})),
    );
    let patches = merge(&mut a, &mut b);

    let found = conflicts(&a);
    assert_eq!(found.len(), 1);
    let conflict = &found[0];
    assert_eq!(conflict.path, "/vendors/florist/phone");
    let mut seen: Vec<_> = conflict
        .values
        .iter()
        .map(|v| (v.value.clone(), v.actor.clone(), v.change, v.time))
        .collect();
    seen.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(
        seen,
        vec![
            (json!("0111"), "aa".repeat(16), Some(hash_a), 1_000),
            (json!("0222"), "bb".repeat(16), Some(hash_b), 2_000),
        ]
    );
    let winners: Vec<_> = conflict.values.iter().filter(|v| v.winner).collect();
    assert_eq!(winners.len(), 1);
    assert!(
        conflict.values.last().is_some_and(|v| v.winner),
        "winner is listed last"
    );
    assert_eq!(
        to_json(&a).pointer("/vendors/florist/phone"),
        Some(&winners[0].value)
    );

    assert_eq!(conflicts_from_patches(&a, &patches), found);

    // The other side of the merge sees the same conflict, with the same winner.
    b.merge(&mut a).unwrap();
    assert_eq!(conflicts(&b), found);
}

#[test]
fn resolve_with_the_losing_value_restores_it_and_clears_the_conflict() {
    let doc = base();
    let (mut a, _) = edit(
        &doc,
        0xaa,
        1_000,
        set("/vendors/florist/phone", json!({"$str": "0111"})),
    );
    let (mut b, _) = edit(
        &doc,
        0xbb,
        2_000,
        set("/vendors/florist/phone", json!({"$str": "0222"})),
    );
    let patches = merge(&mut a, &mut b);
    let conflict = conflicts(&a).remove(0);
    let loser = conflict
        .values
        .iter()
        .find(|v| !v.winner)
        .unwrap()
        .value
        .clone();

    let mut tx = a.transaction();
    resolve(&mut tx, &conflict.path, &json!({"$str": loser.clone()})).unwrap();
    tx.commit();
    assert!(conflicts(&a).is_empty());
    assert!(conflicts_from_patches(&a, &patches).is_empty());
    assert_eq!(to_json(&a).pointer("/vendors/florist/phone"), Some(&loser));
}

#[test]
fn text_and_object_values_conflict_whole() {
    let doc = base();
    let (mut a, _) = edit(
        &doc,
        0xaa,
        1,
        set("/vendors/florist", json!({"name": "Roses", "x": 1})),
    );
    let (mut b, _) = edit(
        &doc,
        0xbb,
        2,
        set("/vendors/florist", json!({"name": "Lilies"})),
    );
    merge(&mut a, &mut b);
    let (mut c, _) = edit(&a, 0xcc, 3, set("/vendors/note", json!("call first")));
    let (mut d, _) = edit(&a, 0xdd, 4, set("/vendors/note", json!("call after 9")));
    let patches = merge(&mut c, &mut d);

    let found = conflicts(&c);
    let paths: Vec<_> = found.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/vendors/florist", "/vendors/note"]);
    let mut florist: Vec<_> = found[0].values.iter().map(|v| v.value.clone()).collect();
    florist.sort_by_key(|v| v.to_string());
    assert_eq!(
        florist,
        [json!({"name": "Lilies"}), json!({"name": "Roses", "x": 1})]
    );
    let mut notes: Vec<_> = found[1].values.iter().map(|v| v.value.clone()).collect();
    notes.sort_by_key(|v| v.to_string());
    assert_eq!(notes, [json!("call after 9"), json!("call first")]);

    assert_eq!(conflicts_from_patches(&c, &patches), found[1..]);

    let mut tx = c.transaction();
    resolve(&mut tx, "/vendors/florist", &json!({"name": "Both"})).unwrap();
    resolve(&mut tx, "/vendors/note", &json!("call at 9")).unwrap();
    tx.commit();
    assert!(conflicts(&c).is_empty());
    assert_eq!(
        to_json(&c)["vendors"],
        json!({"florist": {"name": "Both"}, "note": "call at 9"})
    );
}

#[test]
fn list_elements_conflict_and_nested_paths_are_found() {
    let doc = base();
    let (mut a, _) = edit(&doc, 0xaa, 1, set("/timeline/1", json!({"$str": "Supper"})));
    let (mut b, _) = edit(&doc, 0xbb, 2, set("/timeline/1", json!({"$str": "Feast"})));
    let patches = merge(&mut a, &mut b);
    let found = conflicts(&a);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "/timeline/1");
    assert_eq!(conflicts_from_patches(&a, &patches), found);

    let mut tx = a.transaction();
    resolve(&mut tx, "/timeline/1", &json!("Dinner")).unwrap();
    tx.commit();
    assert!(conflicts(&a).is_empty());
    assert_eq!(to_json(&a)["timeline"], json!(["Ceremony", "Dinner"]));
}

#[test]
fn concurrent_text_edits_merge_without_conflict() {
    let doc = base();
    let splice = |index: usize, insert: &str| json!([{"op": "splice", "path": "/vendors/florist/name", "index": index, "delete": 0, "insert": insert}]);
    let (mut a, _) = edit(&doc, 0xaa, 1, splice(0, "The "));
    let (mut b, _) = edit(&doc, 0xbb, 2, splice(6, " Ltd"));
    let patches = merge(&mut a, &mut b);
    assert!(conflicts(&a).is_empty());
    assert!(conflicts_from_patches(&a, &patches).is_empty());
    assert_eq!(
        to_json(&a)["vendors"]["florist"]["name"],
        json!("The Petals Ltd")
    );
}

#[test]
fn keys_that_need_escaping_get_escaped_pointers() {
    let doc = base();
    let (mut a, _) = edit(&doc, 0xaa, 1, set("/vendors/a~1b~0c", json!(1)));
    let (mut b, _) = edit(&doc, 0xbb, 2, set("/vendors/a~1b~0c", json!(2)));
    let patches = merge(&mut a, &mut b);
    assert_eq!(conflicts(&a)[0].path, "/vendors/a~1b~0c");
    assert_eq!(
        conflicts_from_patches(&a, &patches)[0].path,
        "/vendors/a~1b~0c"
    );
}

#[test]
fn resolve_refuses_missing_paths() {
    let mut doc = base();
    let mut tx = doc.transaction();
    assert!(matches!(
        resolve(&mut tx, "/vendors/dj", &json!(1)),
        Err(ModelError::PathNotFound { .. })
    ));
    assert!(matches!(
        resolve(&mut tx, "/timeline/2", &json!(1)),
        Err(ModelError::IndexOutOfBounds { .. })
    ));
    assert!(matches!(
        resolve(&mut tx, "", &json!({})),
        Err(ModelError::InvalidPointer { .. })
    ));
    assert_eq!(tx.pending_ops(), 0);
}
