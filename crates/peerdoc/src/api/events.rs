//! The `data:` of each `GET /v1/events` Server-Sent Event, by event name:
//!
//! | `event:` | `data:` |
//! |---|---|
//! | `change` | [`ChangeEvent`] |
//! | `created`, `deleted` | [`DocumentEvent`] |
//! | `conflict` | [`ConflictEvent`] |
//! | `peer_connected`, `peer_disconnected` | [`PeerEvent`] |
//! | `lagged` | [`LaggedEvent`] |
//!
//! OpenAPI 3.1 cannot give each event of a stream its own schema, so the document lists
//! these types among its components and names them per event in the `x-events`
//! extension of `GET /v1/events` ([`EVENT_SCHEMAS`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::ConflictRecord;

/// Each event name with the schema of its `data:`.
pub const EVENT_SCHEMAS: &[(&str, &str)] = &[
    ("change", "ChangeEvent"),
    ("created", "DocumentEvent"),
    ("deleted", "DocumentEvent"),
    ("conflict", "ConflictEvent"),
    ("peer_connected", "PeerEvent"),
    ("peer_disconnected", "PeerEvent"),
    ("lagged", "LaggedEvent"),
];

/// Where a change came from.
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOrigin {
    /// Made on this device (through the API, the CLI or an attached app).
    Local,
    /// Received from a peer.
    Remote,
}

/// `change`: a document changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ChangeEvent {
    /// The document.
    pub doc: String,
    /// Its new heads.
    pub heads: Vec<String>,
    /// `local` or `remote`.
    #[schema(value_type = ChangeOrigin)]
    pub origin: String,
    /// The peer it came from, for a remote change.
    pub peer: Option<String>,
    /// The team name of the peer it came from, when known.
    pub device: Option<String>,
    /// The JSON pointers it touched.
    pub paths: Vec<String>,
    /// What changed, at most 256 patches.
    #[schema(value_type = Vec<Patch>)]
    pub patches: Vec<Value>,
    /// Present (`true`) when more patches were dropped than the event holds.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One patch of a [`ChangeEvent`] (automerge's patch, in JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Patch {
    /// What happened.
    #[schema(value_type = PatchAction)]
    pub action: String,
    /// Where, as a JSON pointer.
    pub path: String,
    /// The value put (`put`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub value: Option<Value>,
    /// The values inserted (`insert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Value>>,
    /// Where a `splice` or `delete` starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// How many elements or characters were deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// The text spliced in (`splice`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// How much a counter changed (`increment`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<i64>,
}

/// The values of [`Patch::action`].
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PatchAction {
    /// A value written at a key or index.
    Put,
    /// List elements inserted.
    Insert,
    /// A key or list elements deleted.
    Delete,
    /// Text spliced.
    Splice,
    /// A counter changed.
    Increment,
    /// A field came into conflict.
    Conflict,
    /// Text marks changed.
    Mark,
}

/// `created` and `deleted`: a document appeared or was deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DocumentEvent {
    /// The document.
    pub doc: String,
    /// `local` or `remote`.
    #[schema(value_type = ChangeOrigin)]
    pub origin: String,
    /// The peer it came from, for a remote one.
    pub peer: Option<String>,
    /// The team name of that peer, when known.
    pub device: Option<String>,
}

/// `conflict`: a conflict was seen (and logged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ConflictEvent {
    /// The document.
    pub doc: String,
    /// The logged conflict.
    pub record: ConflictRecord,
}

/// `peer_connected` and `peer_disconnected`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PeerEvent {
    /// The peer.
    pub peer_id: String,
    /// The device's team name, when it is a member.
    pub name: Option<String>,
}

/// `lagged`: the client fell behind and missed events; re-read state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct LaggedEvent {
    /// How many events were missed.
    pub missed: u64,
}
