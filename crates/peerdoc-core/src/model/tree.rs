//! An owned, typed value tree: the common currency between JSON, automerge's hydrated
//! values and the document itself.
//!
//! JSON cannot say "counter", "timestamp" or "bytes", and automerge's `hydrate::Value`
//! keeps maps in a `HashMap`; this tree keeps the automerge types and sorted keys, so the
//! writers ([`create`]) and the reconciler walk one shape whatever the source was.

use std::collections::BTreeMap;

use automerge::{ObjId, ObjType, ScalarValue, hydrate, transaction::Transactable};
use serde_json::{Map as JsonMap, Number, Value as Json};

use super::ModelError;
use super::pointer::push_token;

/// Tag of a one-key JSON object that writes a counter: `{"$counter": 3}`.
pub const COUNTER_TAG: &str = "$counter";
/// Tag of a one-key JSON object that writes a timestamp (ms): `{"$timestamp": 1700000000000}`.
pub const TIMESTAMP_TAG: &str = "$timestamp";
/// Tag of a one-key JSON object holding bytes as lowercase hex: `{"$bytes": "00ff"}`.
pub const BYTES_TAG: &str = "$bytes";
/// Tag of a one-key JSON object that writes an immutable (last-writer-wins) string
/// instead of a text object: `{"$str": "+44 20 7946 0000"}`.
pub const STR_TAG: &str = "$str";
/// Tag under which [`crate::model::to_json`] shows a scalar from a newer automerge:
/// `{"$unknown": {"type_code": 17, "bytes": "..."}}`. Not accepted on input.
pub const UNKNOWN_TAG: &str = "$unknown";

/// A document value with automerge's types and deterministic key order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tree {
    Scalar(ScalarValue),
    Map(BTreeMap<String, Tree>),
    List(Vec<Tree>),
    Text(String),
}

impl Tree {
    /// Reads a JSON value, turning strings into text and tagged one-key objects into
    /// counters, timestamps, bytes and immutable strings. `path` prefixes error paths.
    pub(crate) fn from_json(value: &Json, path: &str) -> Result<Self, ModelError> {
        Ok(match value {
            Json::Null => Tree::Scalar(ScalarValue::Null),
            Json::Bool(b) => Tree::Scalar(ScalarValue::Boolean(*b)),
            Json::Number(n) => Tree::Scalar(number_to_scalar(n)),
            Json::String(s) => Tree::Text(s.clone()),
            Json::Array(items) => Tree::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Tree::from_json(item, &format!("{path}/{i}")))
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(map) => {
                if let Some(scalar) = tagged_scalar(map, path)? {
                    return Ok(Tree::Scalar(scalar));
                }
                Tree::Map(
                    map.iter()
                        .map(|(k, v)| Ok((k.clone(), Tree::from_json(v, &push_token(path, k))?)))
                        .collect::<Result<_, ModelError>>()?,
                )
            }
        })
    }

    /// Copies a hydrated automerge value.
    pub(crate) fn from_hydrate(value: &hydrate::Value) -> Self {
        match value {
            hydrate::Value::Scalar(s) => Tree::Scalar(s.clone()),
            hydrate::Value::Map(map) => Tree::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Tree::from_hydrate(&v.value)))
                    .collect(),
            ),
            hydrate::Value::List(list) => {
                Tree::List(list.iter().map(|v| Tree::from_hydrate(&v.value)).collect())
            }
            hydrate::Value::Text(text) => Tree::Text(String::from(text)),
        }
    }

    /// The JSON view: text as strings, counters and timestamps as numbers, bytes tagged.
    pub(crate) fn to_json(&self) -> Json {
        match self {
            Tree::Scalar(s) => scalar_to_json(s),
            Tree::Map(map) => {
                Json::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Tree::List(items) => Json::Array(items.iter().map(Tree::to_json).collect()),
            Tree::Text(s) => Json::String(s.clone()),
        }
    }

    /// The automerge object type this tree is written as, or `None` for a scalar.
    pub(crate) fn obj_type(&self) -> Option<ObjType> {
        match self {
            Tree::Scalar(_) => None,
            Tree::Map(_) => Some(ObjType::Map),
            Tree::List(_) => Some(ObjType::List),
            Tree::Text(_) => Some(ObjType::Text),
        }
    }
}

fn number_to_scalar(n: &Number) -> ScalarValue {
    if let Some(i) = n.as_i64() {
        ScalarValue::Int(i)
    } else if let Some(u) = n.as_u64() {
        ScalarValue::Uint(u)
    } else {
        n.as_f64().map_or(ScalarValue::Null, ScalarValue::F64)
    }
}

fn tagged_scalar(
    map: &JsonMap<String, Json>,
    path: &str,
) -> Result<Option<ScalarValue>, ModelError> {
    let mut entries = map.iter();
    let (Some((tag, payload)), None) = (entries.next(), entries.next()) else {
        return Ok(None);
    };
    let bad = |reason| ModelError::InvalidTaggedValue {
        path: path.to_owned(),
        reason,
    };
    Ok(Some(match tag.as_str() {
        COUNTER_TAG => ScalarValue::Counter(
            payload
                .as_i64()
                .filter(|n| n.unsigned_abs() <= super::MAX_COUNTER.unsigned_abs())
                .ok_or_else(|| {
                    bad("a counter must be an integer within ±9007199254740991 (2^53 - 1)")
                })?
                .into(),
        ),
        TIMESTAMP_TAG => ScalarValue::Timestamp(
            payload
                .as_i64()
                .ok_or_else(|| bad("a timestamp must be integer milliseconds"))?,
        ),
        BYTES_TAG => ScalarValue::Bytes(
            payload
                .as_str()
                .and_then(|s| hex::decode(s).ok())
                .ok_or_else(|| bad("bytes must be a hex string"))?,
        ),
        STR_TAG => ScalarValue::Str(
            payload
                .as_str()
                .ok_or_else(|| bad("an immutable string must be a string"))?
                .into(),
        ),
        _ => return Ok(None),
    }))
}

/// The JSON form of one scalar (see the module docs for the mapping).
pub(crate) fn scalar_to_json(value: &ScalarValue) -> Json {
    match value {
        ScalarValue::Bytes(b) => tagged(BYTES_TAG, Json::String(hex::encode(b))),
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Int(i) => Json::from(*i),
        ScalarValue::Uint(u) => Json::from(*u),
        ScalarValue::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        // Tagged as written, so what a GET returns can be written back (POST, PATCH)
        // without the counter or timestamp becoming a plain number.
        ScalarValue::Counter(c) => tagged(COUNTER_TAG, Json::from(i64::from(c))),
        ScalarValue::Timestamp(ms) => tagged(TIMESTAMP_TAG, Json::from(*ms)),
        ScalarValue::Boolean(b) => Json::Bool(*b),
        ScalarValue::Null => Json::Null,
        ScalarValue::Unknown { type_code, bytes } => tagged(
            UNKNOWN_TAG,
            serde_json::json!({ "type_code": type_code, "bytes": hex::encode(bytes) }),
        ),
    }
}

fn tagged(tag: &str, payload: Json) -> Json {
    let mut map = JsonMap::new();
    map.insert(tag.to_owned(), payload);
    Json::Object(map)
}

/// Where [`create`] writes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place<'a> {
    /// Put under a map key.
    Key(&'a str),
    /// Overwrite an existing list element.
    Put(usize),
    /// Insert a new list element before this index.
    Insert(usize),
}

/// Writes `tree` as a fresh value at `place` in `obj`; objects are created new (so a write
/// supersedes every concurrent value there).
pub(crate) fn create(
    tx: &mut impl Transactable,
    obj: &ObjId,
    place: Place<'_>,
    tree: &Tree,
) -> Result<(), ModelError> {
    if let Tree::Scalar(s) = tree {
        match place {
            Place::Key(key) => tx.put(obj, key, s.clone())?,
            Place::Put(index) => tx.put(obj, index, s.clone())?,
            Place::Insert(index) => tx.insert(obj, index, s.clone())?,
        }
        return Ok(());
    }
    let Some(obj_type) = tree.obj_type() else {
        return Ok(());
    };
    let id = match place {
        Place::Key(key) => tx.put_object(obj, key, obj_type)?,
        Place::Put(index) => tx.put_object(obj, index, obj_type)?,
        Place::Insert(index) => tx.insert_object(obj, index, obj_type)?,
    };
    fill(tx, &id, tree)
}

/// Writes the children of `tree` into the empty object `id` of the same type.
pub(crate) fn fill(tx: &mut impl Transactable, id: &ObjId, tree: &Tree) -> Result<(), ModelError> {
    match tree {
        Tree::Scalar(_) => {}
        Tree::Map(map) => {
            for (key, child) in map {
                create(tx, id, Place::Key(key), child)?;
            }
        }
        Tree::List(items) => {
            for (index, child) in items.iter().enumerate() {
                create(tx, id, Place::Insert(index), child)?;
            }
        }
        Tree::Text(text) => {
            if !text.is_empty() {
                tx.splice_text(id, 0, 0, text)?;
            }
        }
    }
    Ok(())
}
