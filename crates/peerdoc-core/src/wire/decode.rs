//! Reads messages from untrusted peers.
//!
//! Decoding runs in two steps. First the whole input is walked once: the top level must
//! be one map, every value is checked to be well-formed CBOR no deeper than
//! [`MAX_NESTING_DEPTH`], nothing may follow the map, and each text key is remembered
//! with the byte range of its value. Then the message type picks the fields it needs
//! from those ranges, in whatever order the peer wrote them, ignoring the rest.
//!
//! JS peers write `undefined` (or `null`) for an absent optional property, so both count
//! as absent. Every count read from the input is only used to drive a loop that consumes
//! at least one byte per round, never to reserve memory up front.

use std::collections::BTreeMap;

use minicbor::Decoder;
use minicbor::data::Type;

use super::type_names;
use super::{
    CloudDurability, MAX_NESTING_DEPTH, Message, PeerMetadata, PeerdocCapabilities, RemoteHeads,
    WireError,
};
use crate::ids::{DocumentId, PeerId, StorageId};

/// CBOR tag 64: a byte string as a `Uint8Array`. cbor-x adds it under its default options
/// in Node; automerge-repo turns it off, but other JS peers may not.
const TAG_UINT8_ARRAY: u64 = 64;

pub(super) fn decode_message(bytes: &[u8], max_size: usize) -> Result<Message, WireError> {
    if bytes.len() > max_size {
        return Err(WireError::MessageTooLarge {
            size: bytes.len(),
            max: max_size,
        });
    }
    let mut decoder = Decoder::new(bytes);
    let entries = match decoder.datatype().map_err(malformed)? {
        Type::Map | Type::MapIndef => read_map(&mut decoder, 1, NonTextKeys::Ignore)?,
        other => {
            return Err(WireError::Malformed(format!(
                "a message is a CBOR map, not {other}"
            )));
        }
    };
    if decoder.position() < bytes.len() {
        return Err(WireError::TrailingBytes {
            count: bytes.len() - decoder.position(),
        });
    }

    let untyped = Fields {
        message_type: "",
        entries,
    };
    let message_type = untyped.text("type")?;
    let fields = Fields {
        message_type,
        entries: untyped.entries,
    };
    fields.message()
}

fn malformed(error: minicbor::decode::Error) -> WireError {
    WireError::Malformed(error.to_string())
}

/// What to do with a map key that is not a text string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonTextKeys {
    /// Skip the entry, like any unknown key.
    Ignore,
    /// The map is keyed by ids: refuse it.
    Reject,
}

/// One map entry: its text key and the encoded bytes of its value.
type Entry<'b> = (&'b str, &'b [u8]);

/// Reads a map (definite or indefinite length) whose header is next, checking every value
/// and collecting text keys with the byte range of their values.
fn read_map<'b>(
    decoder: &mut Decoder<'b>,
    depth: usize,
    non_text_keys: NonTextKeys,
) -> Result<Vec<Entry<'b>>, WireError> {
    if depth > MAX_NESTING_DEPTH {
        return Err(WireError::TooDeep {
            max: MAX_NESTING_DEPTH,
        });
    }
    let input = decoder.input();
    let length = decoder.map().map_err(malformed)?;
    let mut entries: Vec<Entry<'b>> = Vec::new();
    let mut read = 0u64;
    loop {
        match length {
            Some(length) if read == length => break,
            Some(_) => {}
            None => {
                if decoder.datatype().map_err(malformed)? == Type::Break {
                    decoder.set_position(decoder.position() + 1);
                    break;
                }
            }
        }
        read += 1;
        let key = match decoder.datatype().map_err(malformed)? {
            Type::String => Some(decoder.str().map_err(malformed)?),
            _ if non_text_keys == NonTextKeys::Reject => {
                return Err(WireError::Malformed(
                    "a map keyed by ids has a key that is not a text string".to_owned(),
                ));
            }
            _ => {
                skip_value(decoder, depth + 1)?;
                None
            }
        };
        let start = decoder.position();
        skip_value(decoder, depth + 1)?;
        let value = input
            .get(start..decoder.position())
            .ok_or_else(|| WireError::Malformed("value out of bounds".to_owned()))?;
        if let Some(key) = key {
            if entries.iter().any(|(seen, _)| *seen == key) {
                return Err(WireError::DuplicateKey(key.to_owned()));
            }
            entries.push((key, value));
        }
    }
    Ok(entries)
}

/// Steps over one well-formed value, refusing to nest deeper than [`MAX_NESTING_DEPTH`].
///
/// minicbor's own `skip` walks nesting without recursion but keeps a stack as deep as
/// the input nests; the explicit bound keeps every value we accept shallow, so that
/// later steps may recurse safely.
fn skip_value(decoder: &mut Decoder<'_>, depth: usize) -> Result<(), WireError> {
    if depth > MAX_NESTING_DEPTH {
        return Err(WireError::TooDeep {
            max: MAX_NESTING_DEPTH,
        });
    }
    match decoder.datatype().map_err(malformed)? {
        Type::Array | Type::ArrayIndef => {
            let length = decoder.array().map_err(malformed)?;
            skip_items(decoder, length, 1, depth)
        }
        Type::Map | Type::MapIndef => {
            let length = decoder.map().map_err(malformed)?;
            skip_items(decoder, length, 2, depth)
        }
        Type::Tag => {
            decoder.tag().map_err(malformed)?;
            skip_value(decoder, depth + 1)
        }
        Type::Break => Err(WireError::Malformed("unexpected break".to_owned())),
        Type::Unknown(byte) => Err(WireError::Malformed(format!(
            "0x{byte:02x} starts no CBOR item"
        ))),
        // Scalars and (possibly chunked) strings: no nesting, minicbor checks them.
        _ => decoder.skip().map_err(malformed),
    }
}

/// Skips the items of an array (`per_entry` 1) or map (2) whose header was just read.
fn skip_items(
    decoder: &mut Decoder<'_>,
    length: Option<u64>,
    per_entry: u64,
    depth: usize,
) -> Result<(), WireError> {
    match length {
        Some(length) => {
            // Every item takes at least one byte, so a huge claimed length stops at the
            // end of the input.
            for _ in 0..length {
                for _ in 0..per_entry {
                    skip_value(decoder, depth + 1)?;
                }
            }
        }
        None => loop {
            if decoder.datatype().map_err(malformed)? == Type::Break {
                decoder.set_position(decoder.position() + 1);
                break;
            }
            for _ in 0..per_entry {
                skip_value(decoder, depth + 1)?;
            }
        },
    }
    Ok(())
}

/// The entries of one map, and the message type to name in errors.
struct Fields<'b> {
    message_type: &'b str,
    entries: Vec<Entry<'b>>,
}

impl<'b> Fields<'b> {
    /// The value of `key`, unless it is absent, `null` or `undefined`.
    fn get(&self, key: &str) -> Option<&'b [u8]> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, value)| *value)
            .filter(|value| !matches!(value, [0xf6] | [0xf7]))
    }

    fn require(&self, key: &'static str) -> Result<&'b [u8], WireError> {
        self.get(key).ok_or_else(|| WireError::MissingField {
            message_type: self.message_type.to_owned(),
            field: key,
        })
    }

    fn wrong_type(&self, field: &'static str, expected: &'static str) -> WireError {
        WireError::WrongType {
            message_type: self.message_type.to_owned(),
            field,
            expected,
        }
    }

    fn text(&self, key: &'static str) -> Result<&'b str, WireError> {
        self.text_value(key, self.require(key)?)
    }

    /// peerdoc's optional `durability` name; one this version does not know is `None`.
    fn durability(&self) -> Result<Option<CloudDurability>, WireError> {
        match self.get("durability") {
            Some(value) => Ok(CloudDurability::from_name(
                self.text_value("durability", value)?,
            )),
            None => Ok(None),
        }
    }

    fn text_value(&self, key: &'static str, value: &'b [u8]) -> Result<&'b str, WireError> {
        let mut decoder = Decoder::new(value);
        match decoder.datatype() {
            Ok(Type::String) => decoder.str().map_err(malformed),
            _ => Err(self.wrong_type(key, "a text string")),
        }
    }

    fn string(&self, key: &'static str) -> Result<String, WireError> {
        self.text(key).map(str::to_owned)
    }

    fn peer_id(&self, key: &'static str) -> Result<PeerId, WireError> {
        self.text(key).map(PeerId::new)
    }

    fn optional_peer_id(&self, key: &'static str) -> Result<Option<PeerId>, WireError> {
        self.get(key)
            .map(|value| self.text_value(key, value).map(PeerId::new))
            .transpose()
    }

    fn document_id(&self) -> Result<DocumentId, WireError> {
        Ok(DocumentId::parse(self.text("documentId")?)?)
    }

    /// A `peerdoc/offer`'s `data`: whole entries of a document id, a priority and a
    /// heads digest.
    fn offers(&self) -> Result<Vec<super::Offered>, WireError> {
        let data = self.bytes("data")?;
        if data.len() % super::OFFER_ENTRY_BYTES != 0 {
            return Err(self.wrong_type("data", "whole offer entries of 36 bytes"));
        }
        Ok(data
            .chunks_exact(super::OFFER_ENTRY_BYTES)
            .map(|entry| {
                let mut id = [0u8; 16];
                id.copy_from_slice(&entry[..16]);
                let mut priority = [0u8; 4];
                priority.copy_from_slice(&entry[16..20]);
                let mut digest = [0u8; 16];
                digest.copy_from_slice(&entry[20..]);
                super::Offered {
                    document_id: DocumentId::from_bytes(id),
                    priority: i32::from_be_bytes(priority),
                    digest: crate::ids::HeadsDigest(digest),
                }
            })
            .collect())
    }

    fn bytes(&self, key: &'static str) -> Result<Vec<u8>, WireError> {
        let mut decoder = Decoder::new(self.require(key)?);
        if matches!(decoder.datatype(), Ok(Type::Tag)) {
            match decoder.tag() {
                Ok(tag) if tag.as_u64() == TAG_UINT8_ARRAY => {}
                _ => return Err(self.wrong_type(key, "a byte string")),
            }
        }
        match decoder.datatype() {
            Ok(Type::Bytes) => decoder.bytes().map(<[u8]>::to_vec).map_err(malformed),
            _ => Err(self.wrong_type(key, "a byte string")),
        }
    }

    fn number(&self, key: &'static str) -> Result<u64, WireError> {
        self.number_value(key, self.require(key)?)
    }

    /// A JS number holding a non-negative integer: an unsigned integer, or a float with
    /// no fraction (cbor-x writes integers from 2^32 up as float64).
    fn number_value(&self, key: &'static str, value: &[u8]) -> Result<u64, WireError> {
        /// 2^64 as a float: the first value that does not fit a u64.
        const U64_END: f64 = 18_446_744_073_709_551_616.0;
        let mut decoder = Decoder::new(value);
        let expected = "a non-negative integer";
        match decoder.datatype() {
            Ok(Type::U8 | Type::U16 | Type::U32 | Type::U64) => decoder.u64().map_err(malformed),
            Ok(Type::F32 | Type::F64) => {
                let float = decoder.f64().map_err(malformed)?;
                if (0.0..U64_END).contains(&float) && float.fract() == 0.0 {
                    // In range (so finite) and integral: the conversion is exact.
                    Ok(float as u64)
                } else {
                    Err(self.wrong_type(key, expected))
                }
            }
            _ => Err(self.wrong_type(key, expected)),
        }
    }

    fn bool(&self, key: &'static str) -> Result<Option<bool>, WireError> {
        self.get(key)
            .map(|value| match value {
                [0xf5] => Ok(true),
                [0xf4] => Ok(false),
                _ => Err(self.wrong_type(key, "a boolean")),
            })
            .transpose()
    }

    /// An array of text strings; absent means empty when `required` is false.
    fn text_list(&self, key: &'static str, required: bool) -> Result<Vec<String>, WireError> {
        let value = match (self.get(key), required) {
            (Some(value), _) => value,
            (None, true) => self.require(key)?,
            (None, false) => return Ok(Vec::new()),
        };
        let mut decoder = Decoder::new(value);
        let expected = "an array of text strings";
        let length = match decoder.datatype() {
            Ok(Type::Array | Type::ArrayIndef) => decoder.array().map_err(malformed)?,
            _ => return Err(self.wrong_type(key, expected)),
        };
        let mut items = Vec::new();
        loop {
            let at_end = match length {
                Some(length) => items.len() as u64 == length,
                None => matches!(decoder.datatype(), Ok(Type::Break)),
            };
            if at_end {
                break;
            }
            match decoder.datatype() {
                Ok(Type::String) => items.push(decoder.str().map_err(malformed)?.to_owned()),
                _ => return Err(self.wrong_type(key, expected)),
            }
        }
        Ok(items)
    }

    /// The entries of a nested map, for a field that must be a map.
    fn nested(
        &self,
        key: &'static str,
        value: &'b [u8],
        non_text_keys: NonTextKeys,
    ) -> Result<Fields<'b>, WireError> {
        let mut decoder = Decoder::new(value);
        match decoder.datatype() {
            Ok(Type::Map | Type::MapIndef) => Ok(Fields {
                message_type: self.message_type,
                // The whole input was checked against MAX_NESTING_DEPTH already.
                entries: read_map(&mut decoder, 1, non_text_keys)?,
            }),
            _ => Err(self.wrong_type(key, "a map")),
        }
    }

    /// `peerMetadata`, or `metadata` as the protocol README spells it.
    fn metadata(&self) -> Result<Option<PeerMetadata>, WireError> {
        let (key, value) = match (self.get("peerMetadata"), self.get("metadata")) {
            (Some(value), _) => ("peerMetadata", value),
            (None, Some(value)) => ("metadata", value),
            (None, None) => return Ok(None),
        };
        let fields = self.nested(key, value, NonTextKeys::Ignore)?;
        let storage_id = fields
            .get("storageId")
            .map(|value| fields.text_value("storageId", value).map(StorageId::new))
            .transpose()?;
        let is_ephemeral = fields.bool("isEphemeral")?.unwrap_or(false);
        let peerdoc = match fields.get("peerdoc") {
            Some(value) => {
                let offer = fields.nested("peerdoc", value, NonTextKeys::Ignore)?;
                Some(PeerdocCapabilities {
                    version: offer.number("version")?,
                    cloud: offer.bool("cloud")?.unwrap_or(false),
                    durability: offer.durability()?,
                })
            }
            None => None,
        };
        Ok(Some(PeerMetadata {
            storage_id,
            is_ephemeral,
            peerdoc,
        }))
    }

    fn new_heads(&self) -> Result<BTreeMap<StorageId, RemoteHeads>, WireError> {
        let by_storage = self.nested("newHeads", self.require("newHeads")?, NonTextKeys::Reject)?;
        let mut new_heads = BTreeMap::new();
        for (storage_id, value) in &by_storage.entries {
            let entry = by_storage.nested("newHeads", value, NonTextKeys::Ignore)?;
            let remote = RemoteHeads {
                heads: entry.text_list("heads", true)?,
                timestamp: entry.number("timestamp")?,
                durability: entry.durability()?,
            };
            new_heads.insert(StorageId::new(*storage_id), remote);
        }
        Ok(new_heads)
    }

    fn storage_ids(&self, key: &'static str) -> Result<Vec<StorageId>, WireError> {
        Ok(self
            .text_list(key, false)?
            .into_iter()
            .map(StorageId::new)
            .collect())
    }

    fn message(&self) -> Result<Message, WireError> {
        use type_names::*;
        let message = match self.message_type {
            JOIN => Message::Join {
                sender_id: self.peer_id("senderId")?,
                // Optional: a client that sends none speaks v1 (the stock server's reading).
                supported_protocol_versions: self.text_list("supportedProtocolVersions", false)?,
                metadata: self.metadata()?,
            },
            PEER => Message::Peer {
                sender_id: self.peer_id("senderId")?,
                target_id: self.peer_id("targetId")?,
                selected_protocol_version: self.string("selectedProtocolVersion")?,
                metadata: self.metadata()?,
            },
            LEAVE => Message::Leave {
                sender_id: self.peer_id("senderId")?,
            },
            REQUEST => Message::Request {
                sender_id: self.peer_id("senderId")?,
                target_id: self.peer_id("targetId")?,
                document_id: self.document_id()?,
                data: self.bytes("data")?,
            },
            SYNC => Message::Sync {
                sender_id: self.peer_id("senderId")?,
                target_id: self.peer_id("targetId")?,
                document_id: self.document_id()?,
                data: self.bytes("data")?,
            },
            DOC_UNAVAILABLE => Message::DocUnavailable {
                sender_id: self.peer_id("senderId")?,
                target_id: self.peer_id("targetId")?,
                document_id: self.document_id()?,
            },
            EPHEMERAL => Message::Ephemeral {
                sender_id: self.peer_id("senderId")?,
                target_id: self.peer_id("targetId")?,
                count: self.number("count")?,
                session_id: self.string("sessionId")?,
                document_id: self.document_id()?,
                data: self.bytes("data")?,
            },
            REMOTE_SUBSCRIPTION_CHANGE => Message::RemoteSubscriptionChange {
                sender_id: self.peer_id("senderId")?,
                target_id: self.peer_id("targetId")?,
                add: self.storage_ids("add")?,
                remove: self.storage_ids("remove")?,
            },
            REMOTE_HEADS_CHANGED => Message::RemoteHeadsChanged {
                sender_id: self.peer_id("senderId")?,
                target_id: self.peer_id("targetId")?,
                document_id: self.document_id()?,
                new_heads: self.new_heads()?,
            },
            ERROR => Message::Error {
                message: self.string("message")?,
                sender_id: self.optional_peer_id("senderId")?,
                target_id: self.optional_peer_id("targetId")?,
            },
            RECONCILE => Message::Reconcile {
                sender_id: self.peer_id("senderId")?,
                target_id: self.peer_id("targetId")?,
                data: self.bytes("data")?,
            },
            OFFER => Message::Offer {
                sender_id: self.peer_id("senderId")?,
                target_id: self.peer_id("targetId")?,
                documents: self.offers()?,
            },
            DELETED => Message::Deleted {
                sender_id: self.peer_id("senderId")?,
                target_id: self.peer_id("targetId")?,
                document_id: self.document_id()?,
            },
            other => return Err(WireError::UnknownType(other.to_owned())),
        };
        Ok(message)
    }
}
