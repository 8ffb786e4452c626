//! `/v1/docs…`: documents, their edits, metadata, conflicts and history.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A document as listed by `GET /v1/docs` (and answered by `PATCH /v1/docs/{id}/meta`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DocSummary {
    /// The document id (bs58check).
    pub id: String,
    /// Its `automerge:` URL.
    pub url: String,
    /// Its title, shared with every device (`null`: none).
    pub title: Option<String>,
    /// Its sync priority (higher syncs first), shared with every device.
    pub priority: i64,
    /// Bytes it occupies in storage.
    pub size: u64,
    /// When it was created here (Unix ms).
    pub created_ms: u64,
    /// When it last changed here (Unix ms).
    pub last_change_ms: u64,
    /// Whether it is deleted (listed only with `?deleted=true`).
    pub deleted: bool,
    /// Its heads (hex change hashes).
    pub heads: Vec<String>,
    /// The cloud receipt for its current heads (see `ReceiptState`).
    #[schema(value_type = super::status::ReceiptState)]
    pub cloud_receipt: Option<String>,
    /// When the cloud receipt for the current heads arrived (Unix ms).
    pub cloud_receipt_ms: Option<u64>,
    /// Conflicts ever logged for it on this device (0: none).
    pub conflicts_logged: u64,
    /// The actor (hex) of its newest change.
    pub last_actor: Option<String>,
    /// The team name of the device that made the newest change, when known.
    pub last_change_by: Option<String>,
    /// Fields this client does not know (a newer daemon's), kept so `--json` prints
    /// everything the daemon said.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: serde_json::Map<String, Value>,
}

/// `POST /v1/docs`: a new document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"content": {"firstDance": "21:00", "guests": []}, "title": "Run of show", "priority": 10}))]
pub struct NewDocument {
    /// The initial content, a JSON object (absent or `null`: `{}`). JSON strings become
    /// collaborative text objects (as automerge-js 2+ stores them); value tags:
    /// `{"$counter": n}`, `{"$timestamp": ms}`, `{"$bytes": "hex"}`, `{"$str": "…"}` for
    /// a plain (non-text) string scalar.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schema(value_type = Option<Object>)]
    pub content: Value,
    /// Its title, shared with every device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its sync priority (default 0), shared with every device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// `PATCH /v1/docs/{id}/meta`: an absent field is left as it is; `"title": null`
/// clears the title. Titles and priorities reach every device (through a document of
/// the daemon's own, `2ZpaJgFemZpjw2yHtATyNm3wN4jx`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Run of show", "priority": 20}))]
pub struct MetaUpdate {
    /// The new title; `null` clears it (in Rust, `Some(None)`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::present"
    )]
    #[schema(value_type = Option<String>)]
    pub title: Option<Option<String>>,
    /// The new priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// `201` from `POST /v1/docs` and `POST /v1/docs/import`, `200` from
/// `POST /v1/docs/{id}/fetch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({
    "id": "4NMNnkMhL8jXrdJ9jamS58PAVdXu", "url": "automerge:4NMNnkMhL8jXrdJ9jamS58PAVdXu",
    "heads": ["9d0e1c3b7e3a4f6c8a2b5d7e9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a"]
}))]
pub struct Created {
    /// The document's id.
    pub id: String,
    /// Its `automerge:` URL.
    pub url: String,
    /// Its heads.
    pub heads: Vec<String>,
}

/// `GET /v1/docs/{id}`: a document's content at its heads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DocContent {
    /// The document id.
    pub id: String,
    /// Its `automerge:` URL.
    pub url: String,
    /// The heads this content is at.
    pub heads: Vec<String>,
    /// The content as JSON, with the value tags `POST /v1/docs` takes, so what a `GET`
    /// returns can be written back without losing a type: counters read
    /// `{"$counter": n}`, timestamps `{"$timestamp": ms}`, bytes `{"$bytes": "hex"}`;
    /// text and plain strings both read as JSON strings.
    #[schema(value_type = Object)]
    pub content: Value,
}

/// `200` from `PATCH /v1/docs/{id}`: the document's heads after the change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Heads {
    /// The document's heads after the change.
    pub heads: Vec<String>,
}

/// `PATCH /v1/docs/{id}`: edit ops applied as one atomic change (all or nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "ops": [{"op": "set", "path": "/firstDance", "value": "21:15"},
            {"op": "insert", "path": "/guests/-", "values": ["Ada"]}],
    "message": "first dance moved"
}))]
pub struct EditRequest {
    /// The ops, applied in order.
    pub ops: Vec<EditOp>,
    /// The change's message (shown in the history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One edit op. Paths are JSON pointers (RFC 6901); `-` appends to a list. Values
/// follow `POST /v1/docs`: strings become text, `{"$counter": n}` makes a counter.
///
/// The engine's `peerdoc_core::model::EditOp` has the same wire form; this is the API's
/// copy, converted field by field, so the schema is derived from the type the server
/// reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum EditOp {
    /// Writes `value` at `path`: a map key (created or overwritten), an existing list
    /// index (overwritten), `-` (appended). `""` makes the whole root equal to `value`.
    Set {
        /// Where to write.
        path: String,
        /// What to write.
        value: Value,
    },
    /// Deletes a map key or a list element.
    Delete {
        /// What to delete.
        path: String,
    },
    /// Inserts `values` into a list before the element at `path` (an index up to the
    /// length, or `-` to append).
    Insert {
        /// The list position.
        path: String,
        /// The values, inserted in order.
        values: Vec<Value>,
    },
    /// Removes `count` list elements starting at the index `path` ends with.
    Remove {
        /// The first element to remove.
        path: String,
        /// How many elements to remove.
        count: usize,
    },
    /// Splices the text at `path`: deletes `delete` characters from `index`, then
    /// inserts `insert` there.
    Splice {
        /// The text object.
        path: String,
        /// Where the splice starts.
        index: usize,
        /// How many characters to delete.
        delete: usize,
        /// What to insert.
        insert: String,
    },
    /// Adds `by` (possibly negative) to the counter at `path`.
    Increment {
        /// The counter.
        path: String,
        /// The amount to add.
        by: i64,
    },
}

impl EditOp {
    /// The JSON pointer the op acts on.
    pub fn path(&self) -> &str {
        match self {
            Self::Set { path, .. }
            | Self::Delete { path }
            | Self::Insert { path, .. }
            | Self::Remove { path, .. }
            | Self::Splice { path, .. }
            | Self::Increment { path, .. } => path,
        }
    }
}

impl From<EditOp> for peerdoc_core::model::EditOp {
    fn from(op: EditOp) -> Self {
        match op {
            EditOp::Set { path, value } => Self::Set { path, value },
            EditOp::Delete { path } => Self::Delete { path },
            EditOp::Insert { path, values } => Self::Insert { path, values },
            EditOp::Remove { path, count } => Self::Remove { path, count },
            EditOp::Splice {
                path,
                index,
                delete,
                insert,
            } => Self::Splice {
                path,
                index,
                delete,
                insert,
            },
            EditOp::Increment { path, by } => Self::Increment { path, by },
        }
    }
}

impl From<peerdoc_core::model::EditOp> for EditOp {
    fn from(op: peerdoc_core::model::EditOp) -> Self {
        use peerdoc_core::model::EditOp as Core;
        match op {
            Core::Set { path, value } => Self::Set { path, value },
            Core::Delete { path } => Self::Delete { path },
            Core::Insert { path, values } => Self::Insert { path, values },
            Core::Remove { path, count } => Self::Remove { path, count },
            Core::Splice {
                path,
                index,
                delete,
                insert,
            } => Self::Splice {
                path,
                index,
                delete,
                insert,
            },
            Core::Increment { path, by } => Self::Increment { path, by },
        }
    }
}

/// `GET /v1/docs/{id}/conflicts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Conflicts {
    /// Fields holding several concurrent values now.
    pub current: Vec<CurrentConflict>,
    /// Every conflict this device ever saw.
    pub log: Vec<ConflictRecord>,
}

/// A field holding several concurrent values now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CurrentConflict {
    /// Where, as a JSON pointer.
    pub path: String,
    /// The values, in automerge's order (the winner last, flagged).
    pub values: Vec<ConflictValue>,
}

/// One of a conflict's values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ConflictValue {
    /// The value, as JSON (an object value shown whole).
    pub value: Value,
    /// The actor that wrote it (hex).
    pub actor: String,
    /// The team name of the device that wrote it, when known.
    pub device: Option<String>,
    /// The change that wrote it (hex), when known.
    pub change: Option<String>,
    /// That change's timestamp as its author's device stated it (automerge records
    /// seconds; some writers use ms); 0 when unknown.
    pub time: i64,
    /// Whether this is the value automerge shows.
    pub winner: bool,
}

/// A conflict from the log: the conflict as first seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ConflictRecord {
    /// Its position in the document's log.
    pub seq: u64,
    /// Where, as a JSON pointer.
    pub path: String,
    /// When this device first saw it (Unix ms).
    pub detected_ms: u64,
    /// The values then, the automatic winner flagged.
    pub values: Vec<ConflictValue>,
}

/// `POST /v1/docs/{id}/conflicts/resolve`: `path`, and either `keep` or `value`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"path": "/florist/phone", "keep": "3f2a9c"}))]
pub struct ResolveRequest {
    /// The JSON pointer of the conflicted field.
    pub path: String,
    /// The kept value: its change hash (or a prefix of at least 6 hex characters) or
    /// its device's name, as `GET …/conflicts` lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<String>,
    /// A new value to write instead (value tags as in `POST /v1/docs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub value: Option<Value>,
}

/// `200` from `POST /v1/docs/{id}/conflicts/resolve`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Resolved {
    /// The document's heads after the resolving change.
    pub heads: Vec<String>,
    /// The field that was settled.
    pub path: String,
    /// The value written.
    pub kept: Value,
    /// Whose value was kept (its device's name, or the actor's first 8 hex characters);
    /// `null` when a new value was written.
    pub device: Option<String>,
}

/// One change of `GET /v1/docs/{id}/history`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct HistoryEntry {
    /// The change hash.
    pub hash: String,
    /// Its author (hex actor id).
    pub actor: String,
    /// The team name of the device that made the change (from the first 8 bytes of its
    /// actor id); `null` when unknown (a change made before teams, or by a JS app).
    pub device: Option<String>,
    /// Its sequence number among that actor's changes.
    pub seq: u64,
    /// The change's automerge timestamp (seconds, as the author's device stated it)
    /// × 1000; 0 when the author gave none.
    pub time_ms: i64,
    /// Its message.
    pub message: Option<String>,
    /// The changes it depends on.
    pub deps: Vec<String>,
}
