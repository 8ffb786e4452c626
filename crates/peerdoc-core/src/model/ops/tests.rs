use super::*;
use crate::model::{init_from_json, to_json};
use automerge::Automerge;
use serde_json::json;

fn venue() -> Automerge {
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    init_from_json(
        &mut tx,
        &json!({
            "title": "Barn wedding",
            "timeline": [{"at": "15:00", "what": "Ceremony"}, {"at": "18:00", "what": "Dinner"}],
            "vendors": {"florist": {"phone": {"$str": "0123"}}},
            "photos": {"$counter": 10},
            "a/b": {"m~n": 1},
            "count": 3,
        }),
    )
    .unwrap();
    tx.commit();
    doc
}

/// Applies `ops` in one transaction; commits on success, rolls back on error.
fn apply(doc: &mut Automerge, ops: Json) -> Result<(), ModelError> {
    let ops: Vec<EditOp> = serde_json::from_value(ops).unwrap();
    let mut tx = doc.transaction();
    match apply_ops(&mut tx, &ops) {
        Ok(()) => {
            tx.commit();
            Ok(())
        }
        Err(e) => {
            tx.rollback();
            Err(e)
        }
    }
}

fn at(doc: &Automerge, pointer: &str) -> Json {
    to_json(doc).pointer(pointer).cloned().unwrap_or(Json::Null)
}

#[test]
fn set_writes_keys_list_elements_and_appends() {
    let mut doc = venue();
    apply(
        &mut doc,
        json!([
            {"op": "set", "path": "/vendors/florist/phone", "value": "0999"},
            {"op": "set", "path": "/vendors/caterer", "value": {"name": "Hog roast"}},
            {"op": "set", "path": "/timeline/1/at", "value": "18:30"},
            {"op": "set", "path": "/timeline/0", "value": {"at": "14:45", "what": "Doors"}},
            {"op": "set", "path": "/timeline/-", "value": {"at": "23:00", "what": "Carriages"}},
            {"op": "set", "path": "/a~1b/m~0n", "value": 2},
        ]),
    )
    .unwrap();
    assert_eq!(at(&doc, "/vendors/florist/phone"), json!("0999"));
    assert_eq!(at(&doc, "/vendors/caterer/name"), json!("Hog roast"));
    assert_eq!(at(&doc, "/timeline/0/at"), json!("14:45"));
    assert_eq!(at(&doc, "/timeline/1/at"), json!("18:30"));
    assert_eq!(at(&doc, "/timeline/2/what"), json!("Carriages"));
    assert_eq!(at(&doc, "/a~1b/m~0n"), json!(2));
}

#[test]
fn set_on_root_reconciles_the_whole_document() {
    let mut doc = venue();
    apply(
        &mut doc,
        json!([{"op": "set", "path": "", "value": {"only": 1}}]),
    )
    .unwrap();
    assert_eq!(to_json(&doc), json!({"only": 1}));
    assert!(matches!(
        apply(&mut doc, json!([{"op": "set", "path": "", "value": [1]}])),
        Err(ModelError::RootNotObject)
    ));
}

#[test]
fn delete_removes_keys_and_elements() {
    let mut doc = venue();
    apply(
        &mut doc,
        json!([
            {"op": "delete", "path": "/vendors/florist"},
            {"op": "delete", "path": "/timeline/0"},
        ]),
    )
    .unwrap();
    assert_eq!(at(&doc, "/vendors"), json!({}));
    assert_eq!(
        at(&doc, "/timeline"),
        json!([{"at": "18:00", "what": "Dinner"}])
    );
}

#[test]
fn insert_and_remove_edit_lists() {
    let mut doc = venue();
    apply(
        &mut doc,
        json!([
            {"op": "insert", "path": "/timeline/1", "values": ["a", "b"]},
            {"op": "insert", "path": "/timeline/-", "values": [1]},
            {"op": "insert", "path": "/timeline/0", "values": []},
        ]),
    )
    .unwrap();
    assert_eq!(at(&doc, "/timeline/1"), json!("a"));
    assert_eq!(at(&doc, "/timeline/2"), json!("b"));
    assert_eq!(at(&doc, "/timeline/4"), json!(1));
    apply(
        &mut doc,
        json!([{"op": "remove", "path": "/timeline/1", "count": 2}]),
    )
    .unwrap();
    assert_eq!(at(&doc, "/timeline/1/what"), json!("Dinner"));
    assert_eq!(at(&doc, "/timeline/2"), json!(1));
    apply(
        &mut doc,
        json!([{"op": "remove", "path": "/timeline/0", "count": 0}]),
    )
    .unwrap();
    assert_eq!(at(&doc, "/timeline").as_array().map(Vec::len), Some(3));
}

#[test]
fn splice_edits_text_in_place() {
    let mut doc = venue();
    apply(
        &mut doc,
        json!([
            {"op": "splice", "path": "/title", "index": 0, "delete": 4, "insert": "Farm"},
            {"op": "splice", "path": "/timeline/0/what", "index": 8, "delete": 0, "insert": "!"},
        ]),
    )
    .unwrap();
    assert_eq!(at(&doc, "/title"), json!("Farm wedding"));
    assert_eq!(at(&doc, "/timeline/0/what"), json!("Ceremony!"));
}

#[test]
fn increment_moves_counters_both_ways() {
    let mut doc = venue();
    apply(
        &mut doc,
        json!([
            {"op": "increment", "path": "/photos", "by": 5},
            {"op": "increment", "path": "/photos", "by": -2},
            {"op": "set", "path": "/timeline/-", "value": {"$counter": 0}},
            {"op": "increment", "path": "/timeline/2", "by": 1},
        ]),
    )
    .unwrap();
    assert_eq!(at(&doc, "/photos"), json!({"$counter": 13}));
    assert_eq!(at(&doc, "/timeline/2"), json!({"$counter": 1}));
}

fn expect_err(ops: Json) -> ModelError {
    let mut doc = venue();
    let before = to_json(&doc);
    let heads = doc.get_heads();
    let err = apply(&mut doc, ops).unwrap_err();
    assert_eq!(to_json(&doc), before, "rolled-back batch changed the doc");
    assert_eq!(doc.get_heads(), heads);
    err
}

#[test]
fn a_bad_op_fails_the_batch_and_rollback_leaves_the_doc_unchanged() {
    let err = expect_err(json!([
        {"op": "set", "path": "/title", "value": "changed"},
        {"op": "insert", "path": "/timeline/-", "values": [1, 2]},
        {"op": "increment", "path": "/count", "by": 1},
    ]));
    assert!(matches!(err, ModelError::NotACounter { path } if path == "/count"));
}

#[test]
fn invalid_pointers_are_refused() {
    for (path, bad) in [
        ("title", "title"),
        ("/a~2", "/a~2"),
        ("/timeline/01/at", "/timeline/01"),
    ] {
        let err = expect_err(json!([{"op": "set", "path": path, "value": 1}]));
        assert!(
            matches!(&err, ModelError::InvalidPointer { path, .. } if path == bad),
            "{path}: {err:?}"
        );
    }
    let err = expect_err(json!([{"op": "delete", "path": ""}]));
    assert!(matches!(err, ModelError::InvalidPointer { .. }));
    let err = expect_err(json!([{"op": "delete", "path": "/timeline/-"}]));
    assert!(matches!(err, ModelError::InvalidPointer { path, .. } if path == "/timeline/-"));
    let err = expect_err(json!([{"op": "set", "path": "/timeline/-/at", "value": 1}]));
    assert!(matches!(err, ModelError::InvalidPointer { path, .. } if path == "/timeline/-"));
}

#[test]
fn missing_paths_are_reported_where_they_break() {
    let err = expect_err(json!([{"op": "set", "path": "/vendors/dj/phone", "value": 1}]));
    assert!(matches!(err, ModelError::PathNotFound { path } if path == "/vendors/dj"));
    let err = expect_err(json!([{"op": "delete", "path": "/vendors/dj"}]));
    assert!(matches!(err, ModelError::PathNotFound { path } if path == "/vendors/dj"));
    let err = expect_err(json!([{"op": "increment", "path": "/nope", "by": 1}]));
    assert!(matches!(err, ModelError::PathNotFound { .. }));
    let err = expect_err(
        json!([{"op": "splice", "path": "/nope", "index": 0, "delete": 0, "insert": ""}]),
    );
    assert!(matches!(err, ModelError::PathNotFound { .. }));
}

#[test]
fn scalars_and_text_have_no_children() {
    let err = expect_err(json!([{"op": "set", "path": "/count/x", "value": 1}]));
    assert!(matches!(err, ModelError::NotAContainer { path } if path == "/count"));
    let err = expect_err(json!([{"op": "set", "path": "/title/0", "value": 1}]));
    assert!(matches!(err, ModelError::NotAContainer { path } if path == "/title"));
}

#[test]
fn list_ops_on_maps_are_wrong_type() {
    let err = expect_err(json!([{"op": "insert", "path": "/vendors/x", "values": [1]}]));
    assert!(matches!(
        err,
        ModelError::WrongType { path, expected: "list", found: "map" } if path == "/vendors"
    ));
    let err = expect_err(json!([{"op": "remove", "path": "/vendors/florist", "count": 1}]));
    assert!(matches!(err, ModelError::WrongType { .. }));
    let err = expect_err(json!([{"op": "insert", "path": "", "values": [1]}]));
    assert!(matches!(err, ModelError::WrongType { .. }));
    let err = expect_err(json!([{"op": "insert", "path": "/timeline/x", "values": [1]}]));
    assert!(matches!(err, ModelError::InvalidPointer { .. }));
}

#[test]
fn indexes_past_the_end_are_out_of_bounds() {
    let cases = [
        json!({"op": "set", "path": "/timeline/2", "value": 1}),
        json!({"op": "set", "path": "/timeline/5/at", "value": 1}),
        json!({"op": "delete", "path": "/timeline/2"}),
        json!({"op": "insert", "path": "/timeline/3", "values": [1]}),
        json!({"op": "remove", "path": "/timeline/1", "count": 2}),
        json!({"op": "remove", "path": "/timeline/3", "count": 0}),
        json!({"op": "remove", "path": "/timeline/0", "count": usize::MAX}),
        json!({"op": "splice", "path": "/title", "index": 10, "delete": 5, "insert": "x"}),
        json!({"op": "splice", "path": "/title", "index": 13, "delete": 0, "insert": "x"}),
        json!({"op": "splice", "path": "/title", "index": 1, "delete": usize::MAX, "insert": ""}),
        json!({"op": "increment", "path": "/timeline/9", "by": 1}),
    ];
    for op in cases {
        let err = expect_err(json!([op]));
        assert!(
            matches!(err, ModelError::IndexOutOfBounds { len: 2 | 12, .. }),
            "{op}: {err:?}"
        );
    }
}

#[test]
fn splice_needs_text_and_increment_needs_a_counter() {
    for path in ["/count", "/vendors", "/vendors/florist/phone", ""] {
        let err = expect_err(
            json!([{"op": "splice", "path": path, "index": 0, "delete": 0, "insert": "x"}]),
        );
        assert!(
            matches!(&err, ModelError::NotAText { path: p } if p == path),
            "{err:?}"
        );
    }
    for path in ["/count", "/title", "/timeline", ""] {
        let err = expect_err(json!([{"op": "increment", "path": path, "by": 1}]));
        assert!(
            matches!(&err, ModelError::NotACounter { path: p } if p == path),
            "{err:?}"
        );
    }
    let err = expect_err(json!([{"op": "increment", "path": "/photos", "by": i64::MAX}]));
    assert!(matches!(err, ModelError::CounterOverflow { .. }));
}

#[test]
fn counters_stay_within_two_to_the_53_so_a_merge_never_wraps() {
    use crate::model::MAX_COUNTER;
    use automerge::ReadDoc as _;
    // Up to the bound, and no further, by an increment, a new counter or a new value.
    let mut doc = venue();
    apply(
        &mut doc,
        json!([{"op": "increment", "path": "/photos", "by": MAX_COUNTER - 11}]),
    )
    .unwrap();
    assert_eq!(at(&doc, "/photos"), json!({"$counter": MAX_COUNTER - 1}));
    for ops in [
        json!([{"op": "increment", "path": "/photos", "by": 2}]),
        json!([{"op": "set", "path": "/likes", "value": {"$counter": MAX_COUNTER + 1}}]),
        json!([{"op": "set", "path": "/likes", "value": {"$counter": -MAX_COUNTER - 1}}]),
    ] {
        let err = apply(&mut doc, ops.clone()).unwrap_err();
        assert!(
            matches!(
                err,
                ModelError::CounterOverflow { .. } | ModelError::InvalidTaggedValue { .. }
            ),
            "{ops}: {err:?}"
        );
    }
    let mut whole = to_json(&doc);
    whole["photos"] = json!(MAX_COUNTER + 5);
    let err = apply(&mut doc, json!([{"op": "set", "path": "", "value": whole}])).unwrap_err();
    assert!(
        matches!(&err, ModelError::CounterOverflow { path } if path == "/photos"),
        "{err:?}"
    );

    // Two devices apart each add 1 at the bound: the merge goes past it without
    // wrapping (the i64::MAX - 1 case cannot be written any more), and the
    // counter can then only move back towards the range.
    let mut other = doc.fork();
    for d in [&mut doc, &mut other] {
        apply(d, json!([{"op": "increment", "path": "/photos", "by": 1}])).unwrap();
    }
    doc.merge(&mut other).unwrap();
    assert_eq!(at(&doc, "/photos"), json!({"$counter": MAX_COUNTER + 1}));
    assert!(doc.get(automerge::ROOT, "photos").unwrap().is_some());
    let err = apply(
        &mut doc,
        json!([{"op": "increment", "path": "/photos", "by": 1}]),
    );
    assert!(matches!(err, Err(ModelError::CounterOverflow { .. })));
    apply(
        &mut doc,
        json!([{"op": "increment", "path": "/photos", "by": -1}]),
    )
    .unwrap();
    assert_eq!(at(&doc, "/photos"), json!({"$counter": MAX_COUNTER}));
}

#[test]
fn malformed_tags_in_values_are_refused_with_their_path() {
    let err = expect_err(
        json!([{"op": "insert", "path": "/timeline/0", "values": [1, {"$bytes": "x"}]}]),
    );
    assert!(matches!(err, ModelError::InvalidTaggedValue { path, .. } if path == "/timeline/0/1"));
}

#[test]
fn ops_deserialise_from_snake_case_json_and_reject_unknown_ops() {
    let op: EditOp =
        serde_json::from_value(json!({"op": "remove", "path": "/l/0", "count": 2})).unwrap();
    assert_eq!(
        op,
        EditOp::Remove {
            path: "/l/0".into(),
            count: 2
        }
    );
    assert!(serde_json::from_value::<EditOp>(json!({"op": "move", "path": "/a"})).is_err());
    assert!(serde_json::from_value::<EditOp>(json!({"op": "increment", "path": "/a"})).is_err());
}
