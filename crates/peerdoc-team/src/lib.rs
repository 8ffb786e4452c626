//! Team membership for peerdoc: who may sync, with which role, and how a new device joins.
//!
//! A team is a set of devices, each named by its libp2p [`PeerId`](libp2p_identity::PeerId).
//! Membership is an op-based CRDT: admins sign [`OpKind`] ops (add, set role, rename, revoke,
//! rotate the transport key), devices exchange them, and every replica folds the same op set
//! into the same [`Membership`], whatever the order they arrived in. Revocation is final.
//!
//! A device joins with an [`InviteCode`]: 80 secret bits plus the inviter's addresses, read
//! aloud, typed or scanned as a QR code. The joiner sends a sealed [`JoinRequest`]; the
//! inviter answers with a sealed [`Welcome`] carrying the team's ops and transport key.
//!
//! Everything here is pure: no IO, no clock, no OS randomness. Time (`now_ms`) and an rng
//! are inputs; the daemon does the file and network IO.
//!
//! # Key rotation
//!
//! Every member holds the team's transport key, the pre-shared key of its private network.
//! Revoking a device does not take that key back, so an admin then calls
//! [`TeamState::rotate_key`]: a [`OpKind::RotateKey`] op carries a fresh key for the next
//! epoch, sealed to each current member's device key (its Ed25519 identity converted to
//! X25519), never in the clear, so a revoked device that still receives the op in a race
//! learns nothing from it. Members call [`TeamState::learn_keys`] after merging ops; a member
//! offline during the rotation learns the key from whichever member it meets next, since the
//! op travels with the others. A device that joins later gets the current key in its
//! [`Welcome`].
//!
//! For keys, "after the revocation" means: a member that merged both the revocation and the
//! rotation dials only with the new key ([`TeamState::transport_key`]); it accepts the older
//! keys it holds inbound ([`TeamState::accepted_keys`]) for a grace period the daemon
//! chooses, so members that missed the rotation can still reach the team and catch up. Once
//! that period ends, the revoked device, which keeps only old keys, cannot complete a
//! handshake with any such member; until then, only the daemon's check of its peer id
//! against the membership keeps it out. [`Membership::needs_key_rotation`] tells when a
//! revoked device may still hold the current key.
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
//! let addrs = vec!["198.18.0.20:7410".parse()?];
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
//!
//! # An admin revokes a device and rotates the key
//!
//! ```
//! use libp2p_identity::Keypair;
//! use peerdoc_team::{OpKind, Role, TeamState};
//! use rand::SeedableRng;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
//! let now = 1_700_000_000_000;
//! let admin = Keypair::ed25519_from_bytes([1u8; 32])?;
//! let laptop = Keypair::ed25519_from_bytes([2u8; 32])?;
//! let lost_phone = Keypair::ed25519_from_bytes([3u8; 32])?;
//! let mut team = TeamState::create(&admin, "Clinic", "reception", now, &mut rng)?;
//! for (device, name) in [(&laptop, "laptop"), (&lost_phone, "phone")] {
//!     let device = device.public().to_peer_id();
//!     let add = OpKind::Add { device, name: name.into(), role: Role::Editor };
//!     team.sign_and_merge(&admin, now, add)?;
//! }
//! // Stand-ins for the states the laptop and the phone got in their welcomes.
//! let (mut on_laptop, mut on_phone) = (team.clone(), team.clone());
//! let old_key = *team.transport_key();
//!
//! let revoke = OpKind::Revoke { device: lost_phone.public().to_peer_id() };
//! team.sign_and_merge(&admin, now, revoke)?;
//! team.rotate_key(&admin, now, &mut rng)?; // returns the op to relay, like any other
//! assert_eq!(team.current_epoch(), 1);
//! assert_ne!(team.transport_key(), &old_key);
//!
//! // The laptop merges the ops and opens the key sealed to it; it dials with the new key
//! // and accepts the old one inbound for a while.
//! on_laptop.merge(team.ops());
//! assert!(on_laptop.learn_keys(&laptop));
//! assert_eq!(on_laptop.current_key(), team.current_key());
//! assert_eq!(on_laptop.accepted_keys(), [*team.transport_key(), old_key]);
//!
//! // The phone may see the same ops, but nothing in them is sealed to it.
//! on_phone.merge(team.ops());
//! assert!(!on_phone.learn_keys(&lost_phone));
//! assert_eq!(on_phone.current_key(), None);
//! assert_eq!(on_phone.transport_key(), &old_key);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod addresses;
mod encoding;
mod enrol;
mod error;
mod ids;
mod invite;
mod membership;
mod name;
mod ops;
mod role;
mod sealed_key;
mod state;

pub use addresses::{
    AddressBody, MAX_ADDR_CHARS, MAX_ADDRESS_RECORD, MAX_DEVICE_ADDRS, SignedAddresses,
};
pub use enrol::{
    JoinRequest, MAX_FRAME, Refusal, Reply, Welcome, open_reply, open_request, plain_refusal,
    request_tag, seal_reply, seal_request,
};
pub use error::{EnrolError, InviteCodeError, TeamError};
pub use ids::{OpId, TeamId};
pub use invite::{InviteCode, InviteSecret, InviteTag, MAX_INVITE_ADDRS};
pub use membership::{MAX_MEMBERS, MAX_OPS, Member, Membership, Revocation};
pub use name::{MAX_NAME_CHARS, validate_name};
pub use ops::{MAX_OP_BODY, MAX_ROTATE_KEY_BODY, OpBody, OpKind, SignedOp};
pub use role::Role;
pub use state::{Invite, InviteStatus, MAX_ACCEPTED_KEYS, MAX_INVITE_USES, MAX_INVITES, TeamState};

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
