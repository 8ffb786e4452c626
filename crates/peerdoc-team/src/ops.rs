//! Signed membership ops: what a device says about the team, and the proof that it said it.

use std::collections::BTreeMap;
use std::fmt;

use libp2p_identity::{KeyType, Keypair, PeerId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::encoding::{base64_bytes, hex_array};
use crate::{MAX_MEMBERS, OpId, Role, TeamError, TeamId, name, sealed_key};

/// Largest signed op body, in bytes, except for a [`OpKind::RotateKey`].
pub const MAX_OP_BODY: usize = 4 * 1024;

/// Largest [`OpKind::RotateKey`] body, in bytes. A rotation carries one sealed key per
/// current member, about 170 bytes each in JSON (a 52-character peer id and a 108-character
/// box), so [`MAX_MEMBERS`] of them take about 43 KiB: 64 KiB leaves room, while every
/// other op stays within [`MAX_OP_BODY`].
pub const MAX_ROTATE_KEY_BODY: usize = 64 * 1024;

/// Longest signature accepted (Ed25519 signatures are 64 bytes).
const MAX_SIGNATURE: usize = 128;

/// Prefix of every signed message, so an op signature can never be replayed as anything else.
const SIGNING_DOMAIN: &[u8] = b"peerdoc team op v1\0";

/// What an op changes.
///
/// Its `Debug` output names a rotation's recipients but not their sealed keys, which are
/// long and of no use to a reader.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum OpKind {
    /// Founds the team; its signer is the first admin.
    Genesis {
        /// The team's name.
        name: String,
        /// Random bytes, so two teams founded alike still differ.
        #[serde(with = "hex_array")]
        nonce: [u8; 16],
    },
    /// Adds a device, or updates the name and role of a current member.
    Add {
        /// The device.
        device: PeerId,
        /// Its name.
        name: String,
        /// Its role.
        role: Role,
    },
    /// Changes a member's role.
    SetRole {
        /// The device.
        device: PeerId,
        /// Its new role.
        role: Role,
    },
    /// Renames a member.
    Rename {
        /// The device.
        device: PeerId,
        /// Its new name.
        name: String,
    },
    /// Removes a device for good.
    Revoke {
        /// The device.
        device: PeerId,
    },
    /// Replaces the team's transport key: the key of `epoch` (the next one), sealed to each
    /// device that is a current member where the op applies, the signer included.
    RotateKey {
        /// The new key's epoch; the genesis key is epoch 0.
        epoch: u64,
        /// Base64 of the new key sealed to each device's identity key.
        sealed: BTreeMap<PeerId, String>,
    },
}

impl fmt::Debug for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpKind::Genesis { name, nonce } => f
                .debug_struct("Genesis")
                .field("name", name)
                .field("nonce", &hex::encode(nonce))
                .finish(),
            OpKind::Add { device, name, role } => f
                .debug_struct("Add")
                .field("device", device)
                .field("name", name)
                .field("role", role)
                .finish(),
            OpKind::SetRole { device, role } => f
                .debug_struct("SetRole")
                .field("device", device)
                .field("role", role)
                .finish(),
            OpKind::Rename { device, name } => f
                .debug_struct("Rename")
                .field("device", device)
                .field("name", name)
                .finish(),
            OpKind::Revoke { device } => f.debug_struct("Revoke").field("device", device).finish(),
            OpKind::RotateKey { epoch, sealed } => f
                .debug_struct("RotateKey")
                .field("epoch", epoch)
                .field("sealed_to", &sealed.keys().collect::<Vec<_>>())
                .finish_non_exhaustive(),
        }
    }
}

impl OpKind {
    /// The largest signed body allowed for this kind of op.
    fn max_body(&self) -> usize {
        match self {
            OpKind::RotateKey { .. } => MAX_ROTATE_KEY_BODY,
            _ => MAX_OP_BODY,
        }
    }
}

/// The signed content of an op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpBody {
    /// The team; `None` only in the genesis, whose hash defines the team id.
    pub team: Option<TeamId>,
    /// Lamport time: one more than the highest op the signer had applied.
    pub lamport: u64,
    /// The signer's wall clock when signing, informational only (never used for ordering).
    pub at_ms: u64,
    /// The signing device.
    pub by: PeerId,
    /// The change.
    pub kind: OpKind,
}

/// An op body in its canonical JSON encoding, with the signer's Ed25519 signature over it.
///
/// Serialised as `{"body": base64, "sig": base64}`. The bytes are kept as signed, so an op
/// relays unchanged whatever JSON library re-encodes it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOp {
    #[serde(with = "base64_bytes")]
    body: Vec<u8>,
    #[serde(rename = "sig", with = "base64_bytes")]
    signature: Vec<u8>,
}

impl SignedOp {
    /// Encodes `body` canonically and signs it with `keypair`, which must be `body.by`'s key.
    pub(crate) fn sign(keypair: &Keypair, body: &OpBody) -> Result<Self, TeamError> {
        if keypair.key_type() != KeyType::Ed25519 {
            return Err(TeamError::UnsupportedKey);
        }
        if keypair.public().to_peer_id() != body.by {
            return Err(TeamError::Signing(
                "the key does not belong to the op's signer".into(),
            ));
        }
        check_shape(body)?;
        let bytes =
            serde_json::to_vec(body).map_err(|err| TeamError::MalformedOp(err.to_string()))?;
        if bytes.len() > body.kind.max_body() {
            return Err(TeamError::OpTooLarge(bytes.len()));
        }
        let signature = keypair
            .sign(&signing_message(&bytes))
            .map_err(|err| TeamError::Signing(err.to_string()))?;
        Ok(Self {
            body: bytes,
            signature,
        })
    }

    /// The op's id: a domain-separated hash of body and signature.
    pub fn id(&self) -> OpId {
        OpId::derive(&self.body, &self.signature)
    }

    /// The signed bytes (canonical JSON of an [`OpBody`]).
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The signature bytes.
    pub fn signature_bytes(&self) -> &[u8] {
        &self.signature
    }

    /// Decodes the body without checking the signature.
    pub fn body(&self) -> Result<OpBody, TeamError> {
        let len = self.body.len();
        if len > MAX_ROTATE_KEY_BODY {
            return Err(TeamError::OpTooLarge(len));
        }
        // The bound depends on the kind, known only once decoded: a body over the common
        // bound must decode as a kind allowed to be that large.
        match serde_json::from_slice::<OpBody>(&self.body) {
            Ok(body) if len <= body.kind.max_body() => Ok(body),
            Ok(_) => Err(TeamError::OpTooLarge(len)),
            Err(_) if len > MAX_OP_BODY => Err(TeamError::OpTooLarge(len)),
            Err(err) => Err(TeamError::MalformedOp(err.to_string())),
        }
    }

    /// Decodes the body, checks that it is well formed and that `body.by` signed it.
    pub fn verify(&self) -> Result<OpBody, TeamError> {
        let body = self.body()?;
        check_shape(&body)?;
        if self.signature.len() > MAX_SIGNATURE {
            return Err(TeamError::BadSignature);
        }
        let key = public_key_of(&body.by)?;
        if !key.verify(&signing_message(&self.body), &self.signature) {
            return Err(TeamError::BadSignature);
        }
        Ok(body)
    }

    /// Test hook: an op with arbitrary bytes.
    #[cfg(test)]
    pub(crate) fn from_parts(body: Vec<u8>, signature: Vec<u8>) -> Self {
        Self { body, signature }
    }
}

impl fmt::Debug for SignedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("SignedOp");
        out.field("id", &self.id());
        match self.body() {
            // Up to 64 KiB of sealed keys: show the decoded op instead.
            Ok(body) if matches!(body.kind, OpKind::RotateKey { .. }) => out.field("body", &body),
            _ => out.field("body", &String::from_utf8_lossy(&self.body)),
        };
        out.finish_non_exhaustive()
    }
}

/// Recovers the Ed25519 public key inlined in an identity-multihash peer id.
pub(crate) fn public_key_of(peer: &PeerId) -> Result<PublicKey, TeamError> {
    const IDENTITY_MULTIHASH: u64 = 0;
    let multihash = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return Err(TeamError::UnsupportedKey);
    }
    let key = PublicKey::try_decode_protobuf(multihash.digest())
        .map_err(|_| TeamError::UnsupportedKey)?;
    if key.key_type() != KeyType::Ed25519 || key.to_peer_id() != *peer {
        return Err(TeamError::UnsupportedKey);
    }
    Ok(key)
}

fn signing_message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_DOMAIN.len() + body.len());
    message.extend_from_slice(SIGNING_DOMAIN);
    message.extend_from_slice(body);
    message
}

/// Rules every op obeys whatever the team's state: only a genesis lacks a team id, names are
/// canonical, and a rotation holds at most [`MAX_MEMBERS`] well-formed sealed keys.
fn check_shape(body: &OpBody) -> Result<(), TeamError> {
    let is_genesis = matches!(body.kind, OpKind::Genesis { .. });
    if is_genesis != body.team.is_none() {
        return Err(TeamError::WrongTeam);
    }
    match &body.kind {
        OpKind::Genesis { name, .. } | OpKind::Add { name, .. } | OpKind::Rename { name, .. }
            if !name::is_canonical(name) =>
        {
            Err(TeamError::BadName(
                "names in ops must be trimmed, 1 to 64 printable characters",
            ))
        }
        OpKind::RotateKey { sealed, .. } if sealed.len() > MAX_MEMBERS => {
            Err(TeamError::TooManyRecipients {
                count: sealed.len(),
                max: MAX_MEMBERS,
            })
        }
        OpKind::RotateKey { sealed, .. }
            if !sealed
                .values()
                .all(|boxed| sealed_key::is_well_formed(boxed)) =>
        {
            Err(TeamError::MalformedOp(
                "a sealed key is not a sealed box".into(),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::keypair;

    fn add_body(by: &Keypair) -> OpBody {
        OpBody {
            team: Some(TeamId::from_bytes([7; 16])),
            lamport: 3,
            at_ms: 1_000,
            by: by.public().to_peer_id(),
            kind: OpKind::Add {
                device: keypair(9).public().to_peer_id(),
                name: "laptop".into(),
                role: Role::Editor,
            },
        }
    }

    #[test]
    fn signs_and_verifies() -> Result<(), TeamError> {
        let key = keypair(1);
        let body = add_body(&key);
        let op = SignedOp::sign(&key, &body)?;
        assert_eq!(op.verify()?, body);
        let json = serde_json::to_string(&op).map_err(|e| TeamError::MalformedOp(e.to_string()))?;
        let back: SignedOp =
            serde_json::from_str(&json).map_err(|e| TeamError::MalformedOp(e.to_string()))?;
        assert_eq!(back, op);
        assert_eq!(back.id(), op.id());
        Ok(())
    }

    #[test]
    fn rejects_tampering_and_wrong_signer() -> Result<(), TeamError> {
        let key = keypair(1);
        let op = SignedOp::sign(&key, &add_body(&key))?;
        for i in 0..op.body.len() {
            let mut body = op.body.clone();
            body[i] ^= 0x01;
            assert!(
                SignedOp::from_parts(body, op.signature.clone())
                    .verify()
                    .is_err()
            );
        }
        let mut signature = op.signature.clone();
        signature[0] ^= 0x80;
        assert_eq!(
            SignedOp::from_parts(op.body.clone(), signature).verify(),
            Err(TeamError::BadSignature)
        );
        // Someone else's key cannot sign in `by`'s name.
        let other = keypair(2);
        assert!(SignedOp::sign(&other, &add_body(&key)).is_err());
        Ok(())
    }

    #[test]
    fn debug_leaves_out_sealed_keys() -> Result<(), TeamError> {
        let key = keypair(1);
        let mut body = add_body(&key);
        let sealed = data_encoding::BASE64.encode(&[0x5A; crate::sealed_key::SEALED_LEN]);
        body.kind = OpKind::RotateKey {
            epoch: 3,
            sealed: BTreeMap::from([(body.by, sealed.clone())]),
        };
        let op = SignedOp::sign(&key, &body)?;
        let debug = format!("{op:?}");
        assert!(!debug.contains(&sealed), "{debug}");
        assert!(debug.contains("epoch: 3") && debug.contains(&body.by.to_string()));
        Ok(())
    }

    #[test]
    fn rejects_bad_shapes() {
        let key = keypair(1);
        let mut body = add_body(&key);
        body.team = None;
        assert_eq!(SignedOp::sign(&key, &body), Err(TeamError::WrongTeam));
        let mut body = add_body(&key);
        body.kind = OpKind::Rename {
            device: body.by,
            name: " padded".into(),
        };
        assert!(matches!(
            SignedOp::sign(&key, &body),
            Err(TeamError::BadName(_))
        ));
        let huge = SignedOp::from_parts(vec![b' '; MAX_OP_BODY + 1], vec![0; 64]);
        assert_eq!(huge.verify(), Err(TeamError::OpTooLarge(MAX_OP_BODY + 1)));
        // Only a rotation may be larger than `MAX_OP_BODY`, and none beyond its own bound.
        let mut padded = serde_json::to_vec(&add_body(&key)).expect("json");
        padded.resize(MAX_OP_BODY + 1, b' ');
        let padded = SignedOp::from_parts(padded, vec![0; 64]);
        assert_eq!(padded.body(), Err(TeamError::OpTooLarge(MAX_OP_BODY + 1)));
        let mut rotation = add_body(&key);
        rotation.kind = OpKind::RotateKey {
            epoch: 1,
            sealed: BTreeMap::new(),
        };
        let mut padded = serde_json::to_vec(&rotation).expect("json");
        padded.resize(MAX_OP_BODY + 1, b' ');
        let padded = SignedOp::from_parts(padded, vec![0; 64]);
        assert_eq!(padded.body(), Ok(rotation));
        let mut bytes = padded.body_bytes().to_vec();
        bytes.resize(MAX_ROTATE_KEY_BODY + 1, b' ');
        assert_eq!(
            SignedOp::from_parts(bytes, vec![0; 64]).body(),
            Err(TeamError::OpTooLarge(MAX_ROTATE_KEY_BODY + 1))
        );
        assert!(matches!(
            SignedOp::from_parts(b"{}".to_vec(), vec![0; 64]).verify(),
            Err(TeamError::MalformedOp(_))
        ));
    }
}
