//! The enrolment handshake: a joiner holding an invite code asks the inviter to add it.
//!
//! The daemon does the IO: the joiner dials one of the code's addresses over plain TCP and
//! sends one length-prefixed frame, the inviter answers with one. Both frames are sealed with
//! XChaCha20-Poly1305 under a key hashed from the invite's 80-bit secret, which authenticates
//! both sides without a PAKE: guessing the secret offline from a captured frame costs 2^80
//! trials.
//!
//! Frames:
//! - request: `tag (8) · nonce (24) · ciphertext` (the tag lets the inviter find the invite);
//! - reply: `0x01 · nonce (24) · ciphertext`, or `0x00 · JSON refusal` in clear when the
//!   inviter does not know the tag and so cannot seal (see [`plain_refusal`]).

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use libp2p_identity::PeerId;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::encoding::hex_array;
use crate::{EnrolError, InviteCode, InviteSecret, InviteTag, MAX_OPS, Role, SignedOp, TeamId};

/// Largest enrolment frame, in bytes.
pub const MAX_FRAME: usize = 256 * 1024;

const TAG_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const AEAD_TAG_LEN: usize = 16;
const PLAIN_REFUSAL: u8 = 0x00;
const SEALED_REPLY: u8 = 0x01;
const REQUEST_AAD: &[u8] = b"peerdoc join request v1";
const REPLY_AAD: &[u8] = b"peerdoc join reply v1";

/// What a joining device asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The joining device's libp2p identity.
    pub device: PeerId,
    /// The name it proposes for itself (an invite made for a named device overrides it).
    pub name: String,
}

/// The inviter's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one per join, never stored: boxing would only add noise
pub enum Reply {
    /// The device is in: here is the team.
    Welcome(Welcome),
    /// The device was not let in.
    Refused(Refusal),
}

/// Everything a new member needs to start: the team's ops and its transport key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The team.
    pub team_id: TeamId,
    /// The team's name.
    pub team_name: String,
    /// The key of the team's private network: the current one, unless the inviter could not
    /// open it (then the newest it holds).
    #[serde(with = "hex_array")]
    pub transport_key: [u8; 32],
    /// The epoch of `transport_key` (0, the founding key, in welcomes from before rotation).
    #[serde(default)]
    pub key_epoch: u64,
    /// Every known membership op, the joiner's own `Add` included.
    pub ops: Vec<SignedOp>,
    /// The inviting device, to dial first.
    pub inviter: PeerId,
    /// The inviter's libp2p listen addresses as text; filled in by the daemon, which knows
    /// them ([`TeamState::accept_join`](crate::TeamState::accept_join) leaves it empty).
    pub inviter_addrs: Vec<String>,
    /// The joiner's role.
    pub role: Role,
    /// The joiner's name in the team.
    pub name: String,
}

impl fmt::Debug for Welcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Welcome")
            .field("team_id", &self.team_id)
            .field("team_name", &self.team_name)
            .field("transport_key", &"<redacted>")
            .field("key_epoch", &self.key_epoch)
            .field("ops", &self.ops.len())
            .field("inviter", &self.inviter)
            .field("inviter_addrs", &self.inviter_addrs)
            .field("role", &self.role)
            .field("name", &self.name)
            .finish()
    }
}

/// Why a join was refused. The Display text is meant for the person holding the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// The inviter knows no invite with this code.
    #[error("this invite code is not known here: check the code, or ask an admin for a new one")]
    UnknownInvite,
    /// The invite expired.
    #[error("this invite code has expired: ask an admin for a new one")]
    Expired,
    /// The invite was used as many times as allowed.
    #[error("this invite code was already used: ask an admin for a new one")]
    UsedUp,
    /// An admin cancelled the invite.
    #[error("this invite code was cancelled: ask an admin for a new one")]
    Revoked,
    /// The joining device was removed from the team, which is final.
    #[error("this device was removed from the team and cannot join again")]
    DeviceRemoved,
    /// The inviting device is no longer an admin.
    #[error("the device that made this code is no longer an admin: ask an admin for a new one")]
    InviterNotAdmin,
    /// Something else went wrong on the inviter's side.
    #[error("the inviting device could not add this one: {0}")]
    Internal(String),
}

/// Seals a join request for the invite in `code`: `tag · nonce · ciphertext`.
pub fn seal_request<R: CryptoRng + ?Sized>(
    code: &InviteCode,
    request: &JoinRequest,
    rng: &mut R,
) -> Result<Vec<u8>, EnrolError> {
    let secret = code.secret();
    let tag = secret.tag();
    let plaintext = serde_json::to_vec(request).map_err(|_| EnrolError::Malformed)?;
    let mut frame = Vec::with_capacity(TAG_LEN + NONCE_LEN + plaintext.len() + AEAD_TAG_LEN);
    frame.extend_from_slice(tag.as_bytes());
    seal_into(&mut frame, secret, REQUEST_AAD, &plaintext, rng)?;
    Ok(frame)
}

/// The invite tag at the start of a request frame, to look up the invite's secret.
pub fn request_tag(frame: &[u8]) -> Result<InviteTag, EnrolError> {
    if frame.len() > MAX_FRAME {
        return Err(EnrolError::FrameTooLarge);
    }
    let tag = frame
        .get(..TAG_LEN)
        .and_then(|bytes| <[u8; TAG_LEN]>::try_from(bytes).ok())
        .ok_or(EnrolError::Truncated)?;
    Ok(InviteTag::from_bytes(tag))
}

/// Opens a request frame with the invite's secret.
pub fn open_request(secret: &InviteSecret, frame: &[u8]) -> Result<JoinRequest, EnrolError> {
    if request_tag(frame)? != secret.tag() {
        return Err(EnrolError::Unauthenticated);
    }
    let plaintext = open(secret, REQUEST_AAD, &frame[TAG_LEN..])?;
    serde_json::from_slice(&plaintext).map_err(|_| EnrolError::Malformed)
}

/// Seals the inviter's reply: `0x01 · nonce · ciphertext`.
pub fn seal_reply<R: CryptoRng + ?Sized>(
    secret: &InviteSecret,
    reply: &Reply,
    rng: &mut R,
) -> Result<Vec<u8>, EnrolError> {
    if let Reply::Welcome(welcome) = reply
        && welcome.ops.len() > MAX_OPS
    {
        return Err(EnrolError::TooManyOps);
    }
    let plaintext = serde_json::to_vec(reply).map_err(|_| EnrolError::Malformed)?;
    let mut frame = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + AEAD_TAG_LEN);
    frame.push(SEALED_REPLY);
    seal_into(&mut frame, secret, REPLY_AAD, &plaintext, rng)?;
    Ok(frame)
}

/// A refusal in clear, for a request whose tag the inviter does not know (it has no secret
/// to seal with). It is unauthenticated: anyone on the path could forge it, so a joiner can
/// trust it no more than a dropped connection.
pub fn plain_refusal(refusal: &Refusal) -> Vec<u8> {
    let mut frame = vec![PLAIN_REFUSAL];
    // Serialising a `Refusal` to JSON cannot fail; an empty body would read as malformed.
    frame.extend(serde_json::to_vec(refusal).unwrap_or_default());
    frame.truncate(MAX_FRAME);
    frame
}

/// Opens the inviter's reply. A sealed reply is authenticated by the invite secret; a plain
/// refusal (see [`plain_refusal`]) comes back as [`Reply::Refused`] and is not.
pub fn open_reply(secret: &InviteSecret, frame: &[u8]) -> Result<Reply, EnrolError> {
    if frame.len() > MAX_FRAME {
        return Err(EnrolError::FrameTooLarge);
    }
    let (&kind, rest) = frame.split_first().ok_or(EnrolError::Truncated)?;
    match kind {
        PLAIN_REFUSAL => serde_json::from_slice(rest)
            .map(Reply::Refused)
            .map_err(|_| EnrolError::Malformed),
        SEALED_REPLY => {
            let plaintext = open(secret, REPLY_AAD, rest)?;
            let reply: Reply =
                serde_json::from_slice(&plaintext).map_err(|_| EnrolError::Malformed)?;
            if let Reply::Welcome(welcome) = &reply
                && welcome.ops.len() > MAX_OPS
            {
                return Err(EnrolError::TooManyOps);
            }
            Ok(reply)
        }
        _ => Err(EnrolError::UnknownKind),
    }
}

fn cipher(secret: &InviteSecret) -> XChaCha20Poly1305 {
    let key: [u8; 32] = Sha256::new()
        .chain_update(b"peerdoc invite key v1")
        .chain_update(secret.as_bytes())
        .finalize()
        .into();
    XChaCha20Poly1305::new(&key.into())
}

/// Associated data: the direction (so a request cannot be reflected as a reply) and the tag.
fn associated_data(direction: &[u8], secret: &InviteSecret) -> Vec<u8> {
    let mut aad = direction.to_vec();
    aad.extend_from_slice(secret.tag().as_bytes());
    aad
}

/// Appends `nonce · ciphertext` to `frame`.
fn seal_into<R: CryptoRng + ?Sized>(
    frame: &mut Vec<u8>,
    secret: &InviteSecret,
    direction: &[u8],
    plaintext: &[u8],
    rng: &mut R,
) -> Result<(), EnrolError> {
    if frame.len() + NONCE_LEN + plaintext.len() + AEAD_TAG_LEN > MAX_FRAME {
        return Err(EnrolError::FrameTooLarge);
    }
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let aad = associated_data(direction, secret);
    let ciphertext = cipher(secret)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| EnrolError::FrameTooLarge)?;
    frame.extend_from_slice(&nonce);
    frame.extend_from_slice(&ciphertext);
    Ok(())
}

/// Opens `nonce · ciphertext`.
fn open(secret: &InviteSecret, direction: &[u8], sealed: &[u8]) -> Result<Vec<u8>, EnrolError> {
    if sealed.len() < NONCE_LEN + AEAD_TAG_LEN {
        return Err(EnrolError::Truncated);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let aad = associated_data(direction, secret);
    cipher(secret)
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| EnrolError::Unauthenticated)
}

#[cfg(test)]
mod tests;
