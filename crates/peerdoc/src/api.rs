//! The JSON bodies of the HTTP API (`docs/api.md`): one set of types that the server
//! writes, the CLI client and the dashboard read, and `docs/openapi.json` describes.
//!
//! Before these types there were three hand-written copies of every shape (the
//! server's `json!` literals, the client's structs, the OpenAPI file), and nothing but
//! review kept them equal. Now:
//!
//! - the server's handlers build these types and serialise them (only document content,
//!   arbitrary automerge JSON, stays a [`serde_json::Value`]);
//! - the client ([`crate::client`]) deserialises the same types, re-exported there;
//! - every type derives [`utoipa::ToSchema`], and the OpenAPI document is generated
//!   from them and from the handlers' `#[utoipa::path]` annotations
//!   (`crate::server::openapi`); `docs/openapi.json` is that output, committed for
//!   people to read, and a test fails when it differs from the generated one.
//!
//! The module lives beside the server and the client rather than inside either, because
//! both depend on it and neither owns it.
//!
//! **Reading is lenient, writing is exact.** Response types carry `#[serde(default)]`
//! (and some an `extra` map of unknown fields, kept so `--json` prints everything), so
//! a client reads an older or newer daemon's answer. What the daemon *sends* always has
//! every field (an absent value is `null`), except the few marked
//! `skip_serializing_if`; the OpenAPI document says so with `required`, which
//! `crate::server::openapi` derives from the types (utoipa alone would read the
//! lenient `#[serde(default)]` as "optional"). String fields whose values form a closed
//! set (`health`, `role`, …) stay `String` so that a newer daemon's new value reads, and
//! name the set for the schema with `#[schema(value_type = …)]`.
//!
//! Request types are exact both ways: `#[serde(deny_unknown_fields)]`, which the schema
//! shows as `additionalProperties: false`.

pub mod docs;
pub mod events;
pub mod status;
pub mod team;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

pub use self::docs::{
    ConflictRecord, ConflictValue, Conflicts, Created, CurrentConflict, DocContent, DocSummary,
    EditOp, EditRequest, Heads, HistoryEntry, MetaUpdate, NewDocument, ResolveRequest, Resolved,
};
pub use self::events::{ChangeEvent, ConflictEvent, DocumentEvent, LaggedEvent, Patch, PeerEvent};
pub use self::status::{
    Breaker, CloudEndpoint, ConflictDoc, ConflictSummary, DocPeer, DocStatus, Health,
    NetworkProblem, Peer, PeerAdded, PeerAddr, Receipts, SessionLink, Status, StoreProblem,
    StoreRollback,
};
pub use self::team::{
    CreateInvite, CreateTeam, InviteInfo, JoinTeam, Member, Revoked, TeamStatus, UpdateMember,
};

/// Every error answer: a stable, machine-readable `code` (`docs/api.md`, "Errors") and a
/// `message` for people. A user's mistake is never a 5xx, and no error is plain text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"code": "invalid_change", "message": "invalid change: /firstDance is not a counter"}))]
pub struct ErrorBody {
    /// The error's code, e.g. `not_found`, `bad_json`, `invalid_change`, `read_only`.
    pub code: String,
    /// What happened, in words.
    pub message: String,
}

/// Reads `T`, or `T::default()` when the value does not have `T`'s shape (a newer
/// daemon's variant the client does not know): the client reads what it can.
pub(crate) fn or_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).unwrap_or_default())
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`, with
/// `#[serde(default)]`).
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
