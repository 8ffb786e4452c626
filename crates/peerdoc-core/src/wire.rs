//! The automerge-repo wire protocol: every message a peer sends, as CBOR.
//!
//! peerdoc speaks automerge-repo's protocol so that JS apps, samod and the stock sync
//! server can talk to it. Each message is one CBOR map with a `type` key. [`Message::encode`]
//! writes exactly the bytes automerge-repo writes for the same message (it encodes with
//! cbor-x, whose map headers, key order and number encoding we reproduce; see
//! `docs/protocol.md`), and [`Message::decode`] reads what any automerge-repo peer sends,
//! in any key order, ignoring keys it does not know.
//!
//! Decoding is the boundary with untrusted peers: it checks the size before anything
//! else, bounds nesting depth, never panics and reports every problem as a [`WireError`].
//!
//! ```
//! use peerdoc_core::wire::{Message, DEFAULT_MAX_MESSAGE_SIZE};
//! use peerdoc_core::{DocumentId, PeerId};
//!
//! let sync = Message::Sync {
//!     sender_id: PeerId::new("laptop"),
//!     target_id: PeerId::new("tablet"),
//!     document_id: DocumentId::from_bytes([7; 16]),
//!     data: vec![0x42, 0x01],
//! };
//! let bytes = sync.encode();
//! let decoded = Message::decode(&bytes, DEFAULT_MAX_MESSAGE_SIZE)?;
//! assert_eq!(decoded, sync);
//! assert_eq!(decoded.type_name(), "sync");
//! assert_eq!(decoded.target_id(), Some(&PeerId::new("tablet")));
//! # Ok::<(), peerdoc_core::wire::WireError>(())
//! ```

use std::collections::BTreeMap;

use crate::ids::{DocumentId, HeadsDigest, PeerId, StorageId};
pub use crate::persist::CloudDurability;

mod decode;
mod encode;
mod error;
mod sync_data;

#[cfg(test)]
mod tests;

pub use error::WireError;
pub use sync_data::{MAX_BLOOM_PROBES, SyncDataError, decode_sync_data};

/// The largest message [`Message::decode`] accepts unless the caller says otherwise.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;

/// The only automerge-repo protocol version there is; sent in `join` and `peer`.
pub const PROTOCOL_VERSION: &str = "1";

/// The version of peerdoc's extensions this build offers in [`PeerdocCapabilities`].
/// The version in force on a connection is the smaller of the two offers.
pub const PEERDOC_EXTENSION_VERSION: u64 = 2;

/// From this extension version on, a peer that holds documents the other lacks does
/// not send them: the other side asks for each from one of the peers that hold it, and
/// [`Message::Offer`] tells it their priorities (`repo/pull.rs`).
pub const PEERDOC_OFFERS_VERSION: u64 = 2;

/// The bytes of one entry in a [`Message::Offer`]'s `data`: a document id (16 bytes),
/// its priority (big-endian `i32`) and the digest of the sender's heads (16 bytes).
pub const OFFER_ENTRY_BYTES: usize = 36;

/// One document in a [`Message::Offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    /// The document.
    pub document_id: DocumentId,
    /// Its sync priority at the sender: higher is asked for first.
    pub priority: i32,
    /// The digest of the sender's heads: a peer that ends up with the same heads
    /// need not tell the sender about them.
    pub digest: HeadsDigest,
}

/// The deepest nesting of arrays, maps and tags the decoder walks through before it
/// gives up with [`WireError::TooDeep`]. No real message nests deeper than 4.
pub const MAX_NESTING_DEPTH: usize = 32;

/// What a peer says about itself in `join` and `peer` (upstream's `peerMetadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerMetadata {
    /// The peer's persistent storage id, if it has storage. Sync state is kept per
    /// storage id; a peer without one is not worth remembering.
    pub storage_id: Option<StorageId>,
    /// Whether the peer expects never to come back with the same storage id.
    pub is_ephemeral: bool,
    /// peerdoc's extension offer; `None` for plain automerge-repo peers.
    pub peerdoc: Option<PeerdocCapabilities>,
}

/// peerdoc's extension offer, carried inside peerMetadata as
/// `peerdoc: { version: <u64>, cloud?: true, durability?: "process" | "power" }`; absent
/// for plain automerge-repo peers.
///
/// The extension messages ([`Message::Reconcile`], [`Message::Deleted`]) may be sent only
/// after both sides offered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerdocCapabilities {
    /// The extension protocol version the peer speaks.
    pub version: u64,
    /// The peer is its team's cloud: what it confirms becomes a cloud receipt. Written
    /// only when true.
    pub cloud: bool,
    /// What a cloud's stored writes survive, kept with its receipts. Written only when
    /// known; a name this version does not know reads as `None`.
    pub durability: Option<CloudDurability>,
}

impl Default for PeerdocCapabilities {
    fn default() -> Self {
        Self {
            version: PEERDOC_EXTENSION_VERSION,
            cloud: false,
            durability: None,
        }
    }
}

/// Change hashes as automerge-repo writes heads in URLs and `remote-heads-changed`:
/// each bs58check-encoded.
pub fn encode_heads(heads: &[automerge::ChangeHash]) -> Vec<String> {
    heads
        .iter()
        .map(|h| bs58::encode(h.0).with_check().into_string())
        .collect()
}

/// The inverse of [`encode_heads`]; `None` if any entry is not a bs58check change hash.
pub fn decode_heads(heads: &[String]) -> Option<Vec<automerge::ChangeHash>> {
    heads
        .iter()
        .map(|h| {
            let bytes = bs58::decode(h).with_check(None).into_vec().ok()?;
            automerge::ChangeHash::try_from(bytes.as_slice()).ok()
        })
        .collect()
}

/// One storage id's heads in a `remote-heads-changed` message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteHeads {
    /// The document's heads as automerge-repo writes them in URLs: each change hash
    /// bs58check-encoded (not hex).
    pub heads: Vec<String>,
    /// When the heads were seen, in milliseconds since the Unix epoch (a JS
    /// `Date.now()`; cbor-x writes values above 2^32 as a float64).
    pub timestamp: u64,
    /// peerdoc's addition, when a peerdoc peer relays a cloud receipt: what the cloud's
    /// stored writes survive. automerge-repo ignores it; written only when known.
    pub durability: Option<CloudDurability>,
}

/// One automerge-repo (or peerdoc extension) protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `join`: the initiating peer's first message, offering protocol versions.
    Join {
        /// The initiating peer.
        sender_id: PeerId,
        /// The protocol versions it speaks (in practice `["1"]`).
        supported_protocol_versions: Vec<String>,
        /// What it says about itself.
        metadata: Option<PeerMetadata>,
    },
    /// `peer`: the receiving peer's answer to `join`, choosing a protocol version.
    Peer {
        /// The receiving peer.
        sender_id: PeerId,
        /// The initiating peer.
        target_id: PeerId,
        /// The version chosen (in practice `"1"`).
        selected_protocol_version: String,
        /// What the receiving peer says about itself.
        metadata: Option<PeerMetadata>,
    },
    /// `leave`: an advisory goodbye before disconnecting.
    Leave {
        /// The departing peer.
        sender_id: PeerId,
    },
    /// `request`: a sync message from a peer that does not have the document and would
    /// like `doc-unavailable` back if the target does not have it either.
    Request {
        /// The requesting peer.
        sender_id: PeerId,
        /// The peer asked.
        target_id: PeerId,
        /// The document wanted.
        document_id: DocumentId,
        /// An automerge sync message.
        data: Vec<u8>,
    },
    /// `sync`: an automerge sync message for one document.
    Sync {
        /// The sending peer.
        sender_id: PeerId,
        /// The receiving peer.
        target_id: PeerId,
        /// The document synced.
        document_id: DocumentId,
        /// An automerge sync message.
        data: Vec<u8>,
    },
    /// `doc-unavailable`: the sender does not have the document, nor do its peers.
    DocUnavailable {
        /// The peer without the document.
        sender_id: PeerId,
        /// The peer that asked.
        target_id: PeerId,
        /// The document.
        document_id: DocumentId,
    },
    /// `ephemeral`: application data about a document that is never stored (presence,
    /// cursors). `(sender_id, session_id, count)` identifies it for de-duplication.
    Ephemeral {
        /// The peer that created the message.
        sender_id: PeerId,
        /// The receiving peer.
        target_id: PeerId,
        /// A per-session sequence number that increases with every message.
        count: u64,
        /// A random id of the sender's session.
        session_id: String,
        /// The document the data is about.
        document_id: DocumentId,
        /// Opaque application data (in practice CBOR).
        data: Vec<u8>,
    },
    /// `remote-subscription-change`: change which storage ids' heads the sender wants
    /// the target to report to it.
    RemoteSubscriptionChange {
        /// The subscribing peer.
        sender_id: PeerId,
        /// The peer asked to watch.
        target_id: PeerId,
        /// Storage ids to start watching.
        add: Vec<StorageId>,
        /// Storage ids to stop watching.
        remove: Vec<StorageId>,
    },
    /// `remote-heads-changed`: the heads of a document at other storage ids changed.
    RemoteHeadsChanged {
        /// The reporting peer.
        sender_id: PeerId,
        /// The subscribed peer.
        target_id: PeerId,
        /// The document.
        document_id: DocumentId,
        /// The new heads per storage id.
        new_heads: BTreeMap<StorageId, RemoteHeads>,
    },
    /// `error`: a protocol error; the sender closes the connection after it.
    Error {
        /// What went wrong, for humans.
        message: String,
        /// The peer reporting the error; automerge-repo's websocket server sends it,
        /// the protocol README leaves it out.
        sender_id: Option<PeerId>,
        /// The peer the error is for; present exactly when `sender_id` is upstream.
        target_id: Option<PeerId>,
    },
    /// `peerdoc/reconcile` (extension): one round of whole-repo reconciliation.
    Reconcile {
        /// The sending peer.
        sender_id: PeerId,
        /// The receiving peer.
        target_id: PeerId,
        /// Opaque bytes owned by the reconciliation module.
        data: Vec<u8>,
    },
    /// `peerdoc/offer` (extension, version 2): documents the sender holds and the
    /// receiver lacks, with their priorities (sent for those whose priority is not the
    /// default; the receiver asks for each document it lacks from one of the peers that
    /// hold it, highest priority first).
    Offer {
        /// The sending peer.
        sender_id: PeerId,
        /// The receiving peer.
        target_id: PeerId,
        /// The documents (on the wire: `data`, concatenated [`OFFER_ENTRY_BYTES`]-byte
        /// entries).
        documents: Vec<Offered>,
    },
    /// `peerdoc/deleted` (extension): a tombstone; the document was deleted.
    Deleted {
        /// The sending peer.
        sender_id: PeerId,
        /// The receiving peer.
        target_id: PeerId,
        /// The deleted document.
        document_id: DocumentId,
    },
}

/// The `type` strings, shared by the encoder, the decoder and [`Message::type_name`].
pub(crate) mod type_names {
    pub(crate) const JOIN: &str = "join";
    pub(crate) const PEER: &str = "peer";
    pub(crate) const LEAVE: &str = "leave";
    pub(crate) const REQUEST: &str = "request";
    pub(crate) const SYNC: &str = "sync";
    pub(crate) const DOC_UNAVAILABLE: &str = "doc-unavailable";
    pub(crate) const EPHEMERAL: &str = "ephemeral";
    pub(crate) const REMOTE_SUBSCRIPTION_CHANGE: &str = "remote-subscription-change";
    pub(crate) const REMOTE_HEADS_CHANGED: &str = "remote-heads-changed";
    pub(crate) const ERROR: &str = "error";
    pub(crate) const RECONCILE: &str = "peerdoc/reconcile";
    pub(crate) const DELETED: &str = "peerdoc/deleted";
    pub(crate) const OFFER: &str = "peerdoc/offer";
}

impl Message {
    /// The message as automerge-repo would encode it, byte for byte.
    pub fn encode(&self) -> Vec<u8> {
        encode::encode_message(self)
    }

    /// Reads one message from exactly `bytes`, refusing input longer than `max_size`
    /// before looking at it.
    pub fn decode(bytes: &[u8], max_size: usize) -> Result<Message, WireError> {
        decode::decode_message(bytes, max_size)
    }

    /// The CBOR `type` string of this message.
    pub fn type_name(&self) -> &'static str {
        use type_names::*;
        match self {
            Message::Join { .. } => JOIN,
            Message::Peer { .. } => PEER,
            Message::Leave { .. } => LEAVE,
            Message::Request { .. } => REQUEST,
            Message::Sync { .. } => SYNC,
            Message::DocUnavailable { .. } => DOC_UNAVAILABLE,
            Message::Ephemeral { .. } => EPHEMERAL,
            Message::RemoteSubscriptionChange { .. } => REMOTE_SUBSCRIPTION_CHANGE,
            Message::RemoteHeadsChanged { .. } => REMOTE_HEADS_CHANGED,
            Message::Error { .. } => ERROR,
            Message::Reconcile { .. } => RECONCILE,
            Message::Deleted { .. } => DELETED,
            Message::Offer { .. } => OFFER,
        }
    }

    /// Who sent the message, if it says.
    pub fn sender_id(&self) -> Option<&PeerId> {
        match self {
            Message::Join { sender_id, .. }
            | Message::Peer { sender_id, .. }
            | Message::Leave { sender_id }
            | Message::Request { sender_id, .. }
            | Message::Sync { sender_id, .. }
            | Message::DocUnavailable { sender_id, .. }
            | Message::Ephemeral { sender_id, .. }
            | Message::RemoteSubscriptionChange { sender_id, .. }
            | Message::RemoteHeadsChanged { sender_id, .. }
            | Message::Reconcile { sender_id, .. }
            | Message::Offer { sender_id, .. }
            | Message::Deleted { sender_id, .. } => Some(sender_id),
            Message::Error { sender_id, .. } => sender_id.as_ref(),
        }
    }

    /// Whom the message is for, if it says (`join` and `leave` are for whoever listens).
    pub fn target_id(&self) -> Option<&PeerId> {
        match self {
            Message::Join { .. } | Message::Leave { .. } => None,
            Message::Peer { target_id, .. }
            | Message::Request { target_id, .. }
            | Message::Sync { target_id, .. }
            | Message::DocUnavailable { target_id, .. }
            | Message::Ephemeral { target_id, .. }
            | Message::RemoteSubscriptionChange { target_id, .. }
            | Message::RemoteHeadsChanged { target_id, .. }
            | Message::Reconcile { target_id, .. }
            | Message::Offer { target_id, .. }
            | Message::Deleted { target_id, .. } => Some(target_id),
            Message::Error { target_id, .. } => target_id.as_ref(),
        }
    }

    /// The document the message is about, if it is about one.
    pub fn document_id(&self) -> Option<&DocumentId> {
        match self {
            Message::Request { document_id, .. }
            | Message::Sync { document_id, .. }
            | Message::DocUnavailable { document_id, .. }
            | Message::Ephemeral { document_id, .. }
            | Message::RemoteHeadsChanged { document_id, .. }
            | Message::Deleted { document_id, .. } => Some(document_id),
            Message::Join { .. }
            | Message::Peer { .. }
            | Message::Leave { .. }
            | Message::RemoteSubscriptionChange { .. }
            | Message::Error { .. }
            | Message::Offer { .. }
            | Message::Reconcile { .. } => None,
        }
    }
}
