//! One connection to a peer, as the engine sees it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{ConnectionId, DocumentId, PeerId, StorageId};
use crate::reconcile::Reconciliation;

use super::ConnectionInfo;
use super::ephemeral::EphemeralBudget;

/// What the handshake told us about the peer.
#[derive(Debug, Clone)]
pub(crate) struct PeerInfo {
    pub(crate) peer_id: PeerId,
    pub(crate) storage_id: Option<StorageId>,
    pub(crate) ephemeral: bool,
    pub(crate) peerdoc: bool,
    /// The extension version in force: the smaller of the two offers (0 for a plain
    /// automerge-repo peer).
    pub(crate) version: u64,
    /// It said it is its team's cloud.
    pub(crate) cloud: bool,
    /// What it said its stored writes survive, as a cloud.
    pub(crate) cloud_durability: Option<crate::persist::CloudDurability>,
}

#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) initiator: bool,
    /// The driver dialled it as a cloud endpoint.
    pub(crate) cloud_endpoint: bool,
    /// The peer may only read: its changes are not applied (see `PeerAccess`).
    pub(crate) read_only: bool,
    /// Only protected documents are synced with the peer (see `PeerAccess`).
    pub(crate) protected_only: bool,
    pub(crate) peer: Option<PeerInfo>,
    pub(crate) reconcile: Option<Reconciliation>,
    pub(crate) reconcile_reported: bool,
    pub(crate) reconcile_differences: usize,
    /// Documents to sync with this peer, highest priority first.
    pub(crate) queue: SyncQueue,
    /// Documents from the queue being synced now (bounded).
    pub(crate) active: BTreeSet<DocumentId>,
    /// Messages from this peer waiting for a document to load (bounded).
    pub(crate) pending_inbound: usize,
    /// Documents this (plain) peer asked for that we did not have, with the order in
    /// which it asked (`repo/wanted.rs`; bounded by `MAX_WANTED_PER_CONNECTION`).
    pub(crate) wanted: BTreeMap<DocumentId, u64>,
    /// `wanted` by age: the oldest request is forgotten first.
    pub(crate) wanted_by_age: BTreeMap<u64, DocumentId>,
    /// The sync message of each small `request` in `wanted`: what the peer said it
    /// has, so that the delivery's first message can carry the changes.
    pub(crate) wanted_requests: BTreeMap<DocumentId, Vec<u8>>,
    /// Documents this peer introduced that are not in the catalog yet: held in memory
    /// until a change arrives (`repo/introduced.rs`; bounded by
    /// `MAX_INTRODUCED_PER_CONNECTION`).
    pub(crate) introduced: BTreeSet<DocumentId>,
    /// Ephemeral messages this peer may still send now (`repo/ephemeral.rs`).
    pub(crate) ephemeral_budget: EphemeralBudget,
    /// Storage ids whose heads the peer asked to hear about (`remote-subscription-change`,
    /// `repo/remote_heads.rs`; bounded by `MAX_REMOTE_SUBSCRIPTIONS`).
    pub(crate) remote_subscriptions: BTreeSet<StorageId>,
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// When the peer last sent us anything (engine time): a fetch from a peer that has
    /// gone quiet is handed to another (`repo/fetch.rs`).
    pub(crate) last_in_ms: u64,
}

impl Connection {
    /// `queue_seed` orders equal-priority documents in the sync queue (see [`SyncQueue`]).
    pub(crate) fn new(initiator: bool, queue_seed: u64) -> Self {
        Self {
            initiator,
            cloud_endpoint: false,
            read_only: false,
            protected_only: false,
            peer: None,
            reconcile: None,
            reconcile_reported: false,
            reconcile_differences: 0,
            queue: SyncQueue::new(queue_seed),
            active: BTreeSet::new(),
            pending_inbound: 0,
            wanted: BTreeMap::new(),
            wanted_by_age: BTreeMap::new(),
            wanted_requests: BTreeMap::new(),
            introduced: BTreeSet::new(),
            ephemeral_budget: EphemeralBudget::default(),
            remote_subscriptions: BTreeSet::new(),
            messages_in: 0,
            messages_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            last_in_ms: 0,
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.peer.is_some()
    }

    pub(crate) fn is_peerdoc(&self) -> bool {
        self.peer.as_ref().is_some_and(|p| p.peerdoc)
    }

    /// What the peer declared its stored writes survive, if it is a cloud that said.
    pub(crate) fn cloud_durability(&self) -> Option<crate::persist::CloudDurability> {
        self.peer.as_ref().and_then(|p| p.cloud_durability)
    }

    /// The peer offers the documents we lack instead of sending them, and takes offers
    /// (`repo/pull.rs`).
    pub(crate) fn pulls(&self) -> bool {
        self.peer
            .as_ref()
            .is_some_and(|p| p.peerdoc && p.version >= crate::wire::PEERDOC_OFFERS_VERSION)
    }

    /// How many documents are queued or being synced with this peer.
    pub(crate) fn load(&self) -> usize {
        self.queue.len() + self.active.len()
    }

    /// The storage id under which what this peer confirms counts as a cloud receipt:
    /// a peer that said it is a cloud, or one the driver dialled as a cloud endpoint.
    pub(crate) fn receipt_storage_id(&self) -> Option<StorageId> {
        let peer = self.peer.as_ref()?;
        (peer.cloud || self.cloud_endpoint)
            .then(|| self.persistent_storage_id())
            .flatten()
    }

    /// The storage id under which sync state with this peer is persisted (none for
    /// ephemeral peers, whose state would never be reused).
    pub(crate) fn persistent_storage_id(&self) -> Option<StorageId> {
        self.peer
            .as_ref()
            .filter(|p| !p.ephemeral)
            .and_then(|p| p.storage_id.clone())
    }

    pub(crate) fn info(&self, conn: ConnectionId) -> ConnectionInfo {
        ConnectionInfo {
            conn,
            peer: self.peer.as_ref().map(|p| p.peer_id.clone()),
            storage_id: self.peer.as_ref().and_then(|p| p.storage_id.clone()),
            peerdoc: self.is_peerdoc(),
            messages_in: self.messages_in,
            messages_out: self.messages_out,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            queued_syncs: self.queue.len(),
            active_syncs: self.active.len(),
        }
    }
}

/// The documents waiting to be synced with one peer: highest priority first, and among
/// equal priorities in an order of this device's own (a hash of its peer id and the
/// document id). Peers that all hold what a newcomer lacks then start on different
/// documents instead of all sending the same ones first, and the newcomer, which takes
/// each document from one peer (`repo/fetch.rs`), gets them from all peers at once.
#[derive(Debug)]
pub(crate) struct SyncQueue {
    seed: u64,
    set: BTreeSet<(Reverse<i32>, u64, DocumentId)>,
    /// Each queued document's key in `set`.
    keys: BTreeMap<DocumentId, (Reverse<i32>, u64)>,
}

impl SyncQueue {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            set: BTreeSet::new(),
            keys: BTreeMap::new(),
        }
    }

    /// Queues `doc` (again, at `priority`, if it was queued already).
    pub(crate) fn push(&mut self, priority: i32, doc: DocumentId) {
        self.remove(&doc);
        let mut head = [0u8; 8];
        head.copy_from_slice(&doc.as_bytes()[..8]);
        let key = (Reverse(priority), mix(self.seed ^ u64::from_le_bytes(head)));
        self.set.insert((key.0, key.1, doc));
        self.keys.insert(doc, key);
    }

    pub(crate) fn pop_first(&mut self) -> Option<DocumentId> {
        let (_, _, doc) = self.set.pop_first()?;
        self.keys.remove(&doc);
        Some(doc)
    }

    pub(crate) fn contains(&self, doc: &DocumentId) -> bool {
        self.keys.contains_key(doc)
    }

    pub(crate) fn remove(&mut self, doc: &DocumentId) -> bool {
        match self.keys.remove(doc) {
            Some((priority, spread)) => self.set.remove(&(priority, spread, *doc)),
            None => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

/// SplitMix64's finaliser: spreads nearby inputs over the whole range.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
