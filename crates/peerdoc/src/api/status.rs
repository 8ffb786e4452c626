//! `/health`, `/v1/status`, `/v1/peers` and `/v1/session/link`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `GET /health`: `ok` while serving, `degraded` (still 200: reads are served) while
/// the store's writes fail, with `reason`, and `shutting_down` (with 503) while stopping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// `ok`, `degraded` or `shutting_down`.
    #[schema(value_type = Liveness)]
    pub status: String,
    /// Why it is `degraded`, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why the store's writes fail ([`Status::store_problem`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct StoreProblem {
    /// `full` (writes are refused until space is freed; reads go on) or `failing`.
    pub state: String,
    /// The latest error, in words.
    pub message: String,
    /// Since when writes fail (Unix ms).
    pub since_ms: u64,
}

/// The store found that it had lost acknowledged writes ([`Status::store_rollback`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct StoreRollback {
    /// What happened, in words.
    pub message: String,
    /// The documents that went back to an older version (or vanished); peers that
    /// hold them send the lost changes again when they sync.
    pub documents: Vec<String>,
    /// Whether store-wide records (peer records, the storage id) went back too.
    pub store_wide: bool,
    /// When the store found it (Unix ms).
    pub detected_ms: u64,
    /// Found when the daemon started this time (else at an earlier start).
    pub at_this_start: bool,
}

/// The values of [`Health::status`].
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Serving.
    Ok,
    /// Serving reads; writes fail (the disk is full, or the store failed).
    Degraded,
    /// Stopping.
    ShuttingDown,
}

/// How well a peer, or this device, is syncing.
///
/// A peer is `healthy` when its sync stream is open and it was heard from less than
/// 15 s ago; `degraded` when connected without a sync stream, or last heard from
/// 15–60 s ago, or its round trip is over 1 s; `offline` otherwise. This device
/// (`Status.health`) is `offline` when neither a peer nor a cloud endpoint is
/// connected, `degraded` when some connected peer is not healthy or documents are
/// queued for sync, else `healthy`.
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Syncing.
    Healthy,
    /// Connected, but not syncing well.
    Degraded,
    /// Not connected.
    Offline,
}

/// A libp2p connection's transport.
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// TCP (noise, yamux).
    Tcp,
    /// QUIC.
    Quic,
    /// In-process (tests and embedders).
    Memory,
    /// Anything else.
    Other,
}

/// A device's role in its team (`docs/teams.md`).
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Edits documents and manages the team.
    Admin,
    /// Edits documents.
    Editor,
    /// Reads documents; its changes are applied by nobody.
    Viewer,
}

/// A document's cloud receipt for its current heads (`docs/cloud.md`): `confirmed` = a
/// cloud that stores before it confirms holds it as it is here; `reported` = only a
/// stock sync server said so; `unconfirmed` = this device may hold changes no cloud
/// confirmed; `deleted` = a tombstone (nothing left to lose).
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    /// Held by a cloud that stores before it confirms.
    Confirmed,
    /// Only a stock sync server said so.
    Reported,
    /// Not confirmed by any cloud.
    Unconfirmed,
    /// Deleted.
    Deleted,
}

/// `GET /v1/status`: the node, its peers, cloud receipts, open conflicts, cloud
/// endpoints, the team and (unless `?docs=false`) every document's sync state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Status {
    /// This node's libp2p peer id.
    pub peer_id: String,
    /// Its automerge-repo storage id.
    pub storage_id: Option<String>,
    /// The daemon's version.
    pub version: String,
    /// Addresses it listens on (multiaddrs).
    pub listen_addrs: Vec<String>,
    /// The URL the API serves on.
    pub api_url: Option<String>,
    /// Documents known, tombstones included.
    pub documents: u64,
    /// How many of `documents` are peerdoc's own (the team's membership document, the
    /// shared titles and priorities).
    pub system_documents: u64,
    /// Of `documents`, deleted.
    pub deleted: u64,
    /// Held in memory.
    pub loaded: u64,
    /// Storage operations not yet durable.
    pub storage_in_flight: u64,
    /// While the store's writes fail: why (`storage full: …` when the disk is full),
    /// and since when; `null` when writes succeed.
    pub store_problem: Option<StoreProblem>,
    /// The last time the store found, on opening, that it had lost acknowledged writes
    /// (`docs/storage.md`, "Silent rollback"); `null` if it never did.
    pub store_rollback: Option<StoreRollback>,
    /// Bytes the store occupies on disk.
    pub store_bytes: u64,
    /// How the store is encrypted at rest (`docs/security.md`): `passphrase` or `key`
    /// (a key file); `null`: it is not encrypted.
    pub store_encryption: Option<String>,
    /// `healthy`, `degraded` or `offline` (see `HealthState`).
    #[schema(value_type = HealthState)]
    pub health: String,
    /// Every known peer, connected or not.
    pub peers: Vec<Peer>,
    /// Cloud receipts: is it safe to wipe this device?
    #[schema(value_type = Receipts)]
    pub receipts: Option<Receipts>,
    /// Documents with open conflicts.
    #[schema(value_type = ConflictSummary)]
    pub conflicts: Option<ConflictSummary>,
    /// Cloud endpoints (`docs/cloud.md`), in configuration order; `[]` when none are
    /// configured.
    pub cloud: Vec<CloudEndpoint>,
    /// What is wrong with this device's connections, in words, with what to do; `[]`
    /// when nothing is (`docs/networking.md`, "Venue Wi-Fi that fights you").
    pub network: Vec<NetworkProblem>,
    /// The team this device is in, or what to do without one (as `GET /v1/team`); left
    /// out by an embedder's server without teams.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = super::TeamStatus)]
    pub team: Option<super::TeamStatus>,
    /// Per-document sync state of live documents with connected and departed peers;
    /// left out with `?docs=false` (a cheap status).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<DocStatus>)]
    pub docs: Option<Vec<DocStatus>>,
    /// Fields this client does not know (a newer daemon's), kept so `--json` prints
    /// everything the daemon said.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: serde_json::Map<String, Value>,
}

/// Is it safe to wipe this device? From the receipts stored with each document; needs
/// no network (`docs/cloud.md`, "Cloud receipts").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({
    "safe_to_wipe": false,
    "verdict": "NOT safe to wipe: 2 documents of 14 not confirmed by any cloud as held here",
    "documents": 14, "confirmed": 12, "confirmed_power_safe": 12, "confirmed_process_safe": 0,
    "reported": 0, "unconfirmed": 2,
    "not_confirmed_docs": ["4NMNnkMhL8jXrdJ9jamS58PAVdXu", "2ZpaJgFemZpjw2yHtATyNm3wN4jx"],
    "oldest_receipt_ms": null
}))]
pub struct Receipts {
    /// Every live document is `confirmed`: a peerdoc cloud (which reports only heads it
    /// stored durably) reported holding it at exactly the heads this device has.
    pub safe_to_wipe: bool,
    /// The answer in one sentence ("safe to wipe: …", "probably safe to wipe: …" when
    /// some are only `reported`, "NOT safe to wipe: …").
    pub verdict: String,
    /// Live documents (deleted ones are not counted: nothing left to lose).
    pub documents: u64,
    /// Confirmed by a cloud that stores before it confirms.
    pub confirmed: u64,
    /// Of `confirmed`, by a cloud that declared its stored writes survive a power cut
    /// (`storage.durability = power`, the cloud profile's default).
    pub confirmed_power_safe: u64,
    /// Of `confirmed`, by a cloud that declared its stored writes survive only a crash
    /// of its process (`storage.durability = process`). The rest of `confirmed` came
    /// from clouds that did not say (an older peerdoc).
    pub confirmed_process_safe: u64,
    /// Confirmed only by a stock automerge-repo sync server's word (it reports heads
    /// before it writes them).
    pub reported: u64,
    /// Holding changes no cloud confirmed.
    pub unconfirmed: u64,
    /// Up to 20 documents not confirmed: unconfirmed first, highest priority first, then
    /// reported-only.
    pub not_confirmed_docs: Vec<String>,
    /// The oldest current receipt (Unix ms), set when no document is unconfirmed:
    /// everything here had reached the cloud by then.
    pub oldest_receipt_ms: Option<u64>,
}

/// The documents with fields holding concurrent values now (open conflicts), most
/// recently changed first. Only documents whose conflict log is not empty are checked
/// (a counter in the catalog, no load for the others), at most 50 (`unchecked` counts
/// the rest); peerdoc's own documents are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ConflictSummary {
    /// Documents with open conflicts.
    pub documents: u64,
    /// Conflicted fields across them.
    pub fields: u64,
    /// The documents, most recently changed first.
    pub docs: Vec<ConflictDoc>,
    /// Documents with logged conflicts not checked (beyond the daemon's bound of 50).
    pub unchecked: u64,
}

/// One document of [`ConflictSummary`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
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

/// One cloud endpoint (`[cloud] endpoints`, `docs/cloud.md`). URLs show secrets
/// redacted: the values of query parameters named like `token`, `key`, `secret`,
/// `password` or `auth`, and a password in the URL, read `redacted`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({
    "endpoint": "ws://198.18.0.5:3030", "kind": "sync_server", "connected": false,
    "breaker": {"state": "closed", "failures": 2},
    "attempts": 7, "failures_total": 6, "next_attempt_in_ms": 3712,
    "last_success_ms": 1763780000000_u64, "last_failure_ms": 1763780003000_u64,
    "last_error": "IO error: Connection refused (os error 111)"
}))]
pub struct CloudEndpoint {
    /// As configured (secrets in the URL redacted).
    pub endpoint: String,
    /// `sync_server` (an automerge-repo sync server over `ws://`/`wss://`) or `libp2p`.
    #[schema(value_type = EndpointKind)]
    pub kind: String,
    /// Whether a connection is up now.
    pub connected: bool,
    /// The circuit breaker; times in the dialer's own clock (ms since the daemon
    /// started).
    #[serde(deserialize_with = "super::or_default")]
    pub breaker: Breaker,
    /// Attempts since the daemon started.
    pub attempts: u64,
    /// Failed attempts since the daemon started.
    pub failures_total: u64,
    /// How long until the next attempt, in ms; `null` while connected or while an
    /// attempt is in flight.
    pub next_attempt_in_ms: Option<u64>,
    /// When a connection last came up (Unix ms).
    pub last_success_ms: Option<u64>,
    /// When an attempt last failed (Unix ms).
    pub last_failure_ms: Option<u64>,
    /// What the last failure was.
    pub last_error: Option<String>,
}

/// The values of [`CloudEndpoint::kind`].
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointKind {
    /// A stock automerge-repo sync server (or a peerdoc cloud) over WebSocket.
    SyncServer,
    /// A peerdoc cloud dialled over libp2p.
    Libp2p,
}

/// A cloud endpoint's circuit breaker (`peerdoc_core::endpoint::Breaker` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Breaker {
    /// Attempts follow the backoff schedule.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Too many failures: no attempt until `probe_at_ms`.
    Open {
        /// When the breaker opened.
        since_ms: u64,
        /// When one probe may go through.
        probe_at_ms: u64,
    },
    /// One probe is in flight; its outcome closes or reopens the breaker.
    HalfOpen,
}

impl Default for Breaker {
    fn default() -> Self {
        Self::Closed { failures: 0 }
    }
}

impl From<peerdoc_core::endpoint::Breaker> for Breaker {
    fn from(breaker: peerdoc_core::endpoint::Breaker) -> Self {
        use peerdoc_core::endpoint::Breaker as Core;
        match breaker {
            Core::Closed { failures } => Self::Closed { failures },
            Core::Open {
                since_ms,
                probe_at_ms,
            } => Self::Open {
                since_ms,
                probe_at_ms,
            },
            Core::HalfOpen => Self::HalfOpen,
        }
    }
}

/// One entry of [`Status::network`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({
    "code": "nothing_found",
    "message": "no device found: this Wi-Fi may block multicast (mDNS); join with an invite code, or add a device's address with `peerdoc peers add ADDRESS`"
}))]
pub struct NetworkProblem {
    /// Stable: `nothing_found`, `unreachable`, `addresses_dead`, `another_team_key`,
    /// `no_discovery` or `through_hub`.
    pub code: String,
    /// What is wrong and what to do, in words.
    pub message: String,
}

/// One document's sync state in [`Status::docs`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DocStatus {
    /// The document id.
    pub id: String,
    /// Its title.
    pub title: Option<String>,
    /// Its sync priority (higher syncs first).
    pub priority: i64,
    /// Its heads here.
    pub heads: Vec<String>,
    /// Its cloud receipt (see `ReceiptState`).
    #[schema(value_type = ReceiptState)]
    pub cloud_receipt: Option<String>,
    /// What each connected peer, and each departed one, has of it.
    pub peers: Vec<DocPeer>,
    /// Fields this client does not know (a newer daemon's), kept so `--json` prints
    /// everything the daemon said.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: serde_json::Map<String, Value>,
}

/// What one peer has of one document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DocPeer {
    /// The peer.
    pub peer_id: String,
    /// Whether it has all our heads, as far as its last sync message says; with no sync
    /// session open, true once reconciliation found the document equal and it is not
    /// `pending`.
    pub in_sync: bool,
    /// How many of our heads the peer is not known to have (0 = in sync as far as the
    /// last sync message says).
    pub missing: u64,
    /// What the peer last reported; `null` when no sync session about the document is
    /// open.
    pub their_heads: Option<Vec<String>>,
    /// Whether the document is queued or being synced with this peer.
    pub pending: bool,
    /// Whether the peer is connected; a departed peer (`false`) is judged from the heads
    /// it was known to have when it left.
    pub connected: bool,
}

/// A peer, as `GET /v1/peers` and `GET /v1/status` show it.
///
/// A peer seen but not connected (a dial to it failed, or it was refused here) is
/// listed with `connected: false`, `not_connected` (why, in words, then the
/// transport's error) and `not_connected_since_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({
    "peer_id": "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK",
    "name": "Sam's tablet", "role": "editor", "addrs": ["/ip4/198.18.0.20/tcp/4001"],
    "transport": "tcp", "connected": true, "sync_stream": true, "peerdoc": true,
    "rtt_ms": 0.4, "bytes_in": 1, "bytes_out": 2, "messages_in": 3, "messages_out": 4,
    "queued_syncs": 0, "active_syncs": 0, "last_seen_ms": 1763700000000_u64,
    "connected_since_ms": 1763700000000_u64, "health": "healthy",
    "not_connected": null, "not_connected_since_ms": null
}))]
pub struct Peer {
    /// Its libp2p peer id.
    pub peer_id: String,
    /// The device's name in this device's team (`null` for a device that is not a
    /// member).
    pub name: Option<String>,
    /// Its role in this device's team (`null` when not a member, or once removed).
    #[schema(value_type = Option<Role>)]
    pub role: Option<String>,
    /// Its addresses (multiaddrs).
    pub addrs: Vec<String>,
    /// The transport of its connection (`null` when not connected).
    #[schema(value_type = Option<Transport>)]
    pub transport: Option<String>,
    /// Whether a connection is open.
    pub connected: bool,
    /// Whether the sync stream is open.
    pub sync_stream: bool,
    /// Whether it speaks peerdoc's extension (not just automerge-repo).
    pub peerdoc: bool,
    /// Round-trip time in ms.
    pub rtt_ms: Option<f64>,
    /// Sync bytes received from it since the daemon started.
    pub bytes_in: u64,
    /// Sync bytes sent to it.
    pub bytes_out: u64,
    /// Sync messages received.
    pub messages_in: u64,
    /// Sync messages sent.
    pub messages_out: u64,
    /// Documents waiting to sync with it.
    pub queued_syncs: u64,
    /// Documents syncing with it now.
    pub active_syncs: u64,
    /// When it was last heard from (Unix ms).
    pub last_seen_ms: Option<u64>,
    /// Since when it is connected (Unix ms).
    pub connected_since_ms: Option<u64>,
    /// It was connected and left: `last_seen_ms` is when, `addrs` the address its last
    /// connection used. Listed until it returns (or, in a team, is removed).
    pub departed: bool,
    /// Not connected to this device while a hub (`peerdoc run --hub`) is: the hub's name
    /// (or id). Its changes and ours travel through the hub.
    pub via_hub: Option<String>,
    /// The documents (ids) it is known to miss, peerdoc's own left out: for a connected
    /// peer as its sync sessions say; for a departed one, what changed here since it
    /// left, was created since, or it did not have when it left.
    pub missing_docs: Vec<String>,
    /// `healthy`, `degraded` or `offline` (see `HealthState`).
    #[schema(value_type = HealthState)]
    pub health: String,
    /// Seen but not connected: why, in words, then the transport's error, e.g. "nothing
    /// answers at its address (the device is off, or peerdoc restarted on another
    /// port)", "it was removed from the team".
    pub not_connected: Option<String>,
    /// Since when it is not connected (Unix ms), with `not_connected`.
    pub not_connected_since_ms: Option<u64>,
    /// Fields this client does not know (a newer daemon's), kept so `--json` prints
    /// everything the daemon said.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: serde_json::Map<String, Value>,
}

/// `POST /v1/peers` and `DELETE /v1/peers`: an address to dial, or to stop dialing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"addr": "/ip4/198.18.0.20/tcp/4001"}))]
pub struct PeerAddr {
    /// A multiaddr (`/ip4/…/tcp/…[/p2p/<id>]`) or `IP:PORT`.
    pub addr: String,
}

/// The answer to `POST /v1/peers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PeerAdded {
    /// The address, as a multiaddr.
    pub addr: String,
    /// `false` when it was dialed already (then the status is 200, not 201).
    pub added: bool,
    /// Whether it is kept in `team.json` and dialed at every start (in a team only).
    pub remembered: bool,
}

/// `POST /v1/session/link`: a one-time link that signs a browser in to the dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({"url": "http://127.0.0.1:7420/login?code=3f2a…", "expires_in_secs": 120}))]
pub struct SessionLink {
    /// `http://<api>/login?code=<one-time code>`: opening it sets the session cookie and
    /// redirects to the dashboard.
    pub url: String,
    /// How long the link works (once).
    pub expires_in_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DocSummary;
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
