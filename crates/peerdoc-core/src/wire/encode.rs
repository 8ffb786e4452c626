//! Writes messages exactly as automerge-repo's cbor-x encoder does.
//!
//! automerge-repo encodes with `new Encoder({ tagUint8Array: false, useRecords: false })`.
//! With those options cbor-x differs from RFC 8949's preferred serialisation in ways a
//! generic CBOR library would not reproduce, hence this small writer of our own:
//!
//! - every map header is a 16-bit count (`0xb9 nn nn`), even for two entries; maps of
//!   65,536 entries or more get a 32-bit count (`0xba`);
//! - keys come in the order the JS code inserted them (we follow each construction site);
//! - a number that is an integer in `0..2^32` is the shortest unsigned integer, but a
//!   larger one (a `Date.now()` timestamp) is a float64 (`0xfb`);
//! - a JS `undefined` property is written as the key plus CBOR `undefined` (`0xf7`);
//! - `Uint8Array` is a plain byte string (no tag 64); strings and arrays have the
//!   shortest length header.

use super::{Message, PeerMetadata, RemoteHeads};
use crate::ids::{DocumentId, PeerId, StorageId};

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER + 1`).
const JS_EXACT_INTEGER_LIMIT: u64 = 1 << 53;

pub(super) fn encode_message(message: &Message) -> Vec<u8> {
    let mut w = CborWriter::default();
    let ty = message.type_name();
    match message {
        // WebSocketClientAdapter.ts joinMessage()
        Message::Join {
            sender_id,
            supported_protocol_versions,
            metadata,
        } => {
            w.map_header(4);
            w.entry_text("type", ty);
            w.entry_text("senderId", sender_id.as_str());
            w.text("peerMetadata");
            w.metadata(metadata.as_ref());
            w.text("supportedProtocolVersions");
            w.text_array(supported_protocol_versions.iter().map(String::as_str));
        }
        // WebSocketServerAdapter.ts, the answer to a join
        Message::Peer {
            sender_id,
            target_id,
            selected_protocol_version,
            metadata,
        } => {
            w.map_header(5);
            w.entry_text("type", ty);
            w.entry_text("senderId", sender_id.as_str());
            w.text("peerMetadata");
            w.metadata(metadata.as_ref());
            w.entry_text("selectedProtocolVersion", selected_protocol_version);
            w.entry_text("targetId", target_id.as_str());
        }
        // automerge-repo-network-messagechannel disconnect()
        Message::Leave { sender_id } => {
            w.map_header(2);
            w.entry_text("type", ty);
            w.entry_text("senderId", sender_id.as_str());
        }
        // The per-document messages are built by DocSynchronizer.ts without a sender;
        // NetworkSubsystem.ts send() appends `senderId` (and for ephemeral messages
        // `count` and `sessionId` before it).
        Message::Request {
            sender_id,
            target_id,
            document_id,
            data,
        } => {
            w.map_header(5);
            w.entry_text("type", ty);
            w.entry_text("targetId", target_id.as_str());
            w.entry_document_id(document_id);
            w.entry_bytes("data", data);
            w.entry_text("senderId", sender_id.as_str());
        }
        Message::Sync {
            sender_id,
            target_id,
            document_id,
            data,
        } => {
            w.map_header(5);
            w.entry_text("type", ty);
            w.entry_text("targetId", target_id.as_str());
            w.entry_bytes("data", data);
            w.entry_document_id(document_id);
            w.entry_text("senderId", sender_id.as_str());
        }
        Message::DocUnavailable {
            sender_id,
            target_id,
            document_id,
        } => {
            w.map_header(4);
            w.entry_text("type", ty);
            w.entry_document_id(document_id);
            w.entry_text("targetId", target_id.as_str());
            w.entry_text("senderId", sender_id.as_str());
        }
        Message::Ephemeral {
            sender_id,
            target_id,
            count,
            session_id,
            document_id,
            data,
        } => {
            w.map_header(7);
            w.entry_text("type", ty);
            w.entry_text("targetId", target_id.as_str());
            w.entry_document_id(document_id);
            w.entry_bytes("data", data);
            w.text("count");
            w.number(*count);
            w.entry_text("sessionId", session_id);
            w.entry_text("senderId", sender_id.as_str());
        }
        // Repo.ts "change-remote-subs" handler. Upstream sometimes leaves one list
        // `undefined`; we always write both lists, as its handleControlMessage path does.
        Message::RemoteSubscriptionChange {
            sender_id,
            target_id,
            add,
            remove,
        } => {
            w.map_header(5);
            w.entry_text("type", ty);
            w.entry_text("targetId", target_id.as_str());
            w.text("add");
            w.text_array(add.iter().map(StorageId::as_str));
            w.text("remove");
            w.text_array(remove.iter().map(StorageId::as_str));
            w.entry_text("senderId", sender_id.as_str());
        }
        // Repo.ts "notify-remote-heads" handler
        Message::RemoteHeadsChanged {
            sender_id,
            target_id,
            document_id,
            new_heads,
        } => {
            w.map_header(5);
            w.entry_text("type", ty);
            w.entry_text("targetId", target_id.as_str());
            w.entry_document_id(document_id);
            w.text("newHeads");
            w.map_header(new_heads.len());
            for (storage_id, remote) in new_heads {
                w.text(storage_id.as_str());
                w.remote_heads(remote);
            }
            w.entry_text("senderId", sender_id.as_str());
        }
        // WebSocketServerAdapter.ts sends {type, senderId, message, targetId}; the README
        // shape is {type, message}. Absent ids are left out.
        Message::Error {
            message,
            sender_id,
            target_id,
        } => {
            let len = 2 + usize::from(sender_id.is_some()) + usize::from(target_id.is_some());
            w.map_header(len);
            w.entry_text("type", ty);
            w.optional_peer("senderId", sender_id.as_ref());
            w.entry_text("message", message);
            w.optional_peer("targetId", target_id.as_ref());
        }
        // peerdoc's extensions follow the per-document messages' shape.
        Message::Reconcile {
            sender_id,
            target_id,
            data,
        } => {
            w.map_header(4);
            w.entry_text("type", ty);
            w.entry_text("targetId", target_id.as_str());
            w.entry_bytes("data", data);
            w.entry_text("senderId", sender_id.as_str());
        }
        Message::Offer {
            sender_id,
            target_id,
            documents,
        } => {
            let mut data = Vec::with_capacity(documents.len() * super::OFFER_ENTRY_BYTES);
            for offered in documents {
                data.extend_from_slice(offered.document_id.as_bytes());
                data.extend_from_slice(&offered.priority.to_be_bytes());
                data.extend_from_slice(&offered.digest.0);
            }
            w.map_header(4);
            w.entry_text("type", ty);
            w.entry_text("targetId", target_id.as_str());
            w.entry_bytes("data", &data);
            w.entry_text("senderId", sender_id.as_str());
        }
        Message::Deleted {
            sender_id,
            target_id,
            document_id,
        } => {
            w.map_header(4);
            w.entry_text("type", ty);
            w.entry_text("targetId", target_id.as_str());
            w.entry_document_id(document_id);
            w.entry_text("senderId", sender_id.as_str());
        }
    }
    w.out
}

/// Appends CBOR items to a buffer, with cbor-x's choices of header widths.
#[derive(Debug, Default)]
struct CborWriter {
    out: Vec<u8>,
}

impl CborWriter {
    /// A major type with the shortest argument encoding.
    fn head(&mut self, major: u8, value: u64) {
        let major = major << 5;
        if value < 24 {
            // Fits in the low five bits: the cast cannot truncate.
            self.out.push(major | value as u8);
        } else if let Ok(v) = u8::try_from(value) {
            self.out.extend_from_slice(&[major | 24, v]);
        } else if let Ok(v) = u16::try_from(value) {
            self.out.push(major | 25);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = u32::try_from(value) {
            self.out.push(major | 26);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else {
            self.out.push(major | 27);
            self.out.extend_from_slice(&value.to_be_bytes());
        }
    }

    /// cbor-x's map header: always 16 bits of count, 32 when that overflows.
    fn map_header(&mut self, len: usize) {
        if let Ok(len) = u16::try_from(len) {
            self.out.push(0xb9);
            self.out.extend_from_slice(&len.to_be_bytes());
        } else {
            // More than u32::MAX entries cannot exist in memory that encodes them.
            let len = u32::try_from(len).unwrap_or(u32::MAX);
            self.out.push(0xba);
            self.out.extend_from_slice(&len.to_be_bytes());
        }
    }

    fn text(&mut self, text: &str) {
        self.head(3, text.len() as u64);
        self.out.extend_from_slice(text.as_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.head(2, bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    fn bool(&mut self, value: bool) {
        self.out.push(if value { 0xf5 } else { 0xf4 });
    }

    fn undefined(&mut self) {
        self.out.push(0xf7);
    }

    /// A JS number holding a non-negative integer, as cbor-x writes it.
    ///
    /// Above 2^53 a JS number cannot hold the value exactly, so no JS peer sends one;
    /// we write those as a 64-bit unsigned integer so that they still round-trip.
    fn number(&mut self, value: u64) {
        if value <= u64::from(u32::MAX) || value > JS_EXACT_INTEGER_LIMIT {
            self.head(0, value);
        } else {
            self.out.push(0xfb);
            // Exact: value <= 2^53.
            self.out.extend_from_slice(&(value as f64).to_be_bytes());
        }
    }

    fn text_array<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) {
        self.head(4, items.len() as u64);
        for item in items {
            self.text(item);
        }
    }

    fn entry_text(&mut self, key: &str, value: &str) {
        self.text(key);
        self.text(value);
    }

    fn entry_bytes(&mut self, key: &str, value: &[u8]) {
        self.text(key);
        self.bytes(value);
    }

    fn entry_document_id(&mut self, document_id: &DocumentId) {
        self.text("documentId");
        self.text(&document_id.to_string());
    }

    fn optional_peer(&mut self, key: &str, peer: Option<&PeerId>) {
        if let Some(peer) = peer {
            self.entry_text(key, peer.as_str());
        }
    }

    /// Repo.ts builds `{ storageId: await storageSubsystem?.id(), isEphemeral }`: the
    /// `storageId` key is there even when it is `undefined`. peerdoc's offer follows.
    /// A missing metadata object is a JS `undefined` too.
    fn metadata(&mut self, metadata: Option<&PeerMetadata>) {
        let Some(metadata) = metadata else {
            self.undefined();
            return;
        };
        self.map_header(2 + usize::from(metadata.peerdoc.is_some()));
        self.text("storageId");
        match &metadata.storage_id {
            Some(storage_id) => self.text(storage_id.as_str()),
            None => self.undefined(),
        }
        self.text("isEphemeral");
        self.bool(metadata.is_ephemeral);
        if let Some(capabilities) = &metadata.peerdoc {
            self.text("peerdoc");
            self.map_header(
                1 + usize::from(capabilities.cloud)
                    + usize::from(capabilities.durability.is_some()),
            );
            self.text("version");
            self.number(capabilities.version);
            if capabilities.cloud {
                self.text("cloud");
                self.bool(true);
            }
            if let Some(durability) = capabilities.durability {
                self.text("durability");
                self.text(durability.as_str());
            }
        }
    }

    /// RemoteHeadsSubscriptions' `{ heads, timestamp }`.
    fn remote_heads(&mut self, remote: &RemoteHeads) {
        self.map_header(2 + usize::from(remote.durability.is_some()));
        self.text("heads");
        self.text_array(remote.heads.iter().map(String::as_str));
        self.text("timestamp");
        self.number(remote.timestamp);
        if let Some(durability) = remote.durability {
            self.text("durability");
            self.text(durability.as_str());
        }
    }
}
