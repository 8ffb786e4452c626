//! The API's request and response bodies, as `docs/api.md` specifies them.
//!
//! Responses are read leniently: a field the daemon leaves out gets its default (or
//! `None`), so an older or newer daemon still reads; ids stay strings, because the client
//! shows them rather than acting on them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// This node's libp2p peer id.
    pub peer_id: String,
    /// Its automerge-repo storage id.
    pub storage_id: Option<String>,
    /// The daemon's version.
    pub version: String,
    /// Addresses it listens on.
    pub listen_addrs: Vec<String>,
    /// The URL the API serves on.
    pub api_url: Option<String>,
    /// Documents known, tombstones included.
    pub documents: u64,
    /// Of those, the daemon's own (team membership, shared titles).
    pub system_documents: u64,
    /// Of those, deleted.
    pub deleted: u64,
    /// Held in memory.
    pub loaded: u64,
    /// Storage operations not yet durable.
    pub storage_in_flight: u64,
    /// Bytes the store occupies.
    pub store_bytes: u64,
    /// `healthy`, `degraded` or `offline`.
    pub health: String,
    /// Every known peer.
    pub peers: Vec<Peer>,
    /// Cloud receipts: is it safe to wipe this device?
    pub receipts: Option<Receipts>,
    /// Documents with open conflicts.
    pub conflicts: Option<ConflictSummary>,
    /// The configured cloud endpoints.
    pub cloud: Vec<CloudEndpoint>,
    /// What is wrong with this device's connections, in words (empty when nothing is).
    pub network: Vec<NetworkProblem>,
    /// The team this device is in, or what to do without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<crate::team::api::TeamStatus>,
    /// Per-document sync state (absent with `?docs=false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docs: Option<Vec<DocStatus>>,
    /// Fields this client does not know (a newer daemon's), kept so `--json` prints
    /// everything the daemon said.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// One entry of [`Status::network`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkProblem {
    /// Stable: `nothing_found`, `unreachable`, `addresses_dead`, `another_team_key`,
    /// `no_discovery`.
    pub code: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// The `receipts` object of [`Status`] (`docs/cloud.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Receipts {
    /// Every live document is confirmed stored by the cloud as it is here.
    pub safe_to_wipe: bool,
    /// The answer in one sentence.
    pub verdict: String,
    /// Live documents.
    pub documents: u64,
    /// Confirmed by a cloud that stores before it confirms.
    pub confirmed: u64,
    /// Confirmed only by a stock sync server's word.
    pub reported: u64,
    /// Holding changes no cloud confirmed.
    pub unconfirmed: u64,
    /// Some of the documents not confirmed, highest priority first.
    pub not_confirmed_docs: Vec<String>,
    /// Oldest current receipt, ms since the epoch.
    pub oldest_receipt_ms: Option<u64>,
}

/// The `conflicts` object of [`Status`]: documents with fields that hold concurrent
/// values now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConflictSummary {
    /// Documents with open conflicts.
    pub documents: u64,
    /// Conflicted fields across them.
    pub fields: u64,
    /// The documents, most recently changed first.
    pub docs: Vec<ConflictDoc>,
    /// Documents with logged conflicts not checked (beyond the daemon's bound).
    pub unchecked: u64,
}

/// One document of [`ConflictSummary`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConflictDoc {
    /// The document id.
    pub id: String,
    /// Its title.
    pub title: Option<String>,
    /// Fields in conflict now.
    pub open: u64,
    /// Their JSON pointers.
    pub paths: Vec<String>,
}

/// One cloud endpoint in [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloudEndpoint {
    /// As configured (secrets in the URL redacted).
    pub endpoint: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// Failed attempts so far.
    pub failures_total: u64,
    /// The latest failure.
    pub last_error: Option<String>,
}

/// One document's sync state in [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DocStatus {
    /// The document id.
    pub id: String,
    /// Its title.
    pub title: Option<String>,
    /// Its sync priority.
    pub priority: i64,
    /// Its heads here.
    pub heads: Vec<String>,
    /// What each peer has of it.
    pub peers: Vec<DocPeer>,
    /// `confirmed`, `reported` or `unconfirmed` (`docs/cloud.md`).
    pub cloud_receipt: Option<String>,
    /// Fields this client does not know (a newer daemon's), kept so `--json` prints
    /// everything the daemon said.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// What one peer has of one document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DocPeer {
    /// The peer.
    pub peer_id: String,
    /// Whether it has all our heads, as far as its last sync message says.
    pub in_sync: bool,
    /// How many of our heads it is not known to have.
    pub missing: u64,
    /// Its heads, as last reported; `None` when no sync session about the document is
    /// open.
    pub their_heads: Option<Vec<String>>,
    /// Whether the document is queued or being synced with this peer.
    pub pending: bool,
    /// Whether the peer is connected; a departed peer is judged from what it had when
    /// it left.
    pub connected: bool,
}

/// `GET /v1/peers` (and [`Status::peers`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Peer {
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Seen but not connected: why, in words.
    pub not_connected: Option<String>,
    /// Its name in the team, when it is a member.
    pub name: Option<String>,
    /// Its role in the team.
    pub role: Option<String>,
    /// Its addresses.
    pub addrs: Vec<String>,
    /// `tcp` or `quic`.
    pub transport: Option<String>,
    /// Whether a connection is open.
    pub connected: bool,
    /// Whether the sync stream is open.
    pub sync_stream: bool,
    /// Whether it speaks peerdoc (not just libp2p).
    pub peerdoc: bool,
    /// Round-trip time.
    pub rtt_ms: Option<f64>,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes sent to it.
    pub bytes_out: u64,
    /// Sync messages received.
    pub messages_in: u64,
    /// Sync messages sent.
    pub messages_out: u64,
    /// Documents waiting to sync with it.
    pub queued_syncs: u64,
    /// Documents syncing with it now.
    pub active_syncs: u64,
    /// When it was last heard from (ms since the epoch).
    pub last_seen_ms: Option<u64>,
    /// Since when it is connected (ms since the epoch).
    pub connected_since_ms: Option<u64>,
    /// It was connected and left: `last_seen_ms` is when, `addrs` the address it used.
    pub departed: bool,
    /// The documents (ids) it is known to miss: for a connected peer as its sync says,
    /// for a departed one what changed here since it left (or it never had).
    pub missing_docs: Vec<String>,
    /// `healthy`, `degraded` or `offline`.
    pub health: String,
    /// Fields this client does not know (a newer daemon's), kept so `--json` prints
    /// everything the daemon said.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// One entry of `GET /v1/docs` (and `PATCH /v1/docs/{id}/meta`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DocSummary {
    /// The document id.
    pub id: String,
    /// Its `automerge:` URL.
    pub url: String,
    /// Its title.
    pub title: Option<String>,
    /// Its sync priority.
    pub priority: i64,
    /// Bytes it occupies in storage.
    pub size: u64,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
    /// When it last changed here (ms since the epoch).
    pub last_change_ms: u64,
    /// Whether it is deleted.
    pub deleted: bool,
    /// Its heads.
    pub heads: Vec<String>,
    /// `confirmed`, `reported` or `unconfirmed` (`docs/cloud.md`).
    pub cloud_receipt: Option<String>,
    /// When the cloud receipt was recorded (ms since the epoch).
    pub cloud_receipt_ms: Option<u64>,
    /// Fields this client does not know (a newer daemon's), kept so `--json` prints
    /// everything the daemon said.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// The body of `POST /v1/docs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDocument {
    /// The initial content, a JSON object.
    pub content: Value,
    /// Its title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its sync priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// The body of `PATCH /v1/docs/{id}/meta`: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetaUpdate {
    /// The new title (`Some(None)` clears it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<Option<String>>,
    /// The new priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// `201` from `POST /v1/docs` and `POST /v1/docs/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// The new document's id.
    pub id: String,
    /// Its `automerge:` URL.
    #[serde(default)]
    pub url: String,
    /// Its heads.
    #[serde(default)]
    pub heads: Vec<String>,
}

/// `GET /v1/docs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocContent {
    /// The document id.
    pub id: String,
    /// Its `automerge:` URL.
    #[serde(default)]
    pub url: String,
    /// The heads this content is at.
    #[serde(default)]
    pub heads: Vec<String>,
    /// The content as JSON.
    pub content: Value,
}

/// `PATCH /v1/docs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heads {
    /// The document's heads after the change.
    pub heads: Vec<String>,
}

/// `GET /v1/docs/{id}/conflicts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conflicts {
    /// Fields holding several concurrent values now.
    pub current: Vec<CurrentConflict>,
    /// Every conflict this node ever saw.
    pub log: Vec<ConflictRecord>,
}

/// A field holding several concurrent values now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CurrentConflict {
    /// Where, as a JSON pointer.
    pub path: String,
    /// The values, the winner flagged.
    pub values: Vec<ConflictValue>,
}

/// One of a conflict's values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConflictValue {
    /// The value.
    pub value: Value,
    /// The actor that wrote it (hex).
    pub actor: String,
    /// The team name of the device that wrote it, when known.
    pub device: Option<String>,
    /// The change that wrote it.
    pub change: Option<String>,
    /// That change's timestamp as its author stated it (automerge records seconds; some
    /// writers use ms).
    pub time: i64,
    /// Whether automerge shows this value.
    pub winner: bool,
}

/// A conflict from the log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConflictRecord {
    /// Its position in the document's log.
    pub seq: u64,
    /// Where, as a JSON pointer.
    pub path: String,
    /// When this node first saw it (ms since the epoch).
    pub detected_ms: u64,
    /// The values then.
    pub values: Vec<ConflictValue>,
}

/// One change of `GET /v1/docs/{id}/history`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryEntry {
    /// The change hash.
    pub hash: String,
    /// Its author (hex actor id).
    pub actor: String,
    /// The team name of the device that made it, when known.
    pub device: Option<String>,
    /// Its sequence number among that actor's changes.
    pub seq: u64,
    /// Its timestamp as its author stated it.
    pub time_ms: i64,
    /// Its commit message.
    pub message: Option<String>,
    /// The changes it depends on.
    pub deps: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_reads_with_nulls_and_missing_fields() {
        let status: Status = serde_json::from_value(json!({
            "peer_id": "12D3KooWA", "storage_id": null, "version": "0.1.0",
            "health": "degraded", "documents": 1,
            "peers": [{"peer_id": "12D3KooWB", "transport": null, "rtt_ms": null,
                       "connected": true, "last_seen_ms": null}],
            "docs": [{"id": "d", "title": null, "priority": 0, "heads": ["ab"],
                      "peers": [{"peer_id": "12D3KooWB", "in_sync": false, "missing": 0,
                                 "their_heads": null, "pending": true}]}],
            "some_future_field": 1
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let docs = status.docs.unwrap_or_default();
        assert_eq!(docs[0].peers[0].their_heads, None);
        assert!(docs[0].peers[0].pending);
        assert_eq!(status.peers[0].rtt_ms, None);
        assert_eq!(status.loaded, 0);
    }

    #[test]
    fn a_summary_without_a_title_reads() {
        let doc: DocSummary = serde_json::from_value(json!({
            "id": "d", "url": "automerge:d", "title": null, "priority": -1, "size": 3,
            "created_ms": 1, "last_change_ms": 2, "deleted": false, "heads": []
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(doc.title, None);
        assert_eq!(doc.priority, -1);
    }
}
