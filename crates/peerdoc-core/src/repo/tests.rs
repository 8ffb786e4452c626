//! Engine unit tests that need two repos talking: a minimal deterministic harness that
//! runs storage inline and routes frames, with a switch to hold back one direction's
//! frames (as when gossip overtakes the sync stream).

use std::collections::VecDeque;

use automerge::ChangeHash;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::model::EditOp;
use crate::{MemoryStorage, PeerId, Storage};

const NOW: u64 = 1_700_000_000_000;
/// Each side's id for the one connection between the two repos.
const LINK: ConnectionId = ConnectionId(7);

struct Pair {
    repos: [Repo; 2],
    stores: [MemoryStorage; 2],
    rng: ChaCha8Rng,
    /// Frames in flight: (receiving repo, bytes).
    wire: VecDeque<(usize, Vec<u8>)>,
    /// Frames from repo `i` wait in `held` while `hold[i]`.
    hold: [bool; 2],
    held: Vec<(usize, Vec<u8>)>,
    /// Frames each repo sent.
    sent: [usize; 2],
    next_command: u64,
    replies: Vec<(usize, Reply)>,
}

impl Pair {
    fn new() -> Self {
        let mut pair = Self {
            repos: [
                Repo::new(RepoConfig::new(PeerId::new("alice"))),
                Repo::new(RepoConfig::new(PeerId::new("bob"))),
            ],
            stores: [MemoryStorage::new(), MemoryStorage::new()],
            rng: ChaCha8Rng::seed_from_u64(3),
            wire: VecDeque::new(),
            hold: [false; 2],
            held: Vec::new(),
            sent: [0; 2],
            next_command: 0,
            replies: Vec::new(),
        };
        pair.feed(0, Input::Start);
        pair.feed(1, Input::Start);
        pair.feed(
            0,
            Input::ConnectionOpened {
                conn: LINK,
                initiator: true,
            },
        );
        pair.feed(
            1,
            Input::ConnectionOpened {
                conn: LINK,
                initiator: false,
            },
        );
        pair.run();
        pair
    }

    fn feed(&mut self, i: usize, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            for output in self.repos[i].handle(NOW, &mut self.rng, input) {
                match output {
                    Output::Storage { id, op } => {
                        let store = &self.stores[i];
                        let result = match op {
                            StorageOp::LoadRange { prefix } => {
                                store.range(&prefix).map(StorageResult::Range)
                            }
                            StorageOp::Load { key } => store.get(&key).map(StorageResult::Value),
                            StorageOp::Write(batch) => {
                                store.write(batch).map(|_| StorageResult::Written)
                            }
                        };
                        inputs.push_back(Input::StorageCompleted { id, result });
                    }
                    Output::Send { bytes, .. } => {
                        self.sent[i] += 1;
                        if self.hold[i] {
                            self.held.push((1 - i, bytes));
                        } else {
                            self.wire.push_back((1 - i, bytes));
                        }
                    }
                    Output::Reply { result, .. } => {
                        self.replies.push((i, result.expect("command succeeds")));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Delivers frames until both sides are quiet.
    fn run(&mut self) {
        let mut delivered = 0;
        while let Some((to, bytes)) = self.wire.pop_front() {
            delivered += 1;
            assert!(delivered < 10_000, "the two repos never go quiet");
            self.feed(to, Input::MessageReceived { conn: LINK, bytes });
        }
    }

    /// Lets held frames go, in order, and runs to quiet.
    fn release(&mut self) {
        self.hold = [false; 2];
        self.wire.extend(self.held.drain(..));
        self.run();
    }

    fn command(&mut self, i: usize, command: Command) -> Reply {
        let id = CommandId(self.next_command);
        self.next_command += 1;
        self.feed(i, Input::Command { id, command });
        let (_, reply) = self.replies.pop().expect("a reply");
        reply
    }

    fn heads(&mut self, i: usize, doc: DocumentId) -> Vec<ChangeHash> {
        match self.command(i, Command::Read { doc, heads: None }) {
            Reply::Json { mut heads, .. } => {
                heads.sort();
                heads
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }

    fn set(&mut self, i: usize, doc: DocumentId, value: &str) -> Vec<ChangeHash> {
        let request = ChangeRequest::Ops(vec![EditOp::Set {
            path: "/song".into(),
            value: serde_json::json!(value),
        }]);
        match self.command(
            i,
            Command::Change {
                doc,
                request,
                message: None,
            },
        ) {
            Reply::Changed { heads, .. } => heads,
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

fn shared_doc(pair: &mut Pair) -> DocumentId {
    let doc = match pair.command(
        0,
        Command::Create {
            initial: Some(serde_json::json!({"song": "first"})),
            priority: 0,
            title: None,
        },
    ) {
        Reply::Created { doc, .. } => doc,
        other => panic!("unexpected reply {other:?}"),
    };
    pair.run();
    assert_eq!(
        pair.heads(0, doc),
        pair.heads(1, doc),
        "set-up: both have it"
    );
    doc
}

/// Alice edits; her push is still on its way (held) when her announcement reaches Bob.
/// Returns the new heads.
fn overtaken_push(pair: &mut Pair, doc: DocumentId) -> Vec<ChangeHash> {
    pair.hold[0] = true;
    let heads = pair.set(0, doc, "second");
    pair.run();
    assert_ne!(
        pair.heads(1, doc),
        pair.heads(0, doc),
        "bob has not seen it yet"
    );
    heads
}

#[test]
fn an_announcement_of_missing_heads_makes_bob_ask_at_once() {
    let mut pair = Pair::new();
    let doc = shared_doc(&mut pair);
    let new_heads = overtaken_push(&mut pair, doc);

    let before = pair.sent[1];
    pair.feed(
        1,
        Input::HeadsAnnounced {
            doc,
            heads: new_heads,
            from: Some(LINK),
        },
    );
    assert!(pair.sent[1] > before, "bob sent alice a sync message");
    pair.release();
    assert_eq!(pair.heads(1, doc), pair.heads(0, doc));
}

#[test]
fn a_relayed_announcement_syncs_with_connected_peers() {
    let mut pair = Pair::new();
    let doc = shared_doc(&mut pair);
    let new_heads = overtaken_push(&mut pair, doc);

    // The announcer is not a connection of bob's (relayed through the mesh).
    let before = pair.sent[1];
    pair.feed(
        1,
        Input::HeadsAnnounced {
            doc,
            heads: new_heads,
            from: None,
        },
    );
    assert!(pair.sent[1] > before, "bob asked the peer he has");
    pair.release();
    assert_eq!(pair.heads(1, doc), pair.heads(0, doc));
}

#[test]
fn announcements_of_known_heads_or_unknown_documents_send_nothing() {
    let mut pair = Pair::new();
    let doc = shared_doc(&mut pair);
    let heads = pair.heads(0, doc);
    let before = pair.sent[1];
    pair.feed(
        1,
        Input::HeadsAnnounced {
            doc,
            heads,
            from: Some(LINK),
        },
    );
    let unknown = DocumentId::from_bytes([9; 16]);
    pair.feed(
        1,
        Input::HeadsAnnounced {
            doc: unknown,
            heads: Vec::new(),
            from: None,
        },
    );
    assert_eq!(pair.sent[1], before, "nothing to ask for");
    assert!(pair.wire.is_empty());
}

fn open_conflicts(pair: &Pair, i: usize, doc: DocumentId) -> Option<(u64, Vec<String>)> {
    let meta = pair.repos[i].catalog().get(&doc).expect("catalogued");
    meta.open_conflicts
        .as_ref()
        .map(|open| (open.count, open.paths.clone()))
}

#[test]
fn the_catalog_keeps_each_document_s_open_conflicts_up_to_date() {
    let mut pair = Pair::new();
    let doc = shared_doc(&mut pair);
    // Never conflicted: nothing kept, and nothing logged (which means none open).
    assert_eq!(open_conflicts(&pair, 0, doc), None);
    assert_eq!(pair.repos[0].catalog()[&doc].conflicts_logged, 0);
    // Both set the song while apart: both hold the conflict once they meet.
    pair.hold = [true, true];
    pair.set(0, doc, "Alice's pick");
    pair.set(1, doc, "Bob's pick");
    pair.release();
    for i in 0..2 {
        assert_eq!(
            open_conflicts(&pair, i, doc),
            Some((1, vec!["/song".to_owned()])),
            "repo {i}"
        );
    }
    // Writing one value settles it, here and, once synced, there.
    pair.set(0, doc, "Bob's pick");
    pair.run();
    for i in 0..2 {
        assert_eq!(open_conflicts(&pair, i, doc), Some((0, vec![])), "repo {i}");
    }
}

/// A sync message whose bloom filter claims an entry but holds no bits: automerge 0.12
/// decodes it, then divides by zero when it consults the filter to answer (which it does
/// when the sender's heads are not empty).
fn bitless_bloom() -> Vec<u8> {
    let mut bytes = vec![0x42, 0x01]; // sync message, version 1; one head
    bytes.extend([0xab; 32]); // a head we do not have
    bytes.extend([
        0x00, // no needs
        0x01, // one "have"
        0x00, // no last-sync heads
        0x03, 0x01, 0x00, 0x07, // bloom filter: 1 entry, 0 bits per entry, 7 probes, no bits
        0x00, // no changes
    ]);
    bytes
}

/// Found by the `automerge_sync` fuzz target: the message used to panic the engine while
/// it answered. It now costs the peer its connection, as any malformed message does.
#[test]
fn a_sync_message_automerge_cannot_answer_costs_the_peer_its_connection() {
    let mut pair = Pair::new();
    let doc = shared_doc(&mut pair);
    let bytes = crate::wire::Message::Sync {
        sender_id: PeerId::new("alice"),
        target_id: PeerId::new("bob"),
        document_id: doc,
        data: bitless_bloom(),
    }
    .encode();
    let outputs = pair.repos[1].handle(
        NOW,
        &mut pair.rng,
        Input::MessageReceived { conn: LINK, bytes },
    );
    assert!(
        outputs.iter().any(|output| matches!(
            output,
            Output::Disconnect {
                conn: LINK,
                misbehaved: true,
                ..
            }
        )),
        "{outputs:?}"
    );
}
