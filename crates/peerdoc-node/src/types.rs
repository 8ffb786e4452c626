//! What the embedding API returns: events, summaries and status.

use automerge::{ChangeHash, Patch, PatchAction, Prop};
use peerdoc_core::model::Conflict;
use peerdoc_core::persist::{CloudDurability, ConflictRecord, DocumentMeta, ReceiptStatus};
use peerdoc_core::repo::{ConnectionInfo, PeerDocSync};
use peerdoc_core::{DocumentId, StorageId};
use peerdoc_net::{Multiaddr, PeerId, PeerInfo};

use crate::patches::push_prop;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This node's application.
    Local,
    /// A peer (its libp2p id, when the connection is still known).
    Remote(Option<PeerId>),
}

/// Longest list of changed paths kept in one [`NodeEvent::DocumentChanged`].
pub const MAX_CHANGED_PATHS: usize = 64;

/// Something that happened on the node. Subscribers that lag lose the oldest events;
/// a read after any event always shows the current state.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A document changed (local changes are durable by the time `change` returns).
    DocumentChanged {
        /// Which.
        doc: DocumentId,
        /// Its new heads.
        heads: Vec<ChangeHash>,
        /// Who changed it.
        origin: Origin,
        /// How many automerge patches the change produced.
        patches: usize,
        /// The first [`MAX_EVENT_PATCHES`](crate::MAX_EVENT_PATCHES) of them as JSON
        /// (`{"action", "path", ...}`, see `docs/api.md`); fewer than `patches` means
        /// the rest were dropped.
        patch_json: Vec<serde_json::Value>,
        /// JSON pointers touched, deduplicated, at most [`MAX_CHANGED_PATHS`].
        paths: Vec<String>,
    },
    /// A document appeared (created here or received from a peer).
    DocumentCreated {
        /// Which.
        doc: DocumentId,
        /// Who created it.
        origin: Origin,
    },
    /// A document was deleted (here or by a peer's tombstone).
    DocumentDeleted {
        /// Which.
        doc: DocumentId,
        /// Who deleted it.
        origin: Origin,
    },
    /// A field got concurrent values for the first time; automerge picked a winner and
    /// the conflict was logged for someone to check.
    ConflictDetected {
        /// In which document.
        doc: DocumentId,
        /// The log entry.
        record: ConflictRecord,
    },
    /// A peer finished the sync handshake.
    PeerConnected {
        /// Its libp2p id.
        peer: PeerId,
        /// Its storage id, if it has one.
        storage_id: Option<StorageId>,
        /// Whether it speaks peerdoc's extensions (reconciliation).
        peerdoc: bool,
    },
    /// A peer's sync connection closed.
    PeerDisconnected {
        /// Its libp2p id.
        peer: PeerId,
    },
    /// Ephemeral data (presence, cursors) a peer sent with
    /// [`NodeHandle::broadcast`](crate::NodeHandle::broadcast) or automerge-repo's
    /// ephemeral messages. Never stored.
    Ephemeral {
        /// About which document.
        doc: DocumentId,
        /// The sender's automerge-repo peer id (a libp2p peer id for peerdoc nodes).
        from: String,
        /// The application's bytes.
        data: Vec<u8>,
    },
    /// Stored data of a document did not load; the rest of it did.
    DocumentDamaged {
        /// Which.
        doc: DocumentId,
        /// What was wrong.
        reason: String,
    },
    /// A storage operation failed.
    StorageFailed {
        /// The error.
        error: String,
    },
}

/// One document, as listed by [`NodeHandle::list`](crate::NodeHandle::list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSummary {
    /// Its id.
    pub id: DocumentId,
    /// Its title, if one was set.
    pub title: Option<String>,
    /// Sync priority (higher first).
    pub priority: i32,
    /// Bytes it occupies in storage.
    pub size: u64,
    /// When it was created, ms since the epoch.
    pub created_ms: u64,
    /// When it last changed here, ms since the epoch.
    pub last_change_ms: u64,
    /// Whether it was deleted (a tombstone).
    pub deleted: bool,
    /// Its heads, hex-encoded.
    pub heads: Vec<String>,
    /// Whether a cloud confirmed holding it at these heads (`docs/cloud.md`).
    pub receipt: ReceiptStatus,
    /// When the newest cloud receipt for the current heads arrived, ms since the epoch.
    pub receipt_ms: Option<u64>,
    /// What the cloud behind that receipt declared its stored writes survive; `None`
    /// when it did not say.
    pub receipt_durability: Option<CloudDurability>,
    /// Conflicts logged for it here (open or settled since); 0 means none ever.
    pub conflicts_logged: u64,
    /// The actor (hex) of its newest change: who changed it last.
    pub last_actor: Option<String>,
    /// Its open conflicts, as the engine keeps them on every change; `None` when not
    /// known without a load (a document with logged conflicts not changed since
    /// peerdoc started keeping them).
    pub open_conflicts: Option<peerdoc_core::persist::OpenConflicts>,
}

impl DocumentSummary {
    pub(crate) fn new(id: DocumentId, meta: &DocumentMeta) -> Self {
        Self {
            id,
            title: meta.title.clone(),
            priority: meta.priority,
            size: meta.stored_bytes,
            created_ms: meta.created_ms,
            last_change_ms: meta.updated_ms,
            deleted: meta.deleted,
            heads: meta.heads.clone(),
            receipt: meta.receipt_status(),
            receipt_ms: meta.current_receipt().map(|r| r.at_ms),
            receipt_durability: meta.current_receipt().and_then(|r| r.durability),
            conflicts_logged: meta.conflicts_logged,
            last_actor: meta.last_actor.clone(),
            open_conflicts: match &meta.open_conflicts {
                None if meta.conflicts_logged == 0 => Some(Default::default()),
                open => open.clone(),
            },
        }
    }
}

/// A document's conflicts, from [`NodeHandle::conflicts`](crate::NodeHandle::conflicts).
#[derive(Debug, Clone, PartialEq)]
pub struct Conflicts {
    /// Fields that hold several concurrent values now.
    pub current: Vec<Conflict>,
    /// Every conflict ever seen on this node (first sighting of each).
    pub log: Vec<ConflictRecord>,
}

/// One peer as the node sees it: the transport's view and the engine's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its libp2p id.
    pub peer: PeerId,
    /// Transport health, while a libp2p connection is open.
    pub net: Option<PeerInfo>,
    /// Sync counters, while the engine has a connection to it.
    pub sync: Option<ConnectionInfo>,
    /// Why the last attempt to connect failed, in words, and when (cleared once it
    /// connects): a peer seen but not connected says why.
    pub last_failure: Option<(String, std::time::SystemTime)>,
    /// For a peer that was connected and left: when, and over which address.
    pub departed: Option<Departure>,
}

impl PeerStatus {
    /// A peer with nothing known about it yet.
    pub(crate) fn bare(peer: PeerId) -> Self {
        Self {
            peer,
            net: None,
            sync: None,
            last_failure: None,
            departed: None,
        }
    }
}

/// When a departed peer was last connected, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    /// When its sync connection closed.
    pub last_seen: std::time::SystemTime,
    /// The address that connection used, if known.
    pub addr: Option<crate::Multiaddr>,
}

/// A failed connection attempt in words a coordinator can act on (`error` is the
/// transport's own text).
pub fn failure_in_words(error: &str) -> String {
    let lower = error.to_lowercase();
    // libp2p wraps every transport failure in "Failed to negotiate transport
    // protocol(s)": the cause inside it decides, so the plain network errors go first.
    let why = if lower.contains("none of our team keys") {
        "the device answered, but not with this team's key (another team, an old key, or not peerdoc)"
    } else if lower.contains("connection refused") {
        "nothing answers at its address (the device is off, or peerdoc restarted on another port)"
    } else if lower.contains("timed out") || lower.contains("timeout") {
        "no answer (the device is out of range, or this network keeps devices apart)"
    } else if lower.contains("negotiate transport") {
        "the device answered, but not with this team's key (another team, an old key, or not peerdoc)"
    } else if lower.contains("denied") || lower.contains("allow list") {
        "it is not a member of this device's team (or this device is in no team yet)"
    } else if lower.contains("unreachable") || lower.contains("no route") {
        "its network cannot be reached from here"
    } else {
        "the connection failed"
    };
    format!("{why}: {}", error.chars().take(300).collect::<String>())
}

/// One document's sync state with every connected peer, from
/// [`NodeHandle::sync_status`](crate::NodeHandle::sync_status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSync {
    /// The document.
    pub id: DocumentId,
    /// Its title.
    pub title: Option<String>,
    /// Its sync priority.
    pub priority: i32,
    /// Its heads here, hex.
    pub heads: Vec<String>,
    /// Whether a cloud confirmed holding it at these heads.
    pub receipt: ReceiptStatus,
    /// One entry per connected peer (that finished the handshake).
    pub peers: Vec<PeerDocStatus>,
}

/// What one peer is known to have of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDocStatus {
    /// The peer.
    pub peer: PeerId,
    /// As far as the last sync message (or reconciliation) says, the peer has exactly
    /// our heads.
    pub in_sync: bool,
    /// How many of our heads the peer is not known to have (0 when in sync).
    pub missing: usize,
    /// The heads the peer last reported (hex), when a sync session with it exists.
    pub their_heads: Option<Vec<String>>,
    /// The document is queued or being synced with this peer now.
    pub pending: bool,
    /// The peer is connected now; `false` for a departed peer, judged from what it
    /// was known to have when it left (see [`DepartedPeer`](crate::DepartedPeer)).
    pub connected: bool,
}

impl PeerDocStatus {
    /// Judges what `peer` is missing of a document whose heads are `ours` (hex) from
    /// what the engine knows.
    pub(crate) fn judge(peer: PeerId, ours: &[String], sync: &PeerDocSync) -> Self {
        let their_heads: Option<Vec<String>> = sync
            .their_heads
            .as_ref()
            .map(|heads| heads.iter().map(ToString::to_string).collect());
        let (in_sync, missing) = match &their_heads {
            _ if sync.in_sync => (true, 0),
            Some(theirs) => {
                let missing = ours.iter().filter(|h| !theirs.contains(h)).count();
                let same = missing == 0 && theirs.iter().all(|h| ours.contains(h));
                (same, missing)
            }
            // No session: reconciliation found the document equal, or it has not run.
            None if sync.reconciled && !sync.pending => (true, 0),
            None => (false, ours.len()),
        };
        Self {
            peer,
            in_sync,
            missing,
            their_heads,
            pending: sync.pending,
            connected: true,
        }
    }
}

/// A snapshot of the node, from [`NodeHandle::status`](crate::NodeHandle::status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node's libp2p id (also its automerge-repo peer id, as a string).
    pub peer_id: PeerId,
    /// The store's automerge-repo storage id (once started).
    pub storage_id: Option<StorageId>,
    /// Addresses the node listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Documents known, tombstones included.
    pub documents: usize,
    /// Of those, deleted ones.
    pub deleted: usize,
    /// Documents held in memory.
    pub loaded: usize,
    /// Documents evicted from memory since start.
    pub evictions: u64,
    /// Storage operations not yet completed.
    pub storage_in_flight: usize,
    /// Per-peer sync counters.
    pub peers: Vec<PeerStatus>,
}

/// JSON pointers touched by `patches`, deduplicated in first-seen order, at most
/// [`MAX_CHANGED_PATHS`].
pub(crate) fn changed_paths(patches: &[Patch]) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for patch in patches {
        let mut path = String::new();
        for (_, prop) in &patch.path {
            push_prop(&mut path, prop);
        }
        match &patch.action {
            PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => {
                push_prop(&mut path, &Prop::Map(key.clone()));
            }
            PatchAction::PutSeq { index, .. }
            | PatchAction::Insert { index, .. }
            | PatchAction::DeleteSeq { index, .. }
            | PatchAction::SpliceText { index, .. } => {
                push_prop(&mut path, &Prop::Seq(*index));
            }
            PatchAction::Increment { prop, .. } | PatchAction::Conflict { prop } => {
                push_prop(&mut path, prop);
            }
            PatchAction::Mark { .. } => {}
        }
        if !paths.contains(&path) {
            if paths.len() == MAX_CHANGED_PATHS {
                break;
            }
            paths.push(path);
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    #[test]
    fn a_refused_dial_wrapped_by_libp2p_is_not_taken_for_a_wrong_key() {
        let refused = failure_in_words(
            "Failed to negotiate transport protocol(s): [(/ip4/127.0.0.1/tcp/1: : Connection refused (os error 111))]",
        );
        assert!(
            refused.starts_with("nothing answers at its address"),
            "{refused}"
        );
        let key = failure_in_words(
            "Failed to negotiate transport protocol(s): [(/ip4/…: : unexpected end of file)]",
        );
        assert!(
            key.starts_with("the device answered, but not with this team's key"),
            "{key}"
        );
    }

    #[test]
    fn patches_become_escaped_json_pointers() {
        let mut doc = AutoCommit::new();
        doc.update_diff_cursor();
        doc.put(ROOT, "a/b", 1).unwrap();
        let list = doc
            .put_object(ROOT, "list", automerge::ObjType::List)
            .unwrap();
        doc.insert(&list, 0, "x").unwrap();
        let patches = doc.diff_incremental();
        assert_eq!(changed_paths(&patches), ["/a~1b", "/list", "/list/0"]);
    }

    fn sync(their: Option<Vec<ChangeHash>>, in_sync: bool, pending: bool) -> PeerDocSync {
        PeerDocSync {
            conn: peerdoc_core::ConnectionId(0),
            their_heads: their,
            in_sync,
            pending,
            reconciled: true,
        }
    }

    #[test]
    fn what_a_peer_is_missing() {
        let peer = PeerId::random();
        let h = |b: u8| ChangeHash([b; 32]);
        let ours = vec![h(1).to_string(), h(2).to_string()];
        let judged = PeerDocStatus::judge(peer, &ours, &sync(Some(vec![h(1)]), false, false));
        assert_eq!((judged.in_sync, judged.missing), (false, 1));
        let judged = PeerDocStatus::judge(peer, &ours, &sync(Some(vec![h(2), h(1)]), false, false));
        assert_eq!((judged.in_sync, judged.missing), (true, 0));
        // No session: equal after reconciliation unless queued.
        let judged = PeerDocStatus::judge(peer, &ours, &sync(None, false, false));
        assert_eq!((judged.in_sync, judged.missing), (true, 0));
        let judged = PeerDocStatus::judge(peer, &ours, &sync(None, false, true));
        assert_eq!((judged.in_sync, judged.missing), (false, 2));
    }
}
