//! Transport keys sealed to one device: an anonymous sealed box to the device's identity key.
//!
//! Devices have Ed25519 identities only, so a box is sealed to the X25519 form of the
//! recipient's key (the Edwards point mapped to Montgomery form; the secret is the scalar of
//! the Ed25519 seed, as in libsodium's `crypto_sign_ed25519_*_to_curve25519`). Sealing:
//!
//! - draw an ephemeral X25519 secret `e`, `E = e·B`; `P` is the recipient's X25519 key;
//! - `key · nonce = HKDF-SHA256(ikm = e·P, salt = E · P, info = DOMAIN)` (32 + 24 bytes);
//! - `box = E · XChaCha20-Poly1305(key, nonce, transport key, aad)`, 80 bytes, in base64;
//!
//! with `aad = DOMAIN · team id · epoch (u64 big-endian) · recipient peer id`, so a box
//! opens only for the team, epoch and device it was made for. The sender is anonymous here;
//! the op carrying the boxes is signed by an admin, which is what authenticates the key.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use data_encoding::BASE64;
use hkdf::Hkdf;
use libp2p_identity::{Keypair, PeerId};
use rand::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::ops::public_key_of;
use crate::{TeamError, TeamId};

/// Domain separation for the key derivation and the associated data.
const DOMAIN: &[u8] = b"peerdoc team key seal v1";

const EPHEMERAL_LEN: usize = 32;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const AEAD_TAG_LEN: usize = 16;

/// Length of a sealed box in bytes: ephemeral public key, then the encrypted key and its tag.
pub(crate) const SEALED_LEN: usize = EPHEMERAL_LEN + KEY_LEN + AEAD_TAG_LEN;

/// Length of a sealed box in padded base64, as carried in ops.
pub(crate) const SEALED_BASE64_LEN: usize = SEALED_LEN.div_ceil(3) * 4;

/// Seals `key` for `recipient`, for `team`'s key `epoch`. Fails when the recipient's id holds
/// no Ed25519 key, or one of small order (no device can hold its secret).
pub(crate) fn seal<R: CryptoRng + ?Sized>(
    key: &[u8; KEY_LEN],
    recipient: &PeerId,
    team: TeamId,
    epoch: u64,
    rng: &mut R,
) -> Result<String, TeamError> {
    let recipient_key = x25519_public_of(recipient)?;
    let mut ephemeral = [0u8; EPHEMERAL_LEN];
    rng.fill_bytes(&mut ephemeral);
    let ephemeral = StaticSecret::from(ephemeral);
    let ephemeral_public = PublicKey::from(&ephemeral);
    let shared = ephemeral.diffie_hellman(&recipient_key);
    if !shared.was_contributory() {
        return Err(TeamError::UnsupportedKey);
    }
    let (cipher, nonce) = derive(shared.as_bytes(), &ephemeral_public, &recipient_key);
    let aad = associated_data(team, epoch, recipient);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: key,
                aad: &aad,
            },
        )
        .map_err(|_| TeamError::SealedKeyInvalid)?;
    let mut sealed = Vec::with_capacity(SEALED_LEN);
    sealed.extend_from_slice(ephemeral_public.as_bytes());
    sealed.extend_from_slice(&ciphertext);
    Ok(BASE64.encode(&sealed))
}

/// Opens a box sealed to `keypair`'s device for `team`'s key `epoch`. Any malformed, altered
/// or misdirected box is [`TeamError::SealedKeyInvalid`].
pub(crate) fn open(
    sealed: &str,
    keypair: &Keypair,
    team: TeamId,
    epoch: u64,
) -> Result<[u8; KEY_LEN], TeamError> {
    if sealed.len() != SEALED_BASE64_LEN {
        return Err(TeamError::SealedKeyInvalid);
    }
    let sealed = BASE64
        .decode(sealed.as_bytes())
        .map_err(|_| TeamError::SealedKeyInvalid)?;
    let (ephemeral, ciphertext) = sealed
        .split_first_chunk::<EPHEMERAL_LEN>()
        .ok_or(TeamError::SealedKeyInvalid)?;
    let ephemeral = PublicKey::from(*ephemeral);
    let secret = x25519_secret_of(keypair)?;
    let own_public = PublicKey::from(&secret);
    let shared = secret.diffie_hellman(&ephemeral);
    if !shared.was_contributory() {
        return Err(TeamError::SealedKeyInvalid);
    }
    let (cipher, nonce) = derive(shared.as_bytes(), &ephemeral, &own_public);
    let aad = associated_data(team, epoch, &keypair.public().to_peer_id());
    let plaintext = cipher
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| TeamError::SealedKeyInvalid)?;
    <[u8; KEY_LEN]>::try_from(plaintext.as_slice()).map_err(|_| TeamError::SealedKeyInvalid)
}

/// Whether `sealed` has the shape of a sealed box (the fold's cheap check; opening is the
/// recipient's).
pub(crate) fn is_well_formed(sealed: &str) -> bool {
    sealed.len() == SEALED_BASE64_LEN
        && BASE64
            .decode(sealed.as_bytes())
            .is_ok_and(|bytes| bytes.len() == SEALED_LEN)
}

/// The X25519 form of the Ed25519 key inlined in `peer`.
fn x25519_public_of(peer: &PeerId) -> Result<PublicKey, TeamError> {
    let ed25519 = public_key_of(peer)?
        .try_into_ed25519()
        .map_err(|_| TeamError::UnsupportedKey)?;
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&ed25519.to_bytes())
        .map_err(|_| TeamError::UnsupportedKey)?;
    Ok(PublicKey::from(verifying.to_montgomery().to_bytes()))
}

/// The X25519 secret matching [`x25519_public_of`] for `keypair`'s device.
fn x25519_secret_of(keypair: &Keypair) -> Result<StaticSecret, TeamError> {
    let ed25519 = keypair
        .clone()
        .try_into_ed25519()
        .map_err(|_| TeamError::UnsupportedKey)?;
    let seed =
        <[u8; 32]>::try_from(ed25519.secret().as_ref()).map_err(|_| TeamError::UnsupportedKey)?;
    // `StaticSecret` clamps the scalar on use, as Ed25519 does when signing.
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    Ok(StaticSecret::from(signing.to_scalar_bytes()))
}

fn derive(
    shared: &[u8; 32],
    ephemeral: &PublicKey,
    recipient: &PublicKey,
) -> (XChaCha20Poly1305, [u8; NONCE_LEN]) {
    let mut salt = [0u8; 2 * 32];
    salt[..32].copy_from_slice(ephemeral.as_bytes());
    salt[32..].copy_from_slice(recipient.as_bytes());
    let mut okm = [0u8; KEY_LEN + NONCE_LEN];
    // 56 bytes is far below HKDF-SHA256's 8,160-byte limit: expanding cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(&salt), shared).expand(DOMAIN, &mut okm);
    let (key, nonce) = okm.split_at(KEY_LEN);
    let mut nonce_bytes = [0u8; NONCE_LEN];
    nonce_bytes.copy_from_slice(nonce);
    (XChaCha20Poly1305::new(key.into()), nonce_bytes)
}

fn associated_data(team: TeamId, epoch: u64, recipient: &PeerId) -> Vec<u8> {
    let recipient = recipient.to_bytes();
    let mut aad = Vec::with_capacity(DOMAIN.len() + 16 + 8 + recipient.len());
    aad.extend_from_slice(DOMAIN);
    aad.extend_from_slice(team.as_bytes());
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad.extend_from_slice(&recipient);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{keypair, peer, rng};

    const TEAM: TeamId = TeamId::from_bytes([7; 16]);

    #[test]
    fn only_the_recipient_opens_for_the_same_team_and_epoch() -> Result<(), TeamError> {
        let key = [42u8; 32];
        let sealed = seal(&key, &peer(2), TEAM, 3, &mut rng(1))?;
        assert_eq!(sealed.len(), SEALED_BASE64_LEN);
        assert!(is_well_formed(&sealed));
        assert_eq!(open(&sealed, &keypair(2), TEAM, 3)?, key);
        assert_eq!(
            open(&sealed, &keypair(3), TEAM, 3),
            Err(TeamError::SealedKeyInvalid)
        );
        assert_eq!(
            open(&sealed, &keypair(2), TEAM, 4),
            Err(TeamError::SealedKeyInvalid)
        );
        let other_team = TeamId::from_bytes([8; 16]);
        assert_eq!(
            open(&sealed, &keypair(2), other_team, 3),
            Err(TeamError::SealedKeyInvalid)
        );
        // A fresh ephemeral key each time.
        assert_ne!(seal(&key, &peer(2), TEAM, 3, &mut rng(2))?, sealed);
        Ok(())
    }

    #[test]
    fn tampering_fails_to_open_and_never_panics() -> Result<(), TeamError> {
        let sealed = seal(&[1u8; 32], &peer(2), TEAM, 1, &mut rng(1))?;
        let bytes = BASE64
            .decode(sealed.as_bytes())
            .map_err(|_| TeamError::SealedKeyInvalid)?;
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut altered = bytes.clone();
                altered[i] ^= bit;
                let altered = BASE64.encode(&altered);
                assert_eq!(
                    open(&altered, &keypair(2), TEAM, 1),
                    Err(TeamError::SealedKeyInvalid)
                );
            }
        }
        for garbage in [
            String::new(),
            "!".repeat(SEALED_BASE64_LEN),
            sealed[..SEALED_BASE64_LEN - 4].to_owned(),
            format!("{sealed}AAAA"),
            BASE64.encode(&[0u8; SEALED_LEN]),
        ] {
            assert_eq!(
                open(&garbage, &keypair(2), TEAM, 1),
                Err(TeamError::SealedKeyInvalid)
            );
        }
        Ok(())
    }

    #[test]
    fn converted_keys_agree() -> Result<(), TeamError> {
        for seed in 1..=5 {
            let secret = x25519_secret_of(&keypair(seed))?;
            assert_eq!(
                PublicKey::from(&secret).to_bytes(),
                x25519_public_of(&peer(seed))?.to_bytes()
            );
        }
        Ok(())
    }
}
