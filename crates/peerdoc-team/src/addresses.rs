//! Where a member can be reached: a device's own libp2p addresses, signed by its device
//! key, so that members can find each other without mDNS.
//!
//! Each device signs an [`AddressBody`] (team, device, time, addresses) and the daemon
//! shares it through the team's membership document. Nothing in that document is
//! trusted: a record counts only when its signature is the device's own, it names this
//! team, and (the daemon checks) the device is a current member. A member cannot claim
//! addresses for another device, and an address that leads elsewhere fails the
//! transport's handshake anyway, since every address ends in the device's `/p2p/` id.
//!
//! Bounds: at most [`MAX_DEVICE_ADDRS`] addresses of at most [`MAX_ADDR_CHARS`]
//! characters each, and a record of at most [`MAX_ADDRESS_RECORD`] bytes.

use libp2p_identity::{KeyType, Keypair, PeerId};
use serde::{Deserialize, Serialize};

use crate::encoding::base64_bytes;
use crate::error::TeamError;
use crate::ids::TeamId;
use crate::ops::public_key_of;

/// Addresses one device may publish.
pub const MAX_DEVICE_ADDRS: usize = 8;
/// Longest address, in characters.
pub const MAX_ADDR_CHARS: usize = 256;
/// Largest signed body, in bytes.
pub const MAX_ADDRESS_RECORD: usize = 4096;

/// Keeps a signature over an address record from ever verifying as anything else.
const ADDRESS_DOMAIN: &[u8] = b"peerdoc team addresses v1\0";

/// What a device says about where it can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    /// The team it is a member of.
    pub team: TeamId,
    /// The device.
    pub device: PeerId,
    /// Its clock when it signed (the newer record of one device wins).
    pub at_ms: u64,
    /// Its libp2p addresses, each ending in `/p2p/<device>`.
    pub addrs: Vec<String>,
    /// It is a hub: the team's meeting point on Wi-Fi that keeps devices apart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hub: bool,
}

/// An [`AddressBody`] as signed, with the device's signature over it. Serialised as
/// `{"addresses": base64, "sig": base64}` (other field names than a [`SignedOp`]'s, so
/// that neither is ever taken for the other).
///
/// [`SignedOp`]: crate::SignedOp
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAddresses {
    #[serde(with = "base64_bytes")]
    addresses: Vec<u8>,
    #[serde(with = "base64_bytes")]
    sig: Vec<u8>,
}

impl SignedAddresses {
    /// Signs `body` with `keypair`, which must be `body.device`'s key.
    ///
    /// # Errors
    /// The key is not `body.device`'s or not Ed25519, or the record is out of bounds.
    pub fn sign(keypair: &Keypair, body: &AddressBody) -> Result<Self, TeamError> {
        if keypair.key_type() != KeyType::Ed25519 {
            return Err(TeamError::UnsupportedKey);
        }
        if keypair.public().to_peer_id() != body.device {
            return Err(TeamError::Signing(
                "the key does not belong to the device whose addresses these are".into(),
            ));
        }
        check(body)?;
        let bytes = serde_json::to_vec(body).map_err(|e| TeamError::MalformedOp(e.to_string()))?;
        if bytes.len() > MAX_ADDRESS_RECORD {
            return Err(TeamError::OpTooLarge(bytes.len()));
        }
        let sig = keypair
            .sign(&message(&bytes))
            .map_err(|e| TeamError::Signing(e.to_string()))?;
        Ok(Self {
            addresses: bytes,
            sig,
        })
    }

    /// The body, once the signature is checked to be its device's and it names `team`.
    ///
    /// # Errors
    /// Too large, malformed, out of bounds, another team's, or a bad signature.
    pub fn verify(&self, team: &TeamId) -> Result<AddressBody, TeamError> {
        if self.addresses.len() > MAX_ADDRESS_RECORD || self.sig.len() > 128 {
            return Err(TeamError::OpTooLarge(self.addresses.len()));
        }
        let body: AddressBody = serde_json::from_slice(&self.addresses)
            .map_err(|e| TeamError::MalformedOp(e.to_string()))?;
        check(&body)?;
        if body.team != *team {
            return Err(TeamError::WrongTeam);
        }
        let key = public_key_of(&body.device)?;
        if !key.verify(&message(&self.addresses), &self.sig) {
            return Err(TeamError::BadSignature);
        }
        Ok(body)
    }
}

fn message(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(ADDRESS_DOMAIN.len() + body.len());
    message.extend_from_slice(ADDRESS_DOMAIN);
    message.extend_from_slice(body);
    message
}

/// Bounds, and every address ending in the device's own id.
fn check(body: &AddressBody) -> Result<(), TeamError> {
    if body.addrs.len() > MAX_DEVICE_ADDRS {
        return Err(TeamError::MalformedOp(format!(
            "{} addresses, at most {MAX_DEVICE_ADDRS}",
            body.addrs.len()
        )));
    }
    let suffix = format!("/p2p/{}", body.device);
    for addr in &body.addrs {
        if addr.chars().count() > MAX_ADDR_CHARS || !addr.starts_with('/') {
            return Err(TeamError::MalformedOp(
                "an address is not a multiaddr".into(),
            ));
        }
        if !addr.ends_with(&suffix) {
            return Err(TeamError::MalformedOp(
                "an address does not end in its device's /p2p/ id".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Keypair {
        Keypair::ed25519_from_bytes([n; 32]).expect("a key")
    }

    fn body(device: &Keypair, team: TeamId) -> AddressBody {
        let id = device.public().to_peer_id();
        AddressBody {
            team,
            device: id,
            at_ms: 1,
            addrs: vec![format!("/ip4/198.18.0.7/tcp/7410/p2p/{id}")],
            hub: false,
        }
    }

    #[test]
    fn a_device_signs_its_own_addresses_and_nobody_else_s() -> Result<(), TeamError> {
        let team = TeamId::from_bytes([7; 16]);
        let phone = key(1);
        let other = key(2);
        let signed = SignedAddresses::sign(&phone, &body(&phone, team))?;
        let text =
            serde_json::to_string(&signed).map_err(|e| TeamError::MalformedOp(e.to_string()))?;
        let back: SignedAddresses =
            serde_json::from_str(&text).map_err(|e| TeamError::MalformedOp(e.to_string()))?;
        assert_eq!(back.verify(&team)?, body(&phone, team));
        // Another team's record, or one signed for someone else, does not count.
        assert!(matches!(
            back.verify(&TeamId::from_bytes([8; 16])),
            Err(TeamError::WrongTeam)
        ));
        assert!(SignedAddresses::sign(&other, &body(&phone, team)).is_err());
        // A signature moved onto another body fails.
        let forged = SignedAddresses {
            addresses: serde_json::to_vec(&body(&other, team))
                .map_err(|e| TeamError::MalformedOp(e.to_string()))?,
            sig: signed.sig.clone(),
        };
        assert!(matches!(forged.verify(&team), Err(TeamError::BadSignature)));
        Ok(())
    }

    #[test]
    fn addresses_must_be_the_device_s_own_and_few() {
        let team = TeamId::from_bytes([7; 16]);
        let phone = key(1);
        let mut elsewhere = body(&phone, team);
        let stranger = key(3).public().to_peer_id();
        elsewhere.addrs = vec![format!("/ip4/198.18.0.9/tcp/7410/p2p/{stranger}")];
        assert!(SignedAddresses::sign(&phone, &elsewhere).is_err());
        let mut many = body(&phone, team);
        many.addrs = vec![many.addrs[0].clone(); MAX_DEVICE_ADDRS + 1];
        assert!(SignedAddresses::sign(&phone, &many).is_err());
        // A signed op's JSON is not an address record.
        let op = r#"{"body": "e30=", "sig": "AA=="}"#;
        assert!(serde_json::from_str::<SignedAddresses>(op).is_err());
    }
}
