//! A loaded document and the bookkeeping that ties it to storage and to peers.

use std::collections::{BTreeMap, BTreeSet};

use automerge::{ActorId, Automerge, ChangeHash, ReadDoc, sync};
use rand::RngCore;

use crate::ids::{ConnectionId, StorageId};
use crate::persist::ConflictRecord;
use crate::storage::{StorageKey, WriteBatch};

use super::{CommandId, Reply};

/// The sync conversation about one document with one connected peer.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) state: sync::State,
    /// Shared heads moved since the state was last persisted.
    pub(crate) dirty: bool,
    /// Both sides reported the same heads; cleared when ours move.
    pub(crate) in_sync: bool,
}

impl Session {
    pub(crate) fn new(state: sync::State) -> Self {
        Self {
            state,
            dirty: false,
            in_sync: false,
        }
    }

    /// What to keep of a session while its document is out of memory: all of it while
    /// the exchange is unsettled; once settled, only what tells automerge "we agree and
    /// have said so" (heads, capabilities), not the peer's Bloom filter or the hashes
    /// sent. A fresh state instead would owe the peer a reply, the peer's fresh state
    /// would owe one back, and with both documents evicted between messages the two
    /// would answer each other forever (simulation seed 7743).
    pub(crate) fn parked(self) -> Self {
        if !self.in_sync {
            return self;
        }
        let mut state = sync::State::new();
        state.shared_heads = self.state.shared_heads;
        state.last_sent_heads = self.state.last_sent_heads;
        state.their_heads = self.state.their_heads;
        state.have_responded = self.state.have_responded;
        state.their_capabilities = self.state.their_capabilities;
        Self {
            state,
            dirty: self.dirty,
            in_sync: true,
        }
    }
}

/// A document held in memory.
#[derive(Debug)]
pub(crate) struct LoadedDoc {
    pub(crate) doc: Automerge,
    /// Heads covered by writes that completed.
    pub(crate) durable_heads: Vec<ChangeHash>,
    /// Heads covered by writes emitted (completed or not).
    pub(crate) saved_heads: Vec<ChangeHash>,
    /// Every chunk key written for this document and not yet compacted away.
    pub(crate) chunk_keys: Vec<StorageKey>,
    pub(crate) incremental_chunks: usize,
    pub(crate) chunk_bytes: u64,
    /// Persisted sync states of peers that are not connected now.
    pub(crate) stored_sync: BTreeMap<StorageId, sync::State>,
    /// Sync states of connected peers.
    pub(crate) sessions: BTreeMap<ConnectionId, Session>,
    /// Identities of logged conflicts, so each is logged once.
    pub(crate) conflict_ids: BTreeSet<String>,
    pub(crate) conflict_log: Vec<ConflictRecord>,
    pub(crate) writes_in_flight: usize,
    /// Connections owed a sync message once the current heads are durable: a message
    /// reveals our heads, and a peer may take those as proof we hold them.
    pub(crate) held: BTreeSet<ConnectionId>,
    /// A save of this document is in flight. There is at most one: a save holds only
    /// the changes since the previous one's heads, so one issued while an earlier one
    /// was in flight would land, if that one failed, as chunks that cannot load beside a
    /// record naming their heads (`Repo::save_document`).
    pub(crate) saving: bool,
    /// Chunk keys the save in flight deletes (a compaction). A tombstone applied
    /// meanwhile deletes them too: if that save fails they stay on disk, and the
    /// document they would be known again to is gone.
    pub(crate) replacing: Vec<StorageKey>,
    /// What changed while a save was in flight waits for it: sync states and conflict
    /// records to write with the next save, and the replies that wait on that save.
    pub(crate) save_waiting: Option<(WriteBatch, Vec<(CommandId, Reply)>)>,
    /// Some save of this document completed, or it was loaded from storage.
    pub(crate) stored: bool,
    /// The catalog record is owed a write on its own (new metadata, a receipt), with
    /// the replies that wait for it (`Repo::write_record`).
    pub(crate) record_owed: Option<Vec<(CommandId, Reply)>>,
    pub(crate) last_used: u64,
}

/// A fresh actor of this device. A fresh one per load: reusing one after a crash could
/// mint two different changes with the same (actor, seq), which peers reject. The
/// device's prefix (if any) names the device in every actor id.
pub(crate) fn device_actor(rng: &mut dyn RngCore, actor_prefix: Option<[u8; 8]>) -> ActorId {
    let mut actor = [0u8; 16];
    rng.fill_bytes(&mut actor);
    if let Some(prefix) = actor_prefix {
        actor[..8].copy_from_slice(&prefix);
    }
    ActorId::from(actor.as_slice())
}

impl LoadedDoc {
    pub(crate) fn new(
        mut doc: Automerge,
        rng: &mut dyn RngCore,
        now_use: u64,
        actor_prefix: Option<[u8; 8]>,
    ) -> Self {
        doc.set_actor(device_actor(rng, actor_prefix));
        Self {
            doc,
            durable_heads: Vec::new(),
            saved_heads: Vec::new(),
            chunk_keys: Vec::new(),
            incremental_chunks: 0,
            chunk_bytes: 0,
            stored_sync: BTreeMap::new(),
            sessions: BTreeMap::new(),
            conflict_ids: BTreeSet::new(),
            conflict_log: Vec::new(),
            writes_in_flight: 0,
            held: BTreeSet::new(),
            saving: false,
            replacing: Vec::new(),
            save_waiting: None,
            stored: false,
            record_owed: None,
            last_used: now_use,
        }
    }

    /// Whether nothing depends on this document staying in memory.
    ///
    /// A document holding changes that wait for their dependencies is kept: those
    /// changes live only in automerge's queue, and the peer that sent them will not send
    /// them again in this session. So is one that owes its record a write (the replies
    /// waiting on it would be lost).
    pub(crate) fn evictable(&self) -> bool {
        self.writes_in_flight == 0
            && self.record_owed.is_none()
            && self.saved_heads == self.doc.get_heads()
            && self.doc.get_missing_deps(&[]).is_empty()
    }

    /// Whether a record of this document written on its own now might name changes
    /// the store lacks: a save is in flight (the catalog's heads are that save's, and
    /// the store holds them only if it succeeds), or none ever completed (the record
    /// would outlive a crash as an empty document nobody else has). After a failed save
    /// the catalog's heads are the durable ones until the retry.
    pub(crate) fn record_must_wait(&self) -> bool {
        self.saving || !self.stored
    }

    /// Whether every change in memory is covered by a completed write.
    pub(crate) fn heads_durable(&self) -> bool {
        self.durable_heads == self.doc.get_heads()
    }

    pub(crate) fn next_conflict_seq(&self) -> u64 {
        self.conflict_log.last().map_or(0, |r| r.seq + 1)
    }
}
