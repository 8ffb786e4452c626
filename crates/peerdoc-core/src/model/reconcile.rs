//! Making a part of a document equal to a target value with few edits: the walker behind
//! [`reconcile_to_json`], [`EditOp::Set`](super::EditOp::Set) on the root and
//! [`revert_to`](super::revert_to).
//!
//! Rules: delete map keys the target lacks; leave equal scalars alone; recurse into an
//! object of the same type; replace a value of a different type with a fresh one; splice
//! only the differing middle of a text; reconcile lists element by element, then remove or
//! append the tail. Reconciling a document onto its own content writes nothing.

use std::collections::BTreeMap;

use automerge::{
    ObjId, ObjType, Prop, ScalarValue, TextEncoding, Value, transaction::Transactable,
};
use serde_json::Value as Json;

use super::ModelError;
use super::json::root_tree;
use super::tree::{Place, Tree, create, scalar_to_json};

/// How strictly scalars are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The target came from JSON, which cannot name counters, timestamps or immutable
    /// strings: a scalar whose JSON form already matches is kept, a counter given a new
    /// number is incremented, a timestamp or immutable string keeps its type.
    Json,
    /// The target came from the document itself (an older version): types must match.
    Exact,
}

/// Makes the document root equal to `value` (a JSON object) with minimal edits, keeping
/// existing automerge types where JSON cannot tell them apart (a counter set to a new
/// number is incremented; an immutable string stays immutable). Reconciling with
/// `to_json(doc)` itself writes nothing.
///
/// # Errors
/// [`ModelError::RootNotObject`] if `value` is not an object, a malformed tag, or an
/// automerge error; roll the transaction back on error.
pub fn reconcile_to_json(tx: &mut impl Transactable, value: &Json) -> Result<(), ModelError> {
    let tree = root_tree(value)?;
    reconcile_root(tx, &tree, Mode::Json)
}

/// Reconciles the root map with `tree`, which must be a map.
pub(crate) fn reconcile_root(
    tx: &mut impl Transactable,
    tree: &Tree,
    mode: Mode,
) -> Result<(), ModelError> {
    match tree {
        Tree::Map(map) => reconcile_map(tx, &ObjId::Root, map, mode),
        _ => Err(ModelError::RootNotObject),
    }
}

fn reconcile_object(
    tx: &mut impl Transactable,
    obj: &ObjId,
    tree: &Tree,
    mode: Mode,
) -> Result<(), ModelError> {
    match tree {
        Tree::Map(map) => reconcile_map(tx, obj, map, mode),
        Tree::List(items) => reconcile_list(tx, obj, items, mode),
        Tree::Text(text) => reconcile_text(tx, obj, text),
        Tree::Scalar(_) => Ok(()),
    }
}

fn reconcile_map(
    tx: &mut impl Transactable,
    obj: &ObjId,
    target: &BTreeMap<String, Tree>,
    mode: Mode,
) -> Result<(), ModelError> {
    let stale: Vec<String> = tx.keys(obj).filter(|k| !target.contains_key(k)).collect();
    for key in stale {
        tx.delete(obj, key)?;
    }
    for (key, child) in target {
        let current = owned(tx.get(obj, key.as_str())?);
        reconcile_slot(tx, obj, Place::Key(key), current, child, mode)?;
    }
    Ok(())
}

fn reconcile_list(
    tx: &mut impl Transactable,
    obj: &ObjId,
    target: &[Tree],
    mode: Mode,
) -> Result<(), ModelError> {
    let len = tx.length(obj);
    for index in (target.len()..len).rev() {
        tx.delete(obj, index)?;
    }
    for (index, child) in target.iter().enumerate() {
        if index < len {
            let current = owned(tx.get(obj, index)?);
            reconcile_slot(tx, obj, Place::Put(index), current, child, mode)?;
        } else {
            create(tx, obj, Place::Insert(index), child)?;
        }
    }
    Ok(())
}

fn reconcile_text(tx: &mut impl Transactable, obj: &ObjId, target: &str) -> Result<(), ModelError> {
    let current = tx.text(obj)?;
    if current == target {
        return Ok(());
    }
    let prefix = common_prefix(&current, target);
    let suffix = common_suffix(&current[prefix..], &target[prefix..]);
    let old_middle = &current[prefix..current.len() - suffix];
    let new_middle = &target[prefix..target.len() - suffix];
    let encoding = tx.text_encoding();
    match (
        units(encoding, &current[..prefix]),
        units(encoding, old_middle),
    ) {
        (Some(index), Some(delete)) => {
            // A str never exceeds isize::MAX bytes, so its unit count fits too.
            let delete = isize::try_from(delete).unwrap_or(isize::MAX);
            tx.splice_text(obj, index, delete, new_middle)?;
        }
        // Grapheme-counted documents: let automerge diff by graphemes.
        _ => tx.update_text(obj, target)?,
    }
    Ok(())
}

/// Byte length of the longest common prefix of `a` and `b`, on a char boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, ca), cb)| ca != cb)
        .map_or_else(|| a.len().min(b.len()), |((i, _), _)| i)
}

/// Byte length of the longest common suffix of `a` and `b`, on a char boundary.
fn common_suffix(a: &str, b: &str) -> usize {
    a.chars()
        .rev()
        .zip(b.chars().rev())
        .take_while(|(ca, cb)| ca == cb)
        .map(|(c, _)| c.len_utf8())
        .sum()
}

/// Length of `s` in the document's text units, or `None` for grapheme counting.
fn units(encoding: TextEncoding, s: &str) -> Option<usize> {
    match encoding {
        TextEncoding::UnicodeCodePoint => Some(s.chars().count()),
        TextEncoding::Utf8CodeUnit => Some(s.len()),
        TextEncoding::Utf16CodeUnit => Some(s.encode_utf16().count()),
        TextEncoding::GraphemeCluster => None,
    }
}

fn owned(found: Option<(Value<'_>, ObjId)>) -> Option<(Value<'static>, ObjId)> {
    found.map(|(v, id)| (v.into_owned(), id))
}

fn reconcile_slot(
    tx: &mut impl Transactable,
    obj: &ObjId,
    place: Place<'_>,
    current: Option<(Value<'static>, ObjId)>,
    target: &Tree,
    mode: Mode,
) -> Result<(), ModelError> {
    match (current, target) {
        (Some((Value::Scalar(current), _)), Tree::Scalar(wanted)) => {
            reconcile_scalar(tx, obj, place, current.as_ref(), wanted, mode)
        }
        (Some((Value::Scalar(current), _)), Tree::Text(wanted))
            if mode == Mode::Json && matches!(current.as_ref(), ScalarValue::Str(_)) =>
        {
            if current.as_str() != Some(wanted.as_str()) {
                put_scalar(tx, obj, place, ScalarValue::Str(wanted.as_str().into()))?;
            }
            Ok(())
        }
        (Some((Value::Object(current_type), id)), wanted)
            if wanted.obj_type().map(map_like) == Some(map_like(current_type)) =>
        {
            reconcile_object(tx, &id, wanted, mode)
        }
        _ => create(tx, obj, place, target),
    }
}

fn map_like(obj_type: ObjType) -> ObjType {
    match obj_type {
        ObjType::Table => ObjType::Map,
        other => other,
    }
}

fn reconcile_scalar(
    tx: &mut impl Transactable,
    obj: &ObjId,
    place: Place<'_>,
    current: &ScalarValue,
    wanted: &ScalarValue,
    mode: Mode,
) -> Result<(), ModelError> {
    if same_scalar(current, wanted)
        || (mode == Mode::Json && scalar_to_json(current) == scalar_to_json(wanted))
    {
        return Ok(());
    }
    let wanted_number = match (mode, wanted) {
        (_, ScalarValue::Counter(c)) => Some(i64::from(c)),
        (Mode::Json, ScalarValue::Int(i)) => Some(*i),
        _ => None,
    };
    match (current, wanted_number) {
        (ScalarValue::Counter(c), Some(n)) => {
            let prop = match place {
                Place::Key(key) => Prop::from(key),
                Place::Put(index) | Place::Insert(index) => Prop::from(index),
            };
            if !super::counter_allowed(i64::from(c), n) {
                return Err(ModelError::CounterOverflow {
                    path: super::conflicts::pointer_to(tx, obj, &prop).unwrap_or_default(),
                });
            }
            if let Some(by) = n.checked_sub(i64::from(c)) {
                tx.increment(obj, prop, by)?;
                return Ok(());
            }
            put_scalar(tx, obj, place, ScalarValue::counter(n))
        }
        (ScalarValue::Timestamp(_), Some(n)) if mode == Mode::Json => {
            put_scalar(tx, obj, place, ScalarValue::Timestamp(n))
        }
        _ => put_scalar(tx, obj, place, wanted.clone()),
    }
}

fn put_scalar(
    tx: &mut impl Transactable,
    obj: &ObjId,
    place: Place<'_>,
    value: ScalarValue,
) -> Result<(), ModelError> {
    create(tx, obj, place, &Tree::Scalar(value))
}

/// Scalar equality where a NaN equals the same NaN, so unchanged floats are not rewritten.
fn same_scalar(a: &ScalarValue, b: &ScalarValue) -> bool {
    match (a, b) {
        (ScalarValue::F64(x), ScalarValue::F64(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{init_from_json, to_json};
    use automerge::{Automerge, ReadDoc};
    use serde_json::json;

    fn doc_from(value: &Json) -> Automerge {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        init_from_json(&mut tx, value).unwrap();
        tx.commit();
        doc
    }

    fn reconcile(doc: &mut Automerge, value: &Json) -> usize {
        let mut tx = doc.transaction();
        reconcile_to_json(&mut tx, value).unwrap();
        let ops = tx.pending_ops();
        tx.commit();
        ops
    }

    #[test]
    fn reconciling_with_own_json_writes_nothing() {
        let value = json!({"t": "hi", "c": {"$counter": 2}, "s": {"$str": "x"},
                           "ts": {"$timestamp": 5}, "b": {"$bytes": "01"}, "l": [1, "a", {}]});
        let mut doc = doc_from(&value);
        let view = to_json(&doc);
        assert_eq!(reconcile(&mut doc, &view), 0);
    }

    #[test]
    fn text_changes_splice_only_the_middle() {
        let mut doc = doc_from(&json!({"t": "Ceremony at 15:00"}));
        // one deletion of "5" and one insertion of "6" under code-point counting
        assert_eq!(reconcile(&mut doc, &json!({"t": "Ceremony at 16:00"})), 2);
        assert_eq!(to_json(&doc), json!({"t": "Ceremony at 16:00"}));
        reconcile(&mut doc, &json!({"t": "ü 16:00 é"}));
        assert_eq!(to_json(&doc), json!({"t": "ü 16:00 é"}));
    }

    #[test]
    fn json_numbers_keep_counters_and_timestamps() {
        let mut doc =
            doc_from(&json!({"c": {"$counter": 2}, "ts": {"$timestamp": 5}, "s": {"$str": "a"}}));
        reconcile(&mut doc, &json!({"c": 7, "ts": 9, "s": "b"}));
        let get = |k: &str| doc.get(ObjId::Root, k).unwrap().unwrap().0.into_owned();
        assert_eq!(get("c"), Value::counter(7));
        assert_eq!(get("ts"), Value::timestamp(9));
        assert_eq!(get("s"), Value::str("b"));
    }

    #[test]
    fn lists_and_types_are_reconciled() {
        let mut doc = doc_from(&json!({"l": [1, 2, 3, 4], "m": {"a": 1, "b": 2}, "x": [1]}));
        let target = json!({"l": [1, 9], "m": {"b": 2, "c": 3}, "x": {"now": "a map"}});
        reconcile(&mut doc, &target);
        assert_eq!(to_json(&doc), target);
        let target = json!({"l": [1, 9, 10, 11]});
        reconcile(&mut doc, &target);
        assert_eq!(to_json(&doc), target);
    }

    #[test]
    fn text_splices_count_in_the_documents_encoding() {
        for encoding in [
            TextEncoding::UnicodeCodePoint,
            TextEncoding::Utf8CodeUnit,
            TextEncoding::Utf16CodeUnit,
            TextEncoding::GraphemeCluster,
        ] {
            let mut doc = Automerge::new_with_encoding(encoding);
            let mut tx = doc.transaction();
            init_from_json(&mut tx, &json!({"t": "a🎉bé👩‍👩‍👧"})).unwrap();
            tx.commit();
            for target in ["a🎉cé👩‍👩‍👧🎉", "🎉", "", "x👩‍👩‍👧é"] {
                reconcile(&mut doc, &json!({"t": target}));
                assert_eq!(to_json(&doc), json!({"t": target}), "{encoding:?}");
            }
        }
    }

    #[test]
    fn root_must_be_an_object() {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        assert!(matches!(
            reconcile_to_json(&mut tx, &json!([1])),
            Err(ModelError::RootNotObject)
        ));
    }
}
