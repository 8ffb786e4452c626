//! Automerge patches as JSON, for change events that applications (and the HTTP API's
//! event stream) can apply without automerge.

use automerge::{ObjType, Patch, PatchAction, Prop, ScalarValue, Value};
use serde_json::{Map, Value as Json, json};

/// Most patches carried by one [`NodeEvent::DocumentChanged`](crate::NodeEvent); the
/// rest are dropped (the event's `patches` count says how many there were).
pub const MAX_EVENT_PATCHES: usize = 256;

/// The first `max` of `patches` as JSON objects:
/// `{"action", "path", "value"?, "values"?, "index"?, "length"?, "text"?, "by"?}`.
///
/// `path` is the JSON pointer of the object the patch applies to, extended by the key or
/// index it touches. New objects appear as empty (`{}`, `[]`, `""`), filled by the
/// patches that follow, as automerge reports them.
pub(crate) fn patches_to_json(patches: &[Patch], max: usize) -> Vec<Json> {
    patches.iter().take(max).map(patch_to_json).collect()
}

fn patch_to_json(patch: &Patch) -> Json {
    let mut path = String::new();
    for (_, prop) in &patch.path {
        push_prop(&mut path, prop);
    }
    let mut out = Map::new();
    let (action, fields) = match &patch.action {
        PatchAction::PutMap { key, value, .. } => {
            push_prop(&mut path, &Prop::Map(key.clone()));
            ("put", json!({ "value": value_to_json(&value.0) }))
        }
        PatchAction::PutSeq { index, value, .. } => {
            push_prop(&mut path, &Prop::Seq(*index));
            ("put", json!({ "value": value_to_json(&value.0) }))
        }
        PatchAction::Insert { index, values } => {
            push_prop(&mut path, &Prop::Seq(*index));
            let values: Vec<Json> = values.iter().map(|(v, _, _)| value_to_json(v)).collect();
            ("insert", json!({ "index": index, "values": values }))
        }
        PatchAction::SpliceText { index, value, .. } => (
            "splice",
            json!({ "index": index, "text": value.make_string() }),
        ),
        PatchAction::Increment { prop, value } => {
            push_prop(&mut path, prop);
            ("increment", json!({ "by": value }))
        }
        PatchAction::Conflict { prop } => {
            push_prop(&mut path, prop);
            ("conflict", json!({}))
        }
        PatchAction::DeleteMap { key } => {
            push_prop(&mut path, &Prop::Map(key.clone()));
            ("delete", json!({}))
        }
        PatchAction::DeleteSeq { index, length } => {
            push_prop(&mut path, &Prop::Seq(*index));
            ("delete", json!({ "index": index, "length": length }))
        }
        PatchAction::Mark { marks } => ("mark", json!({ "length": marks.len() })),
    };
    out.insert("action".into(), Json::from(action));
    out.insert("path".into(), Json::from(path));
    if let Json::Object(fields) = fields {
        out.extend(fields);
    }
    Json::Object(out)
}

fn value_to_json(value: &Value<'_>) -> Json {
    match value {
        Value::Object(ObjType::Map | ObjType::Table) => json!({}),
        Value::Object(ObjType::List) => json!([]),
        Value::Object(ObjType::Text) => json!(""),
        Value::Scalar(scalar) => match scalar.as_ref() {
            ScalarValue::Bytes(b) => json!({ "$bytes": hex::encode(b) }),
            ScalarValue::Str(s) => json!({ "$str": s.to_string() }),
            ScalarValue::Int(i) => json!(i),
            ScalarValue::Uint(u) => json!(u),
            ScalarValue::F64(f) => json!(f),
            ScalarValue::Counter(c) => json!({ "$counter": i64::from(c) }),
            ScalarValue::Timestamp(ms) => json!({ "$timestamp": ms }),
            ScalarValue::Boolean(b) => json!(b),
            ScalarValue::Null => Json::Null,
            ScalarValue::Unknown { type_code, .. } => json!({ "$unknown": type_code }),
        },
    }
}

pub(crate) fn push_prop(path: &mut String, prop: &Prop) {
    path.push('/');
    match prop {
        // RFC 6901 escaping.
        Prop::Map(key) => path.push_str(&key.replace('~', "~0").replace('/', "~1")),
        Prop::Seq(index) => path.push_str(&index.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    #[test]
    fn patches_become_json_with_pointers() {
        let mut doc = AutoCommit::new();
        doc.update_diff_cursor();
        doc.put(ROOT, "a/b", 1).unwrap();
        let list = doc.put_object(ROOT, "list", ObjType::List).unwrap();
        doc.insert(&list, 0, "x").unwrap();
        let text = doc.put_object(ROOT, "t", ObjType::Text).unwrap();
        doc.splice_text(&text, 0, 0, "hi").unwrap();
        let patches = doc.diff_incremental();
        let json = patches_to_json(&patches, 10);
        assert_eq!(
            json[0],
            json!({"action": "put", "path": "/a~1b", "value": 1})
        );
        assert!(json.iter().any(|p| p["action"] == "insert"
            && p["path"] == "/list/0"
            && p["values"] == json!([{"$str": "x"}])));
        assert!(
            json.iter()
                .any(|p| p["action"] == "splice" && p["path"] == "/t" && p["text"] == "hi")
        );
        assert_eq!(patches_to_json(&patches, 1).len(), 1);
    }
}
