//! peerdoc's LAN transport: moves opaque byte frames between peerdoc devices.
//!
//! Devices find each other with mDNS (or explicit addresses), announce changes over
//! gossipsub, and exchange sync frames over one long-lived, ordered stream per peer
//! (`/peerdoc/sync/1`). A team pre-shared key keeps strangers from completing a
//! connection at all. The crate knows nothing about documents: the sync engine decides
//! what to send, this crate moves the bytes and reports who is there.
//!
//! The API follows a handle / event-loop split: [`Network::new`] returns a cloneable
//! [`NetHandle`] for commands, a bounded receiver of [`NetEvent`]s, and the
//! [`NetEventLoop`] that owns the swarm; the caller spawns the loop on its runtime.
//!
//! ```no_run
//! use bytes::Bytes;
//! use peerdoc_net::{NetConfig, NetEvent, Network};
//!
//! # async fn example() -> Result<(), peerdoc_net::NetError> {
//! let keypair = peerdoc_net::load_or_create_identity("data/identity.key".as_ref())?;
//! let config = NetConfig {
//!     team_key: Some([7; 32]),
//!     ..NetConfig::default()
//! };
//! let (net, mut events, event_loop) = Network::new(config, keypair)?;
//! tokio::spawn(event_loop.run());
//! while let Some(event) = events.recv().await {
//!     match event {
//!         NetEvent::PeerConnected { peer, session, .. } => {
//!             // Frames name the session they belong to: one meant for a stream that
//!             // has since been replaced is dropped, never sent on the new one.
//!             net.send_frame(peer, session, Bytes::from_static(b"hello"))?;
//!         }
//!         NetEvent::Frame { peer, session, bytes } => { /* hand to the sync engine */ }
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/networking.md` for the protocols, what the team key protects, and the
//! tuning figures.

#![deny(missing_docs)]

mod config;
mod dial_policy;
mod error;
mod event;
mod event_loop;
mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod identity;
mod pnet;
mod rate;
mod session;
mod sever;
mod swarm;

pub use config::NetConfig;
pub use error::NetError;
pub use event::{
    Discovery, Misbehaviour, NetEvent, PeerInfo, PublishOutcome, SessionId, TransportKind,
};
pub use event_loop::{NetEventLoop, Network};
pub use handle::NetHandle;
pub use identity::load_or_create_identity;
/// Re-exported so that callers name the same libp2p types this crate uses.
pub use libp2p::{Multiaddr, PeerId, identity::Keypair, multiaddr};
pub use rate::TokenBucket;
pub use swarm::SYNC_PROTOCOL;
