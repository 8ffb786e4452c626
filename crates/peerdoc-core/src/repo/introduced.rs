//! Documents a peer introduces: bounded per peer, and gone when the peer goes.
//!
//! A `sync` for a document we have never seen creates a tentative document in memory
//! (not in the catalog, nothing on disk) until a change arrives (`repo/peers.rs`).
//! Without a bound, a peer sending `sync` for random ids grew memory without limit, and
//! the sync state of each such document was written to the store when the peer left and
//! never removed. Now:
//!
//! - one connection may have at most [`MAX_INTRODUCED_PER_CONNECTION`] tentative
//!   documents at once; one more is a protocol violation (disconnected, logged, and
//!   banned by the driver like any other). A peerdoc peer has at most
//!   `max_concurrent_syncs_per_peer` documents in flight; a plain automerge-repo client
//!   that shares a whole season at once stays far below the bound too;
//! - when the connection closes, each of its tentative documents that nothing else
//!   holds (no other peer's session, loaded or parked; no find, fetch, pull or load in
//!   progress; nothing received) is dropped with its sessions;
//! - sync states are written only for documents in the catalog.

use std::collections::BTreeSet;

use automerge::ReadDoc as _;

use crate::ids::{ConnectionId, DocumentId};

use super::Repo;

/// Tentative documents one connection may have introduced at once.
pub const MAX_INTRODUCED_PER_CONNECTION: usize = 16_384;

impl Repo {
    /// `conn` introduces `doc`, unknown here. False when that is one too many: the
    /// connection has then been closed as misbehaving.
    pub(super) fn admit_introduced(&mut self, conn: ConnectionId, doc: DocumentId) -> bool {
        let catalog = &self.catalog;
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.introduced.len() >= MAX_INTRODUCED_PER_CONNECTION && !c.introduced.contains(&doc) {
            // Those that became real documents meanwhile no longer count.
            c.introduced.retain(|d| !catalog.contains_key(d));
            if c.introduced.len() >= MAX_INTRODUCED_PER_CONNECTION {
                self.misbehaved(
                    conn,
                    format!(
                        "introduced more than {MAX_INTRODUCED_PER_CONNECTION} unknown documents \
                         with nothing in them"
                    ),
                );
                return false;
            }
        }
        c.introduced.insert(doc);
        true
    }

    /// `conn` closed: its tentative documents that nothing else holds go.
    pub(super) fn drop_introduced(&mut self, introduced: BTreeSet<DocumentId>) {
        let mut dropped = 0usize;
        for doc in introduced {
            if !self.is_empty_tentative(&doc) {
                continue;
            }
            let range = (doc, ConnectionId(0))..=(doc, ConnectionId(u64::MAX));
            let shared = self.docs.get(&doc).is_some_and(|d| !d.sessions.is_empty())
                || self.parked.range(range.clone()).next().is_some();
            if shared {
                continue;
            }
            self.docs.remove(&doc);
            let keys: Vec<_> = self.parked.range(range).map(|(k, _)| *k).collect();
            for key in keys {
                self.parked.remove(&key);
            }
            dropped += 1;
        }
        if dropped > 0 {
            tracing::debug!(
                dropped,
                "dropped documents a departed peer introduced and never sent"
            );
        }
    }

    /// Not in the catalog, nothing received, and nothing in progress for it.
    fn is_empty_tentative(&self, doc: &DocumentId) -> bool {
        !self.catalog.contains_key(doc)
            && !self.finding.contains_key(doc)
            && !self.fetching.contains_key(doc)
            && !self.loading.contains_key(doc)
            && !self.pulling(doc)
            && self.docs.get(doc).is_none_or(|d| {
                d.doc.get_heads().is_empty()
                    && d.doc.get_missing_deps(&[]).is_empty()
                    && d.writes_in_flight == 0
            })
    }
}
