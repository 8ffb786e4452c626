//! peerdoc's runtime: drives the sans-IO sync engine ([`peerdoc_core::repo::Repo`])
//! over sled storage ([`peerdoc_store`]) and libp2p ([`peerdoc_net`]), and offers the
//! API that applications embed.
//!
//! [`Node::start`] opens the data directory, then runs three parts:
//!
//! - the **driver** task, which owns the engine and feeds it commands, network events,
//!   storage completions and timer ticks from one `select!` loop;
//! - the **storage thread**, which runs storage operations in order against sled, with
//!   group commit (consecutive writes share one durable write);
//! - the **network** event loop of `peerdoc-net`.
//!
//! Applications talk to it through [`NodeHandle`] (cheap to clone), and watch it with
//! [`NodeHandle::subscribe`]. A write returns once it is durable against a process
//! crash. `docs/embedding.md` describes the threading model and what is not wired yet.
//!
//! ```
//! use peerdoc_node::{Node, NodeConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), peerdoc_node::NodeError> {
//! let dir = tempfile::tempdir().expect("temporary directory");
//! // Loopback networking, mDNS off: nothing leaves this machine.
//! let node = Node::start(NodeConfig::loopback(dir.path())).await?;
//!
//! let doc = node
//!     .create(serde_json::json!({"firstDance": "21:00"}), 10, Some("Run of show".into()))
//!     .await?;
//! node.edit(
//!     doc,
//!     vec![peerdoc_core::model::EditOp::Set {
//!         path: "/firstDance".into(),
//!         value: serde_json::json!("21:15"),
//!     }],
//!     Some("first dance moved".into()),
//! )
//! .await?; // durable now
//! assert_eq!(node.read(doc).await?["firstDance"], "21:15");
//!
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod announce;
mod attach;
mod config;
mod departed;
mod driver;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod metrics;
mod node;
mod patches;
mod shared_store;
mod storage_worker;
mod types;

pub use attach::{AttachRole, AttachedConnection};
pub use config::{NodeConfig, PostgresStore};
pub use departed::{DepartedPeer, MAX_DEPARTED};
pub use driver::AccessPolicy;
pub use error::NodeError;
pub use handle::NodeHandle;
pub use metrics::{
    HistogramSnapshot, NodeMetrics, SYNC_LATENCY_BUCKETS, StorageFailure, StoreRollback,
};
pub use node::Node;
pub use patches::MAX_EVENT_PATCHES;
pub use peerdoc_store::{Durability, StoreSecret};
pub use peerdoc_store_postgres::PgConfig;
pub use types::{
    Conflicts, Departure, DocumentSummary, DocumentSync, MAX_CHANGED_PATHS, NodeEvent, NodeStatus,
    Origin, PeerDocStatus, PeerStatus, failure_in_words,
};

pub use peerdoc_core::model::EditOp;
pub use peerdoc_core::persist::{CloudDurability, ReceiptStatus};
pub use peerdoc_core::repo::ChangeRequest;
/// Re-exported so that embedders name the same types without extra dependencies.
pub use peerdoc_core::{ConnectionId, DocumentId};
pub use peerdoc_net::{Multiaddr, NetConfig, PeerId, multiaddr};
