//! peerdoc's core: identifiers, the storage abstraction, the automerge-repo wire protocol,
//! whole-repo reconciliation, document-model helpers and the sync engine — with no IO,
//! no async runtime, no clock and no OS randomness.
//!
//! The engine is [`repo::Repo`], a state machine: feed it [`repo::Input`]s together with
//! the current time and an rng; it returns [`repo::Output`]s (frames to send, storage
//! operations, replies, events) for its driver to perform. The `peerdoc-node` crate
//! drives it with tokio, sled and libp2p; `peerdoc-sim` drives many of them in a seeded
//! simulation.
//!
//! # A typical workflow: two peers, one document
//!
//! ```
//! use std::collections::VecDeque;
//! use peerdoc_core::repo::*;
//! use peerdoc_core::{ConnectionId, MemoryStorage, PeerId, Storage};
//! use rand::SeedableRng;
//!
//! struct Peer { repo: Repo, store: MemoryStorage }
//!
//! /// Runs every output: storage inline (in order), frames into `wire`, replies returned.
//! fn feed(peer: &mut Peer, rng: &mut rand_chacha::ChaCha8Rng, input: Input,
//!         wire: &mut VecDeque<Vec<u8>>) -> Vec<Result<Reply, RepoError>> {
//!     let (mut inputs, mut replies) = (VecDeque::from([input]), Vec::new());
//!     while let Some(input) = inputs.pop_front() {
//!         for output in peer.repo.handle(1_700_000_000_000, rng, input) {
//!             match output {
//!                 Output::Storage { id, op } => {
//!                     let result = match op {
//!                         StorageOp::LoadRange { prefix } => peer.store.range(&prefix).map(StorageResult::Range),
//!                         StorageOp::Load { key } => peer.store.get(&key).map(StorageResult::Value),
//!                         StorageOp::Write(batch) => peer.store.write(batch).map(|_| StorageResult::Written),
//!                     };
//!                     inputs.push_back(Input::StorageCompleted { id, result });
//!                 }
//!                 Output::Send { bytes, .. } => wire.push_back(bytes),
//!                 Output::Reply { result, .. } => replies.push(result),
//!                 _ => {} // ticks, events, disconnects: a real driver handles these
//!             }
//!         }
//!     }
//!     replies
//! }
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
//! let new_peer = |name: &str| Peer {
//!     repo: Repo::new(RepoConfig::new(PeerId::new(name))),
//!     store: MemoryStorage::new(),
//! };
//! let (mut planner, mut photographer) = (new_peer("planner"), new_peer("photographer"));
//! let (mut to_planner, mut to_photographer) = (VecDeque::new(), VecDeque::new());
//! feed(&mut planner, &mut rng, Input::Start, &mut to_photographer);
//! feed(&mut photographer, &mut rng, Input::Start, &mut to_planner);
//!
//! // The planner creates the run-of-show; the reply comes once it is durable.
//! let create = Command::Create {
//!     initial: Some(serde_json::json!({"firstDance": "21:00"})),
//!     priority: 10,
//!     title: Some("Run of show".into()),
//! };
//! let replies = feed(&mut planner, &mut rng, Input::Command { id: CommandId(1), command: create }, &mut to_photographer);
//! let Ok(Reply::Created { doc, .. }) = &replies[0] else { panic!("{replies:?}") };
//! let doc = *doc;
//!
//! // Connect them (the planner dials) and shuttle frames until both are quiet.
//! let conn = ConnectionId(1);
//! feed(&mut photographer, &mut rng, Input::ConnectionOpened { conn, initiator: false }, &mut to_planner);
//! feed(&mut planner, &mut rng, Input::ConnectionOpened { conn, initiator: true }, &mut to_photographer);
//! while !(to_planner.is_empty() && to_photographer.is_empty()) {
//!     while let Some(bytes) = to_photographer.pop_front() {
//!         feed(&mut photographer, &mut rng, Input::MessageReceived { conn, bytes }, &mut to_planner);
//!     }
//!     while let Some(bytes) = to_planner.pop_front() {
//!         feed(&mut planner, &mut rng, Input::MessageReceived { conn, bytes }, &mut to_photographer);
//!     }
//! }
//!
//! // The photographer now holds the document.
//! let read = Command::Read { doc, heads: None };
//! let replies = feed(&mut photographer, &mut rng, Input::Command { id: CommandId(2), command: read }, &mut to_planner);
//! let Ok(Reply::Json { value, .. }) = &replies[0] else { panic!("{replies:?}") };
//! assert_eq!(value["firstDance"], "21:00");
//! ```

#![deny(missing_docs)]

pub mod endpoint;
pub mod ids;
pub mod model;
pub mod persist;
pub mod reconcile;
pub mod repo;
pub mod storage;
pub mod wire;

pub use ids::{ConnectionId, DocumentId, DocumentIdError, HeadsDigest, PeerId, StorageId};
pub use storage::{MemoryStorage, Storage, StorageError, StorageKey, WriteBatch, WriteOp};
