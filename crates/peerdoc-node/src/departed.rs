//! Peers that left: when they were last connected, over which address, and which
//! document heads they were known to have then, so that a device that is gone for an
//! hour is still listed with what it misses.
//!
//! When a peer's sync connection closes, the driver records, for every document, the
//! heads the engine knew the peer to have (our heads when the session saw both sides
//! equal or reconciliation found them equal; else the heads the peer last reported).
//! A document the peer is not known to have is not recorded. Judged later against our
//! current heads, a departed peer misses a document when one of our heads is not among
//! its recorded ones: changes made since it left, documents created since, and whatever
//! it lacked when it left. This is what *this device* knows; the peer may have caught
//! up elsewhere (from another device or the cloud) without us hearing of it.
//!
//! The record is dropped when the peer connects again. Records are kept for at most
//! [`MAX_DEPARTED`] peers (the longest gone is forgotten first) and saved to
//! `departed.json` in the data directory, so that a restart of this device does not
//! forget who was missing what. The file holds no secrets: peer ids, an address and
//! change hashes. A damaged file is logged and ignored: it is a view, not data.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use automerge::ChangeHash;
use peerdoc_core::ConnectionId;
use peerdoc_core::DocumentId;
use peerdoc_core::persist::DocumentMeta;
use peerdoc_core::repo::{PeerDocSync, Repo};
use peerdoc_net::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

use crate::types::PeerDocStatus;

/// Departed peers remembered at most; beyond it the one gone longest is forgotten.
pub const MAX_DEPARTED: usize = 64;

/// The file, in the data directory.
pub(crate) const DEPARTED_FILE: &str = "departed.json";

/// A peer whose sync connection closed, as this device last knew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepartedPeer {
    /// Its libp2p id.
    pub peer: PeerId,
    /// When its connection closed.
    pub last_seen: SystemTime,
    /// The address its last connection used, if known.
    pub addr: Option<Multiaddr>,
    /// The heads of each document it was known to have when it left.
    pub(crate) known: BTreeMap<DocumentId, Vec<ChangeHash>>,
}

impl DepartedPeer {
    /// What the engine knew `conn`'s peer to have, taken as its connection closes.
    pub(crate) fn record<'a>(
        peer: PeerId,
        addr: Option<Multiaddr>,
        now: SystemTime,
        docs: impl Iterator<Item = (&'a DocumentId, &'a DocumentMeta, Option<PeerDocSync>)>,
    ) -> Self {
        let mut known = BTreeMap::new();
        for (id, meta, sync) in docs {
            if meta.deleted {
                continue;
            }
            let Some(sync) = sync else { continue };
            let heads = if sync.in_sync
                || (sync.their_heads.is_none() && sync.reconciled && !sync.pending)
            {
                parse_heads(&meta.heads)
            } else if let Some(theirs) = sync.their_heads {
                theirs
            } else {
                continue;
            };
            known.insert(*id, heads);
        }
        Self {
            peer,
            last_seen: now,
            addr,
            known,
        }
    }

    /// What the peer misses of a document whose heads here are `ours` (hex).
    pub(crate) fn judge(&self, doc: &DocumentId, ours: &[String]) -> PeerDocStatus {
        let theirs: Option<Vec<String>> = self
            .known
            .get(doc)
            .map(|heads| heads.iter().map(ToString::to_string).collect());
        let missing = match &theirs {
            Some(theirs) => ours.iter().filter(|h| !theirs.contains(h)).count(),
            None => ours.len().max(1),
        };
        PeerDocStatus {
            peer: self.peer,
            in_sync: missing == 0,
            missing,
            their_heads: theirs,
            pending: false,
            connected: false,
        }
    }
}

fn parse_heads(hex: &[String]) -> Vec<ChangeHash> {
    hex.iter().filter_map(|h| h.parse().ok()).collect()
}

/// Every departed peer this device remembers.
#[derive(Debug, Default)]
pub(crate) struct Departures {
    peers: HashMap<PeerId, DepartedPeer>,
    /// Where they are saved; `None` keeps them in memory only.
    file: Option<PathBuf>,
}

impl Departures {
    /// Loads the records saved in `data_dir`, if any.
    pub(crate) fn load(data_dir: Option<&Path>) -> Self {
        let file = data_dir.map(|d| d.join(DEPARTED_FILE));
        let peers = file
            .as_deref()
            .and_then(|path| match std::fs::read(path) {
                Ok(bytes) => match serde_json::from_slice::<Vec<Saved>>(&bytes) {
                    Ok(saved) => Some(saved),
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "departed peers not read; starting without them");
                        None
                    }
                },
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "departed peers not read; starting without them");
                    None
                }
            })
            .unwrap_or_default()
            .into_iter()
            .filter_map(Saved::into_departed)
            .map(|d| (d.peer, d))
            .collect();
        Self { peers, file }
    }

    /// Remembers what `peer`, whose engine connection `conn` is about to close, was
    /// known to have. Only a peerdoc device that finished the handshake is recorded: a
    /// bare libp2p peer (or a misbehaving one, banned before it said who it is) leaves
    /// nothing to list. Returns whether it was recorded.
    pub(crate) fn record(
        &mut self,
        repo: &Repo,
        peer: PeerId,
        conn: ConnectionId,
        addr: Multiaddr,
        now: SystemTime,
    ) -> bool {
        let peerdoc = repo
            .connections()
            .iter()
            .any(|c| c.conn == conn && c.peerdoc);
        if !repo.is_ready() || !peerdoc {
            return false;
        }
        let departed = DepartedPeer::record(
            peer,
            Some(addr),
            now,
            repo.catalog().iter().map(|(id, meta)| {
                let sync = repo.peer_doc_sync(id).into_iter().find(|s| s.conn == conn);
                (id, meta, sync)
            }),
        );
        tracing::debug!(%peer, known = departed.known.len(), "peer departed");
        self.insert(departed);
        true
    }

    /// When and how each departed peer was last connected, for status.
    pub(crate) fn summaries(&self) -> Vec<(PeerId, crate::Departure)> {
        self.peers
            .values()
            .map(|d| {
                let departure = crate::Departure {
                    last_seen: d.last_seen,
                    addr: d.addr.clone(),
                };
                (d.peer, departure)
            })
            .collect()
    }

    /// Remembers `departed`, forgetting the peer gone longest when full.
    pub(crate) fn insert(&mut self, departed: DepartedPeer) {
        if self.peers.len() >= MAX_DEPARTED
            && !self.peers.contains_key(&departed.peer)
            && let Some(oldest) = self
                .peers
                .values()
                .min_by_key(|d| d.last_seen)
                .map(|d| d.peer)
        {
            self.peers.remove(&oldest);
        }
        self.peers.insert(departed.peer, departed);
    }

    /// Forgets `peer` (it is back, or was banned). True if it was remembered.
    pub(crate) fn forget(&mut self, peer: &PeerId) -> bool {
        self.peers.remove(peer).is_some()
    }

    /// Every remembered departed peer.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &DepartedPeer> {
        self.peers.values()
    }

    /// The encoded file contents and where they go, for a writer off the driver.
    pub(crate) fn encoded(&self) -> Option<(PathBuf, Vec<u8>)> {
        let file = self.file.clone()?;
        let mut saved: Vec<Saved> = self.peers.values().map(Saved::from).collect();
        saved.sort_by(|a, b| a.peer.cmp(&b.peer));
        match serde_json::to_vec(&saved) {
            Ok(bytes) => Some((file, bytes)),
            Err(error) => {
                tracing::warn!(%error, "departed peers not encoded");
                None
            }
        }
    }
}

/// Writes `bytes` to `path` atomically (a temporary file renamed over it).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Writes the newest departed records whenever they change, one write at a time, off
/// the driver (a failure is logged: the records are a view, not data).
pub(crate) async fn writer(
    mut saves: tokio::sync::watch::Receiver<Option<(std::path::PathBuf, Vec<u8>)>>,
) {
    while saves.changed().await.is_ok() {
        let Some((path, bytes)) = saves.borrow_and_update().clone() else {
            continue;
        };
        let written = tokio::task::spawn_blocking(move || write_file(&path, &bytes)).await;
        if let Ok(Err(error)) = written {
            tracing::warn!(%error, "departed peers not saved");
        }
    }
}

/// The saved form of a [`DepartedPeer`].
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    peer: String,
    last_seen_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    addr: Option<String>,
    /// Document id → heads (hex).
    known: BTreeMap<String, Vec<String>>,
}

impl From<&DepartedPeer> for Saved {
    fn from(d: &DepartedPeer) -> Self {
        Self {
            peer: d.peer.to_string(),
            last_seen_ms: d
                .last_seen
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            addr: d.addr.as_ref().map(ToString::to_string),
            known: d
                .known
                .iter()
                .map(|(id, heads)| {
                    (
                        id.to_string(),
                        heads.iter().map(ToString::to_string).collect(),
                    )
                })
                .collect(),
        }
    }
}

impl Saved {
    fn into_departed(self) -> Option<DepartedPeer> {
        Some(DepartedPeer {
            peer: self.peer.parse().ok()?,
            last_seen: SystemTime::UNIX_EPOCH + Duration::from_millis(self.last_seen_ms),
            addr: self.addr.and_then(|a| a.parse().ok()),
            known: self
                .known
                .into_iter()
                .filter_map(|(id, heads)| Some((id.parse().ok()?, parse_heads(&heads))))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(heads: &[ChangeHash]) -> DocumentMeta {
        let mut meta = DocumentMeta::new(0, 0);
        meta.heads = heads.iter().map(ToString::to_string).collect();
        meta
    }

    fn sync(their: Option<Vec<ChangeHash>>, in_sync: bool) -> PeerDocSync {
        PeerDocSync {
            conn: peerdoc_core::ConnectionId(1),
            their_heads: their,
            in_sync,
            pending: false,
            reconciled: false,
        }
    }

    fn hash(n: u8) -> ChangeHash {
        ChangeHash([n; 32])
    }

    fn doc(n: u8) -> DocumentId {
        DocumentId::from_bytes([n; 16])
    }

    #[test]
    fn a_departed_peer_misses_what_changed_since_and_what_it_never_had() {
        let peer = PeerId::random();
        let (a, b, c) = (doc(1), doc(2), doc(3));
        let metas = [
            (a, meta(&[hash(1)])),
            (b, meta(&[hash(2)])),
            (c, meta(&[hash(3)])),
        ];
        let syncs = [
            Some(sync(Some(vec![hash(1)]), true)),
            Some(sync(Some(vec![hash(9)]), false)),
            None,
        ];
        let departed = DepartedPeer::record(
            peer,
            None,
            SystemTime::UNIX_EPOCH,
            metas.iter().zip(syncs).map(|((id, m), s)| (id, m, s)),
        );
        // In sync when it left, nothing changed since: nothing missing.
        assert!(departed.judge(&a, &[hash(1).to_string()]).in_sync);
        // Changed here since it left: missing.
        let moved = departed.judge(&a, &[hash(4).to_string()]);
        assert_eq!((moved.in_sync, moved.missing), (false, 1));
        // It had other heads when it left: it misses ours.
        assert!(!departed.judge(&b, &[hash(2).to_string()]).in_sync);
        // Never known to have it, or created since: missing.
        assert!(!departed.judge(&c, &[hash(3).to_string()]).in_sync);
        assert!(!departed.judge(&doc(4), &[]).in_sync);
    }

    #[test]
    fn records_survive_a_restart_and_the_longest_gone_is_forgotten_first() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut departures = Departures::load(Some(dir.path()));
        let peers: Vec<PeerId> = (0..=MAX_DEPARTED).map(|_| PeerId::random()).collect();
        for (i, peer) in peers.iter().enumerate() {
            let mut known = BTreeMap::new();
            known.insert(doc(1), vec![hash(1)]);
            departures.insert(DepartedPeer {
                peer: *peer,
                last_seen: SystemTime::UNIX_EPOCH + Duration::from_secs(i as u64 + 1),
                addr: Some("/ip4/127.0.0.1/tcp/7410".parse().expect("address")),
                known,
            });
        }
        assert_eq!(departures.iter().count(), MAX_DEPARTED);
        assert!(departures.iter().all(|d| d.peer != peers[0]));
        let (path, bytes) = departures.encoded().expect("a file to write");
        write_file(&path, &bytes).expect("written");
        let reloaded = Departures::load(Some(dir.path()));
        let last = reloaded
            .iter()
            .find(|d| d.peer == peers[MAX_DEPARTED])
            .expect("the newest is kept");
        assert_eq!(
            last.last_seen,
            SystemTime::UNIX_EPOCH + Duration::from_secs(65)
        );
        assert!(last.judge(&doc(1), &[hash(1).to_string()]).in_sync);
        assert_eq!(reloaded.iter().count(), MAX_DEPARTED);

        // A damaged file is ignored, not fatal.
        std::fs::write(&path, b"{not json").expect("written");
        assert_eq!(Departures::load(Some(dir.path())).iter().count(), 0);
    }
}
