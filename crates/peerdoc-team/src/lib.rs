//! Team membership for peerdoc: who may sync, with which role, and how a new device joins.
//!
//! A team is a set of devices, each named by its libp2p [`PeerId`](libp2p_identity::PeerId).
//! Membership is an op-based CRDT: admins sign [`OpKind`] ops (add, set role, rename, revoke),
//! devices exchange them, and every replica folds the same op set into the same
//! [`Membership`], whatever the order they arrived in. Revocation is final.
//!
//! A device joins with an [`InviteCode`]: 80 secret bits plus the inviter's addresses, read
//! aloud, typed or scanned as a QR code. The joiner sends a sealed [`JoinRequest`]; the
//! inviter answers with a sealed [`Welcome`] carrying the team's ops and transport key.
//!
//! Everything here is pure: no IO, no clock, no OS randomness. Time (`now_ms`) and an rng
//! are inputs; the daemon does the file and network IO.
//!
//! # A device joins a team
//!
//! ```
//! use libp2p_identity::Keypair;
//! use peerdoc_team::{
//!     InviteCode, JoinRequest, Refusal, Reply, Role, TeamState, open_reply, open_request,
//!     plain_refusal, request_tag, seal_reply, seal_request,
//! };
//! use rand::SeedableRng;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The daemon passes the OS rng; a seeded one makes this example replayable.
//! let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
//! let now = 1_700_000_000_000;
//!
//! // The admin founds the team and issues a single-use invite valid for an hour.
//! let admin = Keypair::ed25519_from_bytes([1u8; 32])?;
//! let mut team = TeamState::create(&admin, "Clinic", "reception", now, &mut rng)?;
//! let addrs = vec!["192.168.1.20:7410".parse()?];
//! let (_invite, code) =
//!     team.new_invite(&admin, Role::Editor, None, Some(3_600_000), 1, now, &mut rng, addrs)?;
//! let text = code.to_string(); // read aloud, or shown as `code.qr_terminal()`
//!
//! // The joiner types the code and sends a sealed request to one of its addresses.
//! let laptop = Keypair::ed25519_from_bytes([2u8; 32])?;
//! let laptop_id = laptop.public().to_peer_id();
//! let code = InviteCode::parse(&text.to_lowercase())?;
//! let request = JoinRequest { device: laptop_id, name: "laptop".into() };
//! let request_frame = seal_request(&code, &request, &mut rng)?;
//!
//! // The inviter finds the invite by its tag, admits the device and seals the welcome.
//! let tag = request_tag(&request_frame)?;
//! let reply_frame = match team.invite_secret(&tag).cloned() {
//!     None => plain_refusal(&Refusal::UnknownInvite),
//!     Some(secret) => {
//!         let request = open_request(&secret, &request_frame)?;
//!         let reply = match team.accept_join(&admin, &tag, &request, now + 1_000) {
//!             Ok(welcome) => Reply::Welcome(welcome),
//!             Err(refusal) => Reply::Refused(refusal),
//!         };
//!         seal_reply(&secret, &reply, &mut rng)?
//!     }
//! };
//!
//! // The joiner opens the welcome and now holds the same membership as the admin.
//! let Reply::Welcome(welcome) = open_reply(code.secret(), &reply_frame)? else {
//!     return Err("refused".into());
//! };
//! let joined = TeamState::from_welcome(welcome, &laptop_id)?;
//! assert_eq!(joined.membership(), team.membership());
//! assert_eq!(joined.membership().role_of(&laptop_id), Some(Role::Editor));
//! assert_eq!(joined.transport_key(), team.transport_key());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod encoding;
mod enrol;
mod error;
mod ids;
mod invite;
mod membership;
mod name;
mod ops;
mod role;
mod state;

pub use enrol::{
    JoinRequest, MAX_FRAME, Refusal, Reply, Welcome, open_reply, open_request, plain_refusal,
    request_tag, seal_reply, seal_request,
};
pub use error::{EnrolError, InviteCodeError, TeamError};
pub use ids::{OpId, TeamId};
pub use invite::{InviteCode, InviteSecret, InviteTag, MAX_INVITE_ADDRS};
pub use membership::{MAX_OPS, Member, Membership, Revocation};
pub use name::{MAX_NAME_CHARS, validate_name};
pub use ops::{MAX_OP_BODY, OpBody, OpKind, SignedOp};
pub use role::Role;
pub use state::{Invite, InviteStatus, MAX_INVITE_USES, MAX_INVITES, TeamState};

/// Deterministic keys and randomness for the tests.
#[cfg(test)]
pub(crate) mod test_support {
    use libp2p_identity::{Keypair, PeerId};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// The Ed25519 keypair whose secret is 32 times `seed`.
    pub(crate) fn keypair(seed: u8) -> Keypair {
        Keypair::ed25519_from_bytes([seed; 32]).expect("any 32 bytes are an Ed25519 secret")
    }

    /// The peer id of [`keypair`]`(seed)`.
    pub(crate) fn peer(seed: u8) -> PeerId {
        keypair(seed).public().to_peer_id()
    }

    /// A seeded ChaCha rng.
    pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }
}
