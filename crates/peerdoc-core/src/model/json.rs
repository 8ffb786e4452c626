//! The JSON view of a document, and writing JSON into one.

use automerge::{ChangeHash, ObjId, Prop, ReadDoc, transaction::Transactable};
use serde_json::Value as Json;

use super::ModelError;
use super::depth::{MAX_NESTING_DEPTH, nests_deeper_than};
use super::tree::{Place, Tree, create};

/// The whole document as JSON, maps in key order.
///
/// Maps become objects, lists arrays, text objects and immutable strings strings,
/// counters `{"$counter": n}`, timestamps `{"$timestamp": ms}`, bytes
/// `{"$bytes": "<lowercase hex>"}` (the tags [`put_json`] reads, so the view can be
/// written back without losing a type), non-finite floats `null`. Where values conflict, the winner (what `get` returns) is shown.
pub fn to_json(doc: &impl ReadDoc) -> Json {
    root_json(doc, None)
}

/// The document as it was at `heads`, as JSON (same mapping as [`to_json`]).
///
/// Heads the document does not contain are ignored, as automerge ignores them; use
/// [`try_to_json_at`] to refuse them instead.
pub fn to_json_at(doc: &impl ReadDoc, heads: &[ChangeHash]) -> Json {
    root_json(doc, Some(heads))
}

/// Like [`to_json_at`], but fails with [`ModelError::UnknownHeads`] if any of `heads` is
/// not a change of `doc`.
pub fn try_to_json_at(doc: &impl ReadDoc, heads: &[ChangeHash]) -> Result<Json, ModelError> {
    check_heads(doc, heads)?;
    Ok(root_json(doc, Some(heads)))
}

fn root_json(doc: &impl ReadDoc, heads: Option<&[ChangeHash]>) -> Json {
    if nests_deeper_than(doc, &ObjId::Root, heads, MAX_NESTING_DEPTH) {
        return too_deep();
    }
    match doc.hydrate(ObjId::Root, heads) {
        Ok(value) => Tree::from_hydrate(&value).to_json(),
        // The root always exists; an empty object is the honest view of "nothing".
        Err(_) => Json::Object(serde_json::Map::new()),
    }
}

/// What the JSON view shows instead of a document that nests too deeply to walk.
pub(crate) fn too_deep() -> Json {
    serde_json::json!({
        "$error": format!("the document nests deeper than {MAX_NESTING_DEPTH} levels and is not shown")
    })
}

/// Fails with [`ModelError::UnknownHeads`] listing every hash in `heads` that `doc` lacks.
pub(crate) fn check_heads(doc: &impl ReadDoc, heads: &[ChangeHash]) -> Result<(), ModelError> {
    let unknown: Vec<ChangeHash> = heads
        .iter()
        .filter(|h| doc.get_change_by_hash(h).is_none())
        .copied()
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ModelError::UnknownHeads { heads: unknown })
    }
}

/// Writes `value` under `key` of `obj` (a map key, or an existing list index to overwrite).
///
/// Strings become **text objects** (`ObjType::Text`), as `@automerge/automerge` 2+ stores
/// plain JS strings, so concurrent edits to them merge character by character. One-key
/// objects are reserved tags: `{"$str": "..."}` writes an immutable string (last writer
/// wins, and concurrent writes show up as a conflict, which suits phone numbers and ids),
/// `{"$counter": n}` a counter, `{"$timestamp": ms}` a timestamp and
/// `{"$bytes": "<hex>"}` bytes. Objects and arrays are created new, so this write
/// supersedes every value concurrently at that place.
///
/// # Errors
/// [`ModelError::InvalidTaggedValue`] for a malformed tag (path relative to `value`), or
/// [`ModelError::Automerge`] if `obj` or `key` does not fit the document.
pub fn put_json(
    tx: &mut impl Transactable,
    obj: &ObjId,
    key: impl Into<Prop>,
    value: &Json,
) -> Result<(), ModelError> {
    let tree = Tree::from_json(value, "")?;
    match key.into() {
        Prop::Map(key) => create(tx, obj, Place::Key(&key), &tree),
        Prop::Seq(index) => create(tx, obj, Place::Put(index), &tree),
    }
}

/// Writes every key of the JSON object `value` into the document root (see [`put_json`]
/// for the mapping). Keys already in the root and absent from `value` are left alone; use
/// [`crate::model::reconcile_to_json`] to make the root equal to `value`.
///
/// # Errors
/// [`ModelError::RootNotObject`] if `value` is not a JSON object.
pub fn init_from_json(tx: &mut impl Transactable, value: &Json) -> Result<(), ModelError> {
    let Tree::Map(map) = root_tree(value)? else {
        return Err(ModelError::RootNotObject);
    };
    for (key, child) in &map {
        create(tx, &ObjId::Root, Place::Key(key), child)?;
    }
    Ok(())
}

/// Converts a whole-document JSON value, which must be an object.
pub(crate) fn root_tree(value: &Json) -> Result<Tree, ModelError> {
    if !value.is_object() {
        return Err(ModelError::RootNotObject);
    }
    match Tree::from_json(value, "")? {
        tree @ Tree::Map(_) => Ok(tree),
        // A one-key tagged object is a scalar, which cannot be the root.
        _ => Err(ModelError::RootNotObject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{Automerge, ObjType, ReadDoc, ScalarValue, Value};
    use serde_json::json;

    fn doc_from(value: &Json) -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init_from_json(&mut tx, value).unwrap();
        tx.commit();
        doc
    }

    #[test]
    fn round_trips_plain_json() {
        let value = json!({
            "title": "Barn wedding",
            "guests": 120,
            "big": u64::MAX,
            "neg": -4,
            "ratio": 0.5,
            "confirmed": true,
            "notes": null,
            "timeline": [{"at": "15:00", "what": "ceremony"}, [], {}],
        });
        assert_eq!(to_json(&doc_from(&value)), value);
    }

    #[test]
    fn strings_are_text_unless_tagged() {
        let doc = doc_from(&json!({"a": "text", "b": {"$str": "scalar"}}));
        assert!(matches!(
            doc.get(ObjId::Root, "a").unwrap(),
            Some((Value::Object(ObjType::Text), _))
        ));
        assert!(matches!(
            doc.get(ObjId::Root, "b").unwrap(),
            Some((Value::Scalar(s), _)) if s.as_ref() == &ScalarValue::Str("scalar".into())
        ));
        assert_eq!(to_json(&doc), json!({"a": "text", "b": "scalar"}));
    }

    #[test]
    fn tagged_scalars_keep_their_types() {
        let doc = doc_from(&json!({
            "c": {"$counter": 3},
            "t": {"$timestamp": 1_700_000_000_000_i64},
            "b": {"$bytes": "00ff"},
            "not_a_tag": {"$counter": 1, "other": 2},
        }));
        let get = |k: &str| match doc.get(ObjId::Root, k).unwrap() {
            Some((Value::Scalar(s), _)) => s.into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(get("c"), ScalarValue::counter(3));
        assert_eq!(get("t"), ScalarValue::Timestamp(1_700_000_000_000));
        assert_eq!(get("b"), ScalarValue::Bytes(vec![0, 255]));
        assert_eq!(
            to_json(&doc),
            json!({
                "c": {"$counter": 3},
                "t": {"$timestamp": 1_700_000_000_000_i64},
                "b": {"$bytes": "00ff"},
                "not_a_tag": {"$counter": 1, "other": 2},
            })
        );
    }

    #[test]
    fn non_finite_floats_are_null() {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ObjId::Root, "nan", f64::NAN).unwrap();
        tx.put(ObjId::Root, "inf", f64::INFINITY).unwrap();
        tx.commit();
        assert_eq!(to_json(&doc), json!({"nan": null, "inf": null}));
    }

    #[test]
    fn bad_tags_and_roots_are_refused() {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        for bad in [
            json!({"x": {"$counter": "one"}}),
            json!({"x": [{"$bytes": "zz"}]}),
            json!({"x": {"$timestamp": 1.5}}),
            json!({"x": {"$str": 5}}),
        ] {
            assert!(matches!(
                init_from_json(&mut tx, &bad),
                Err(ModelError::InvalidTaggedValue { .. })
            ));
        }
        match init_from_json(&mut tx, &json!({"x": [{"$bytes": "zz"}]})) {
            Err(ModelError::InvalidTaggedValue { path, .. }) => assert_eq!(path, "/x/0"),
            other => panic!("{other:?}"),
        }
        for bad in [json!([]), json!("s"), json!(1), json!({"$counter": 1})] {
            assert!(matches!(
                init_from_json(&mut tx, &bad),
                Err(ModelError::RootNotObject)
            ));
        }
        assert_eq!(tx.pending_ops(), 0);
    }

    #[test]
    fn put_json_overwrites_list_elements() {
        let mut doc = doc_from(&json!({"l": [1, 2, 3]}));
        let list = doc.get(ObjId::Root, "l").unwrap().unwrap().1;
        let mut tx = doc.transaction();
        put_json(&mut tx, &list, 1, &json!({"x": "y"})).unwrap();
        tx.commit();
        assert_eq!(to_json(&doc), json!({"l": [1, {"x": "y"}, 3]}));
    }

    #[test]
    fn to_json_at_shows_old_state_and_try_refuses_unknown_heads() {
        let mut doc = doc_from(&json!({"v": 1}));
        let old = doc.get_heads();
        let mut tx = doc.transaction();
        put_json(&mut tx, &ObjId::Root, "v", &json!(2)).unwrap();
        tx.commit();
        assert_eq!(to_json_at(&doc, &old), json!({"v": 1}));
        assert_eq!(try_to_json_at(&doc, &old).unwrap(), json!({"v": 1}));
        let bogus = ChangeHash([7; 32]);
        assert!(matches!(
            try_to_json_at(&doc, &[bogus]),
            Err(ModelError::UnknownHeads { heads }) if heads == vec![bogus]
        ));
    }
}
