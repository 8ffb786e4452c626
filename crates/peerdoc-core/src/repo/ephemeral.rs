//! Ephemeral messages (automerge-repo's `handle.broadcast`: presence, cursors): relayed
//! to the other peers that share the document, never stored.
//!
//! What the stock sync server does, and so what a JS app expects: a message about a
//! document goes to every other peer syncing that document. Here:
//!
//! - **Who hears it.** Plain automerge-repo peers that hold a sync session for the
//!   document (they opened or asked for it; others would start requesting a document they
//!   never wanted), never the peer it came from nor its author; and, for a message from a
//!   plain peer or from this device, every peerdoc peer, so that presence reaches apps on
//!   the other venue devices.
//! - **Hop bound.** A message that arrived from a peerdoc peer is relayed to plain peers
//!   only: it crosses at most one daemon-to-daemon link ([`MAX_DAEMON_HOPS`]). On a
//!   venue LAN every device connects to every other, so one hop reaches all of them.
//! - **Loops and duplicates.** A message keeps its author's `senderId`, `sessionId` and
//!   `count` when relayed (as automerge-repo's network subsystem does), and a message
//!   whose count is not above the last one seen from that (sender, session) is dropped.
//!   This matters: a stock JS client echoes every relayed message back to the daemon
//!   (it forwards to all of its peers but the author). At most
//!   [`MAX_EPHEMERAL_SOURCES`] sessions are remembered; the least recently heard goes.
//! - **Bounds.** Data over [`MAX_EPHEMERAL_DATA_BYTES`] or a session id over
//!   [`MAX_EPHEMERAL_SESSION_ID_BYTES`] is dropped; each connection may send
//!   [`EPHEMERAL_RATE_PER_SECOND`] messages a second (bursts of [`EPHEMERAL_BURST`]),
//!   and what it sends beyond is dropped. Dropping is not misbehaviour: presence is
//!   lossy by design, and a flood costs the flooder its messages, nobody a disconnect.
//! - **Access.** A read-only connection (a team viewer) hears presence but is not
//!   heard: its ephemeral messages are dropped, since relaying them would let it write
//!   to every editor's app. A protected-only connection hears and is heard only about
//!   protected documents. Messages about documents we do not hold (or deleted ones) are
//!   dropped.

use std::collections::BTreeMap;

use rand::RngCore;

use crate::ids::{ConnectionId, DocumentId, PeerId};
use crate::wire::Message;

use super::{Event, Repo};

/// Largest ephemeral payload relayed (presence and cursors are tens of bytes).
pub const MAX_EPHEMERAL_DATA_BYTES: usize = 64 * 1024;
/// Longest `sessionId` accepted (automerge-repo's are 11 characters).
pub const MAX_EPHEMERAL_SESSION_ID_BYTES: usize = 128;
/// Ephemeral messages one connection may send per second, sustained.
pub const EPHEMERAL_RATE_PER_SECOND: u64 = 200;
/// Ephemeral messages one connection may send in a burst.
pub const EPHEMERAL_BURST: u64 = 400;
/// (sender, session) pairs whose last count is remembered for de-duplication.
pub const MAX_EPHEMERAL_SOURCES: usize = 4_096;
/// Daemon-to-daemon links an ephemeral message may cross.
pub const MAX_DAEMON_HOPS: usize = 1;

/// A token bucket, in thousandths of a message, refilled from the engine's clock.
#[derive(Debug, Clone)]
pub(crate) struct EphemeralBudget {
    milli_tokens: u64,
    refilled_ms: Option<u64>,
}

impl Default for EphemeralBudget {
    fn default() -> Self {
        Self {
            milli_tokens: EPHEMERAL_BURST * 1000,
            refilled_ms: None,
        }
    }
}

impl EphemeralBudget {
    /// Takes one message from the budget; `false` when it is spent.
    pub(crate) fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = self.refilled_ms.map_or(0, |t| now_ms.saturating_sub(t));
        self.refilled_ms = Some(now_ms);
        // RATE per second is RATE thousandths per millisecond.
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(EPHEMERAL_RATE_PER_SECOND))
            .min(EPHEMERAL_BURST * 1000);
        if self.milli_tokens < 1000 {
            return false;
        }
        self.milli_tokens -= 1000;
        true
    }
}

/// The last count heard from each (sender, session), least recently heard first out.
#[derive(Debug, Default)]
pub(super) struct EphemeralSeen {
    last: BTreeMap<(PeerId, String), (u64, u64)>,
    by_age: BTreeMap<u64, (PeerId, String)>,
    stamp: u64,
}

impl EphemeralSeen {
    /// Records `count` from (sender, session); says whether it is new (above the last).
    pub(super) fn is_new(&mut self, sender: &PeerId, session: &str, count: u64) -> bool {
        let key = (sender.clone(), session.to_owned());
        self.stamp += 1;
        let stamp = self.stamp;
        if let Some((last, seen)) = self.last.get_mut(&key) {
            if count <= *last {
                return false;
            }
            self.by_age.remove(seen);
            *last = count;
            *seen = stamp;
            self.by_age.insert(stamp, key);
            return true;
        }
        if self.last.len() >= MAX_EPHEMERAL_SOURCES
            && let Some((_, oldest)) = self.by_age.pop_first()
        {
            self.last.remove(&oldest);
        }
        self.last.insert(key.clone(), (count, stamp));
        self.by_age.insert(stamp, key);
        true
    }

    pub(super) fn len(&self) -> usize {
        self.last.len()
    }
}

/// One ephemeral message, as relayed.
struct Ephemeral {
    sender_id: PeerId,
    session_id: String,
    count: u64,
    doc: DocumentId,
    data: Vec<u8>,
}

impl Repo {
    /// An ephemeral message from `conn` (its author may be another peer, relayed).
    pub(super) fn ephemeral_received(
        &mut self,
        conn: ConnectionId,
        sender_id: PeerId,
        session_id: String,
        count: u64,
        doc: DocumentId,
        data: Vec<u8>,
    ) {
        let now = self.now_ms;
        let protected = self.protected.contains(&doc);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let why_dropped = if c.read_only && !protected {
            Some("from a read-only peer")
        } else if c.protected_only && !protected {
            Some("about an unprotected document, from a protected-only peer")
        } else if data.len() > MAX_EPHEMERAL_DATA_BYTES
            || session_id.len() > MAX_EPHEMERAL_SESSION_ID_BYTES
        {
            Some("too large")
        } else {
            None
        };
        if let Some(why) = why_dropped {
            tracing::debug!(%conn, %doc, why, "ephemeral message dropped");
            return;
        }
        // Our own echoed back, or a copy that came another way: already handled. Checked
        // before the rate limit, so that echoes do not spend a client's own budget.
        if sender_id == self.config.peer_id
            || !self.ephemeral_seen.is_new(&sender_id, &session_id, count)
        {
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let why_dropped = if !c.ephemeral_budget.take(now) {
            Some("over the rate limit")
        } else if !self.holds(&doc) {
            Some("about a document not held here")
        } else {
            None
        };
        if let Some(why) = why_dropped {
            tracing::debug!(%conn, %doc, why, "ephemeral message dropped");
            return;
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let from_peerdoc = c.is_peerdoc();
        self.event(Event::Ephemeral {
            doc,
            from: sender_id.clone(),
            data: data.clone(),
        });
        let message = Ephemeral {
            sender_id,
            session_id,
            count,
            doc,
            data,
        };
        self.relay_ephemeral(&message, Some(conn), !from_peerdoc);
    }

    /// `Command::Broadcast`: an ephemeral message from this device.
    pub(super) fn broadcast_ephemeral(
        &mut self,
        rng: &mut dyn RngCore,
        doc: DocumentId,
        data: Vec<u8>,
    ) {
        let session_id = self
            .ephemeral_session
            .get_or_insert_with(|| {
                // A fresh session per engine: receivers drop counts they have seen from
                // a session, and ours restarts at 1 after a restart.
                let mut bytes = [0u8; 8];
                rng.fill_bytes(&mut bytes);
                hex_string(&bytes)
            })
            .clone();
        self.ephemeral_count += 1;
        let message = Ephemeral {
            sender_id: self.config.peer_id.clone(),
            session_id,
            count: self.ephemeral_count,
            doc,
            data,
        };
        self.relay_ephemeral(&message, None, true);
    }

    /// Whether `doc` is here and alive (held in the catalog, or arriving).
    fn holds(&self, doc: &DocumentId) -> bool {
        match self.catalog.get(doc) {
            Some(meta) => !meta.deleted,
            None => self.docs.contains_key(doc),
        }
    }

    /// Sends `message` to every peer that should hear it but `origin`.
    fn relay_ephemeral(
        &mut self,
        message: &Ephemeral,
        origin: Option<ConnectionId>,
        to_peerdoc_peers: bool,
    ) {
        let doc = message.doc;
        let loaded = self.docs.get(&doc);
        let targets: Vec<(ConnectionId, PeerId)> = self
            .conns
            .iter()
            .filter(|(id, _)| Some(**id) != origin)
            .filter_map(|(id, c)| {
                let peer = c.peer.as_ref()?;
                if peer.peer_id == message.sender_id {
                    return None;
                }
                let hears = if peer.peerdoc {
                    to_peerdoc_peers
                } else {
                    loaded.is_some_and(|d| d.sessions.contains_key(id))
                        || self.parked.contains_key(&(doc, *id))
                };
                hears.then(|| (*id, peer.peer_id.clone()))
            })
            .collect();
        for (conn, target) in targets {
            let relayed = Message::Ephemeral {
                sender_id: message.sender_id.clone(),
                target_id: target,
                count: message.count,
                session_id: message.session_id.clone(),
                document_id: doc,
                data: message.data.clone(),
            };
            // `send` keeps unprotected documents from protected-only peers.
            self.send(conn, relayed);
        }
    }

    /// (sender, session) pairs remembered for de-duplication (for tests).
    pub fn ephemeral_sources(&self) -> usize {
        self.ephemeral_seen.len()
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
