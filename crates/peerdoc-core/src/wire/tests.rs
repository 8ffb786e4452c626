//! Unit and property tests of the codec. The byte-for-byte checks against cbor-x live in
//! `tests/wire_golden.rs`.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn doc() -> DocumentId {
    DocumentId::from_bytes([3; 16])
}

fn sync() -> Message {
    Message::Sync {
        sender_id: PeerId::new("a"),
        target_id: PeerId::new("b"),
        document_id: doc(),
        data: vec![1, 2, 3],
    }
}

fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    Message::decode(bytes, DEFAULT_MAX_MESSAGE_SIZE)
}

/// A map with text keys and the given pre-encoded values, as cbor-x would head it.
fn map(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0xb9, 0, entries.len() as u8];
    for (key, value) in entries {
        out.push(0x60 | key.len() as u8);
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(value);
    }
    out
}

fn text(value: &str) -> Vec<u8> {
    let mut out = vec![0x78, value.len() as u8];
    out.extend_from_slice(value.as_bytes());
    out
}

#[test]
fn size_is_checked_before_anything_else() {
    let bytes = sync().encode();
    assert_eq!(
        Message::decode(&bytes, bytes.len() - 1),
        Err(WireError::MessageTooLarge {
            size: bytes.len(),
            max: bytes.len() - 1
        })
    );
    // Garbage over the limit is still "too large", not "malformed".
    assert!(matches!(
        Message::decode(&[0xff; 10], 5),
        Err(WireError::MessageTooLarge { size: 10, max: 5 })
    ));
    assert_eq!(Message::decode(&bytes, bytes.len()), Ok(sync()));
}

#[test]
fn rejects_non_map_top_level_and_trailing_bytes() {
    assert!(matches!(decode(&[]), Err(WireError::Malformed(_))));
    assert!(matches!(decode(&[0x80]), Err(WireError::Malformed(_))));
    assert!(matches!(
        decode(&text("sync")),
        Err(WireError::Malformed(_))
    ));
    let mut bytes = sync().encode();
    bytes.push(0x00);
    assert_eq!(decode(&bytes), Err(WireError::TrailingBytes { count: 1 }));
    let bytes = sync().encode();
    assert!(matches!(
        decode(&bytes[..bytes.len() - 1]),
        Err(WireError::Malformed(_))
    ));
}

#[test]
fn unknown_type_is_its_own_error() {
    let bytes = map(&[("type", &text("future-thing")), ("x", &[0x01])]);
    assert_eq!(
        decode(&bytes),
        Err(WireError::UnknownType("future-thing".to_owned()))
    );
}

#[test]
fn missing_and_mistyped_fields_are_named() {
    let bytes = map(&[("type", &text("leave"))]);
    assert_eq!(
        decode(&bytes),
        Err(WireError::MissingField {
            message_type: "leave".to_owned(),
            field: "senderId"
        })
    );
    let bytes = map(&[("senderId", &text("a"))]);
    assert_eq!(
        decode(&bytes),
        Err(WireError::MissingField {
            message_type: String::new(),
            field: "type"
        })
    );
    // `undefined` counts as absent, as it does in JS.
    let bytes = map(&[("type", &text("leave")), ("senderId", &[0xf7])]);
    assert!(matches!(
        decode(&bytes),
        Err(WireError::MissingField { .. })
    ));
    let bytes = map(&[("type", &text("leave")), ("senderId", &[0x01])]);
    assert_eq!(
        decode(&bytes),
        Err(WireError::WrongType {
            message_type: "leave".to_owned(),
            field: "senderId",
            expected: "a text string"
        })
    );
    let bytes = map(&[("type", &[0x01])]);
    assert!(matches!(
        decode(&bytes),
        Err(WireError::WrongType { field: "type", .. })
    ));
}

#[test]
fn bad_document_ids_are_rejected() {
    let bytes = map(&[
        ("type", &text("doc-unavailable")),
        ("senderId", &text("a")),
        ("targetId", &text("b")),
        ("documentId", &text("not-a-document-id")),
    ]);
    assert!(matches!(
        decode(&bytes),
        Err(WireError::InvalidDocumentId(_))
    ));
}

#[test]
fn duplicate_keys_are_rejected() {
    let bytes = map(&[
        ("type", &text("leave")),
        ("senderId", &text("a")),
        ("senderId", &text("b")),
    ]);
    assert_eq!(
        decode(&bytes),
        Err(WireError::DuplicateKey("senderId".to_owned()))
    );
}

#[test]
fn deep_nesting_is_bounded() {
    // An unknown key holding arrays nested far deeper than the limit.
    let mut nested = vec![0x81; 100_000];
    nested.push(0x00);
    let bytes = map(&[
        ("type", &text("leave")),
        ("senderId", &text("a")),
        ("x", &nested),
    ]);
    assert_eq!(
        decode(&bytes),
        Err(WireError::TooDeep {
            max: MAX_NESTING_DEPTH
        })
    );
    // Indefinite-length arrays and tags nest too.
    let mut nested = Vec::new();
    for _ in 0..1000 {
        nested.extend_from_slice(&[0xc6, 0x9f]);
    }
    let bytes = map(&[("type", &text("leave")), ("x", &nested)]);
    assert!(matches!(decode(&bytes), Err(WireError::TooDeep { .. })));
    // Shallow unknown values are fine.
    let bytes = map(&[
        ("type", &text("leave")),
        ("senderId", &text("a")),
        ("x", &[0x9f, 0x81, 0xa1, 0x01, 0xf6, 0xff]),
    ]);
    assert_eq!(
        decode(&bytes),
        Ok(Message::Leave {
            sender_id: PeerId::new("a")
        })
    );
}

#[test]
fn huge_claimed_lengths_do_not_allocate() {
    // A map claiming 2^32 entries, an array claiming 2^64-1 items, a string claiming 4 GiB.
    assert!(decode(&[0xba, 0xff, 0xff, 0xff, 0xff]).is_err());
    let bytes = map(&[
        ("type", &text("leave")),
        ("x", &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
    ]);
    assert!(matches!(decode(&bytes), Err(WireError::Malformed(_))));
    let bytes = map(&[("type", &[0x7a, 0xff, 0xff, 0xff, 0xff])]);
    assert!(decode(&bytes).is_err());
}

#[test]
fn numbers_accept_integral_floats_only() {
    let ephemeral = |count: &[u8]| {
        map(&[
            ("type", &text("ephemeral")),
            ("senderId", &text("a")),
            ("targetId", &text("b")),
            ("count", count),
            ("sessionId", &text("s")),
            ("documentId", &text(&doc().to_string())),
            ("data", &[0x40]),
        ])
    };
    let count_of = |bytes: &[u8]| match decode(bytes) {
        Ok(Message::Ephemeral { count, .. }) => Ok(count),
        Ok(other) => panic!("decoded {other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(count_of(&ephemeral(&[0x18, 0x2a])), Ok(42));
    let mut float = vec![0xfb];
    float.extend_from_slice(&5e9f64.to_be_bytes());
    assert_eq!(count_of(&ephemeral(&float)), Ok(5_000_000_000));
    let mut float = vec![0xfa];
    float.extend_from_slice(&7f32.to_be_bytes());
    assert_eq!(count_of(&ephemeral(&float)), Ok(7));
    for bad in [1.5f64, -1.0, f64::NAN, f64::INFINITY, 1e20] {
        let mut float = vec![0xfb];
        float.extend_from_slice(&bad.to_be_bytes());
        assert!(
            matches!(
                count_of(&ephemeral(&float)),
                Err(WireError::WrongType { field: "count", .. })
            ),
            "{bad} accepted"
        );
    }
    assert!(count_of(&ephemeral(&[0x20])).is_err());
}

#[test]
fn numbers_are_written_like_cbor_x() {
    let timestamp_bytes = |timestamp: u64| {
        let message = Message::RemoteHeadsChanged {
            sender_id: PeerId::new("a"),
            target_id: PeerId::new("b"),
            document_id: doc(),
            new_heads: BTreeMap::from([(
                StorageId::new("s"),
                RemoteHeads {
                    heads: vec![],
                    timestamp,
                    durability: None,
                },
            )]),
        };
        let bytes = message.encode();
        assert_eq!(decode(&bytes), Ok(message));
        let key = b"timestamp";
        let at = bytes
            .windows(key.len())
            .position(|w| w == key)
            .expect("timestamp key")
            + key.len();
        // After the value: the "senderId" key (9 bytes) and "a" (2 bytes).
        bytes[at..bytes.len() - 11].to_vec()
    };
    assert_eq!(timestamp_bytes(23), [0x17]);
    assert_eq!(
        timestamp_bytes(u64::from(u32::MAX)),
        [0x1a, 0xff, 0xff, 0xff, 0xff]
    );
    let mut float = vec![0xfb];
    float.extend_from_slice(&4294967296f64.to_be_bytes());
    assert_eq!(timestamp_bytes(1 << 32), float);
    // Beyond what a JS number holds exactly, we fall back to a uint64.
    assert_eq!(timestamp_bytes((1 << 53) + 1)[0], 0x1b);
}

#[test]
fn tagged_byte_strings_are_accepted() {
    let doc_text = text(&doc().to_string());
    let bytes = map(&[
        ("type", &text("sync")),
        ("senderId", &text("a")),
        ("targetId", &text("b")),
        ("documentId", &doc_text),
        ("data", &[0xd8, 0x40, 0x43, 1, 2, 3]),
    ]);
    assert_eq!(decode(&bytes), Ok(sync()));
    let bytes = map(&[
        ("type", &text("sync")),
        ("senderId", &text("a")),
        ("targetId", &text("b")),
        ("documentId", &doc_text),
        ("data", &[0xd8, 0x41, 0x43, 1, 2, 3]),
    ]);
    assert!(matches!(
        decode(&bytes),
        Err(WireError::WrongType { field: "data", .. })
    ));
}

#[test]
fn accessors_report_ids() {
    let message = sync();
    assert_eq!(message.type_name(), "sync");
    assert_eq!(message.sender_id(), Some(&PeerId::new("a")));
    assert_eq!(message.target_id(), Some(&PeerId::new("b")));
    assert_eq!(message.document_id(), Some(&doc()));
    let error = Message::Error {
        message: "x".to_owned(),
        sender_id: None,
        target_id: None,
    };
    assert_eq!(error.sender_id(), None);
    assert_eq!(error.target_id(), None);
    assert_eq!(error.document_id(), None);
}

// ---- property tests -------------------------------------------------------------

fn peer_id() -> impl Strategy<Value = PeerId> {
    "\\PC{0,12}".prop_map(PeerId::new)
}

fn storage_id() -> impl Strategy<Value = StorageId> {
    "\\PC{0,12}".prop_map(StorageId::new)
}

fn document_id() -> impl Strategy<Value = DocumentId> {
    any::<[u8; 16]>().prop_map(DocumentId::from_bytes)
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

fn metadata() -> impl Strategy<Value = Option<PeerMetadata>> {
    proptest::option::of(
        (
            proptest::option::of(storage_id()),
            any::<bool>(),
            proptest::option::of((any::<u64>(), any::<bool>(), durability()).prop_map(
                |(version, cloud, durability)| PeerdocCapabilities {
                    version,
                    cloud,
                    durability,
                },
            )),
        )
            .prop_map(|(storage_id, is_ephemeral, peerdoc)| PeerMetadata {
                storage_id,
                is_ephemeral,
                peerdoc,
            }),
    )
}

fn durability() -> impl Strategy<Value = Option<CloudDurability>> {
    proptest::option::of(prop_oneof![
        Just(CloudDurability::Process),
        Just(CloudDurability::Power)
    ])
}

fn remote_heads() -> impl Strategy<Value = RemoteHeads> {
    (
        prop::collection::vec("\\PC{0,8}", 0..3),
        any::<u64>(),
        durability(),
    )
        .prop_map(|(heads, timestamp, durability)| RemoteHeads {
            heads,
            timestamp,
            durability,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            peer_id(),
            prop::collection::vec("\\PC{0,4}", 0..3),
            metadata()
        )
            .prop_map(
                |(sender_id, supported_protocol_versions, metadata)| Message::Join {
                    sender_id,
                    supported_protocol_versions,
                    metadata
                }
            ),
        (peer_id(), peer_id(), "\\PC{0,4}", metadata()).prop_map(
            |(sender_id, target_id, selected_protocol_version, metadata)| Message::Peer {
                sender_id,
                target_id,
                selected_protocol_version,
                metadata
            }
        ),
        peer_id().prop_map(|sender_id| Message::Leave { sender_id }),
        (peer_id(), peer_id(), document_id(), data()).prop_map(
            |(sender_id, target_id, document_id, data)| Message::Request {
                sender_id,
                target_id,
                document_id,
                data
            }
        ),
        (peer_id(), peer_id(), document_id(), data()).prop_map(
            |(sender_id, target_id, document_id, data)| Message::Sync {
                sender_id,
                target_id,
                document_id,
                data
            }
        ),
        (peer_id(), peer_id(), document_id()).prop_map(|(sender_id, target_id, document_id)| {
            Message::DocUnavailable {
                sender_id,
                target_id,
                document_id,
            }
        }),
        (
            peer_id(),
            peer_id(),
            any::<u64>(),
            "\\PC{0,12}",
            document_id(),
            data()
        )
            .prop_map(
                |(sender_id, target_id, count, session_id, document_id, data)| {
                    Message::Ephemeral {
                        sender_id,
                        target_id,
                        count,
                        session_id,
                        document_id,
                        data,
                    }
                }
            ),
        (
            peer_id(),
            peer_id(),
            prop::collection::vec(storage_id(), 0..4),
            prop::collection::vec(storage_id(), 0..4)
        )
            .prop_map(|(sender_id, target_id, add, remove)| {
                Message::RemoteSubscriptionChange {
                    sender_id,
                    target_id,
                    add,
                    remove,
                }
            }),
        (
            peer_id(),
            peer_id(),
            document_id(),
            prop::collection::btree_map(storage_id(), remote_heads(), 0..4)
        )
            .prop_map(|(sender_id, target_id, document_id, new_heads)| {
                Message::RemoteHeadsChanged {
                    sender_id,
                    target_id,
                    document_id,
                    new_heads,
                }
            }),
        (
            "\\PC{0,40}",
            proptest::option::of(peer_id()),
            proptest::option::of(peer_id())
        )
            .prop_map(|(message, sender_id, target_id)| Message::Error {
                message,
                sender_id,
                target_id
            }),
        (peer_id(), peer_id(), data()).prop_map(|(sender_id, target_id, data)| {
            Message::Reconcile {
                sender_id,
                target_id,
                data,
            }
        }),
        (
            peer_id(),
            peer_id(),
            prop::collection::vec((document_id(), any::<i32>(), any::<[u8; 16]>()), 0..8)
        )
            .prop_map(|(sender_id, target_id, documents)| Message::Offer {
                sender_id,
                target_id,
                documents: documents
                    .into_iter()
                    .map(|(document_id, priority, digest)| crate::wire::Offered {
                        document_id,
                        priority,
                        digest: crate::ids::HeadsDigest(digest),
                    })
                    .collect(),
            }),
        (peer_id(), peer_id(), document_id()).prop_map(|(sender_id, target_id, document_id)| {
            Message::Deleted {
                sender_id,
                target_id,
                document_id,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(message in message()) {
        let bytes = message.encode();
        prop_assert_eq!(decode(&bytes), Ok(message));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    /// Mutating a valid message reaches deeper into the decoder than random bytes do.
    #[test]
    fn mutated_messages_never_panic(
        message in message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = message.encode();
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        if let Ok(decoded) = decode(&bytes) {
            prop_assert_eq!(decode(&decoded.encode()), Ok(decoded));
        }
        let cut = cut.index(bytes.len() + 1);
        let _ = decode(&bytes[..cut]);
    }
}

#[test]
fn heads_round_trip_through_bs58check_and_garbage_is_refused() {
    let heads = vec![
        automerge::ChangeHash([7; 32]),
        automerge::ChangeHash([200; 32]),
    ];
    let encoded = crate::wire::encode_heads(&heads);
    assert_eq!(crate::wire::decode_heads(&encoded), Some(heads));
    assert_eq!(crate::wire::decode_heads(&["not a hash".to_owned()]), None);
    // A valid bs58check string of the wrong length is not a change hash either.
    let short = bs58::encode([1u8; 16]).with_check().into_string();
    assert_eq!(crate::wire::decode_heads(&[short]), None);
}

/// An older client's `join` has no `supportedProtocolVersions`: it decodes (the engine
/// takes it as v1, as the stock sync server does).
#[test]
fn a_join_without_protocol_versions_decodes_with_an_empty_list() {
    // {"type": "join", "senderId": "x"}
    let bytes = [
        &[0xa2, 0x64][..],
        b"type",
        &[0x64],
        b"join",
        &[0x68],
        b"senderId",
        &[0x61],
        b"x",
    ]
    .concat();
    match Message::decode(&bytes, 1024) {
        Ok(Message::Join {
            sender_id,
            supported_protocol_versions,
            metadata,
        }) => {
            assert_eq!(sender_id.as_str(), "x");
            assert!(supported_protocol_versions.is_empty());
            assert!(metadata.is_none());
        }
        other => panic!("{other:?}"),
    }
}
