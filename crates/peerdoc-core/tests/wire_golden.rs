//! Byte-for-byte checks of the wire codec against vectors made by the real cbor-x with
//! automerge-repo's encoder options (see `tests/vectors/README.md`; regenerating them
//! needs Node, running these tests does not).
//!
//! The inputs here must match the constants in `tests/vectors/generate.mjs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use peerdoc_core::wire::{
    DEFAULT_MAX_MESSAGE_SIZE, Message, Offered, PeerMetadata, PeerdocCapabilities, RemoteHeads,
};
use peerdoc_core::{DocumentId, HeadsDigest, PeerId, StorageId};

const STORAGE_A: &str = "0b3a7f52-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
const STORAGE_B: &str = "7d6e5f4a-3b2c-4d1e-9f8a-7b6c5d4e3f2a";

fn filled<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

fn document_id() -> DocumentId {
    DocumentId::from_bytes(filled(0x10))
}

fn bs58check(bytes: &[u8]) -> String {
    bs58::encode(bytes).with_check().into_string()
}

fn alice() -> PeerId {
    PeerId::new("alice-peer-3f1c")
}

fn bob() -> PeerId {
    PeerId::new("bob-peer-9a2e")
}

fn metadata(storage: Option<&str>, is_ephemeral: bool, peerdoc: bool) -> Option<PeerMetadata> {
    Some(PeerMetadata {
        storage_id: storage.map(StorageId::new),
        is_ephemeral,
        peerdoc: peerdoc.then_some(PeerdocCapabilities {
            version: 1,
            cloud: false,
            durability: None,
        }),
    })
}

fn sync_data() -> Vec<u8> {
    filled::<5>(0x42).to_vec()
}

fn join(metadata: Option<PeerMetadata>) -> Message {
    Message::Join {
        sender_id: alice(),
        supported_protocol_versions: vec!["1".to_owned()],
        metadata,
    }
}

fn peer(metadata: Option<PeerMetadata>) -> Message {
    Message::Peer {
        sender_id: bob(),
        target_id: alice(),
        selected_protocol_version: "1".to_owned(),
        metadata,
    }
}

fn sync(data: Vec<u8>) -> Message {
    Message::Sync {
        sender_id: alice(),
        target_id: bob(),
        document_id: document_id(),
        data,
    }
}

fn ephemeral(count: u64, data: Vec<u8>) -> Message {
    Message::Ephemeral {
        sender_id: alice(),
        target_id: bob(),
        count,
        session_id: "session-5c2b".to_owned(),
        document_id: document_id(),
        data,
    }
}

/// Every vector peerdoc must produce exactly, by file name.
fn encode_vectors() -> Vec<(&'static str, Message)> {
    let head_a = bs58check(&filled::<32>(0xa0));
    let head_b = bs58check(&filled::<32>(0x40));
    vec![
        ("join", join(metadata(Some(STORAGE_A), false, false))),
        ("join_ephemeral", join(metadata(None, true, false))),
        ("join_peerdoc", join(metadata(Some(STORAGE_A), false, true))),
        ("peer", peer(metadata(Some(STORAGE_B), false, false))),
        ("peer_peerdoc", peer(metadata(Some(STORAGE_B), false, true))),
        ("leave", Message::Leave { sender_id: alice() }),
        (
            "request",
            Message::Request {
                sender_id: alice(),
                target_id: bob(),
                document_id: document_id(),
                data: sync_data(),
            },
        ),
        ("sync", sync(sync_data())),
        ("sync_large", sync(filled::<300>(0).to_vec())),
        (
            "doc_unavailable",
            Message::DocUnavailable {
                sender_id: alice(),
                target_id: bob(),
                document_id: document_id(),
            },
        ),
        ("ephemeral", ephemeral(1, vec![0xa1, 0x61, 0x78, 0x01])),
        ("ephemeral_big_count", ephemeral(5_000_000_000, vec![0x01])),
        (
            "remote_subscription_change",
            Message::RemoteSubscriptionChange {
                sender_id: alice(),
                target_id: bob(),
                add: vec![StorageId::new(STORAGE_A), StorageId::new(STORAGE_B)],
                remove: vec![],
            },
        ),
        (
            "remote_heads_changed",
            Message::RemoteHeadsChanged {
                sender_id: alice(),
                target_id: bob(),
                document_id: document_id(),
                new_heads: BTreeMap::from([(
                    StorageId::new(STORAGE_A),
                    RemoteHeads {
                        heads: vec![head_a.clone(), head_b],
                        timestamp: 1_763_764_800_123,
                        durability: None,
                    },
                )]),
            },
        ),
        (
            "remote_heads_changed_two",
            Message::RemoteHeadsChanged {
                sender_id: alice(),
                target_id: bob(),
                document_id: document_id(),
                new_heads: BTreeMap::from([
                    (
                        StorageId::new(STORAGE_A),
                        RemoteHeads {
                            heads: vec![head_a],
                            timestamp: 42,
                            durability: None,
                        },
                    ),
                    (
                        StorageId::new(STORAGE_B),
                        RemoteHeads {
                            heads: vec![],
                            timestamp: 70_000,
                            durability: None,
                        },
                    ),
                ]),
            },
        ),
        (
            "error",
            Message::Error {
                message: "unsupported protocol version".to_owned(),
                sender_id: Some(bob()),
                target_id: Some(alice()),
            },
        ),
        (
            "error_bare",
            Message::Error {
                message: format!("défaut: {}", "ünïcödé ".repeat(40)),
                sender_id: None,
                target_id: None,
            },
        ),
        (
            "peerdoc_reconcile",
            Message::Reconcile {
                sender_id: alice(),
                target_id: bob(),
                data: vec![0x00, 0x01, 0xfe, 0xff],
            },
        ),
        (
            "peerdoc_deleted",
            Message::Deleted {
                sender_id: alice(),
                target_id: bob(),
                document_id: document_id(),
            },
        ),
        (
            "peerdoc_offer",
            Message::Offer {
                sender_id: alice(),
                target_id: bob(),
                documents: vec![Offered {
                    document_id: document_id(),
                    priority: 5,
                    digest: HeadsDigest(filled(0xa0)),
                }],
            },
        ),
    ]
}

/// Inputs peerdoc must read but does not write.
fn decode_only_vectors() -> Vec<(&'static str, Message)> {
    vec![
        (
            "join_metadata_key",
            join(metadata(Some(STORAGE_A), false, false)),
        ),
        ("sync_reordered", sync(sync_data())),
        (
            "remote_subscription_change_add_only",
            Message::RemoteSubscriptionChange {
                sender_id: alice(),
                target_id: bob(),
                add: vec![StorageId::new(STORAGE_A)],
                remove: vec![],
            },
        ),
    ]
}

fn vector(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "vectors"]
        .iter()
        .collect::<PathBuf>()
        .join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    hex::decode(text.trim()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn document_id_matches_the_generator() {
    assert_eq!(document_id().to_string(), "Dyz4uJxJcoxYmaZWQnRcx7wcnFF");
}

#[test]
fn encode_matches_cbor_x_byte_for_byte() {
    let mut failures = Vec::new();
    for (name, message) in encode_vectors() {
        let expected = vector(name);
        let actual = message.encode();
        if actual != expected {
            failures.push(format!(
                "{name}:\n  cbor-x  {}\n  peerdoc {}",
                hex::encode(&expected),
                hex::encode(&actual)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn decode_reads_every_vector_back() {
    for (name, message) in encode_vectors() {
        assert_eq!(
            Message::decode(&vector(name), DEFAULT_MAX_MESSAGE_SIZE),
            Ok(message),
            "{name}"
        );
    }
}

#[test]
fn decode_accepts_what_peerdoc_does_not_write() {
    for (name, message) in decode_only_vectors() {
        let bytes = vector(&format!("decode_only.{name}"));
        assert_eq!(
            Message::decode(&bytes, DEFAULT_MAX_MESSAGE_SIZE),
            Ok(message),
            "{name}"
        );
    }
}

#[test]
fn every_vector_file_is_checked() {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "vectors"]
        .iter()
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("vectors directory")
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_suffix(".hex"))
                .map(str::to_owned)
        })
        .collect();
    on_disk.sort();
    let mut known: Vec<String> = encode_vectors()
        .into_iter()
        .map(|(name, _)| name.to_owned())
        .chain(
            decode_only_vectors()
                .into_iter()
                .map(|(name, _)| format!("decode_only.{name}")),
        )
        .collect();
    known.sort();
    assert_eq!(on_disk, known);
}
