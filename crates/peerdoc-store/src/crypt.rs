//! Encryption at rest: every stored value sealed with XChaCha20-Poly1305.
//!
//! A store is encrypted or not from the moment it is created. An encrypted store keeps,
//! in its meta tree, an [`EncryptionRecord`]: the cipher, how the key is derived (argon2id
//! from a passphrase with its salt and costs, or a raw 256-bit key given as is) and a *key
//! check*, a known text sealed with the key, so that a wrong passphrase is told apart
//! from damage before any value is read. The record holds nothing secret.
//!
//! A sealed value is framed as
//!
//! ```text
//! +--------+------------------+--------------------------------+
//! | 0x02   | nonce (24 bytes) | ciphertext ‖ Poly1305 tag (16) |
//! +--------+------------------+--------------------------------+
//! ```
//!
//! with a fresh random nonce per value (XChaCha's 192-bit nonces make random nonces safe)
//! and the format byte and the encoded key as associated data, so a value moved under
//! another key fails like a damaged one. The tag replaces the plain frame's CRC-32: a
//! flipped bit anywhere fails authentication and the value is quarantined.
//!
//! What stays readable (document ids in keys, sizes, the commit ledger's document ids)
//! and what the design defends against is in `docs/security.md`, "Encryption at rest".

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::frame::CorruptionKind;

/// The format byte of a sealed value.
pub(crate) const FORMAT_SEALED: u8 = 0x02;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed frame adds to its payload.
pub(crate) const SEALED_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;
const SALT_LEN: usize = 16;
/// Sealed with the key into the [`EncryptionRecord`]; opening it proves the key.
const KEY_CHECK: &[u8] = b"peerdoc store key check v1";
const RECORD_HEADER: &str = "peerdoc-encryption v1";
const CIPHER_NAME: &str = "xchacha20poly1305";

/// argon2id costs for a passphrase: 64 MiB, 3 passes, 1 lane (RFC 9106's second
/// recommended option, with one lane for tablets), paid once per start; the costs are
/// kept in the record, so they can rise without breaking stores.
const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_PASSES: u32 = 3;
const ARGON2_LANES: u32 = 1;

/// The secret that opens an encrypted store. Its `Debug` never shows the secret, and
/// the bytes are zeroed when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSecret {
    /// A passphrase; the key is derived from it with argon2id and the store's salt.
    Passphrase(Zeroizing<String>),
    /// A random 256-bit key, used as is (from a key file kept off the device's disk,
    /// a systemd credential or a keyring).
    Key(Zeroizing<[u8; 32]>),
}

impl fmt::Debug for StoreSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreSecret::{}(<redacted>)", self.kind())
    }
}

impl StoreSecret {
    /// A passphrase secret. An empty passphrase is refused when the store is opened.
    pub fn passphrase(text: impl Into<String>) -> Self {
        Self::Passphrase(Zeroizing::new(text.into()))
    }

    /// A raw key secret.
    pub fn key(bytes: [u8; 32]) -> Self {
        Self::Key(Zeroizing::new(bytes))
    }

    /// Parses a key file's contents: 64 hex digits, surrounding whitespace ignored.
    pub fn key_from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text, key.as_mut_slice()).map_err(|_| {
            format!(
                "a store key is 64 hex digits (32 bytes); found {} characters that are not",
                text.len()
            )
        })?;
        Ok(Self::Key(key))
    }

    /// A new random key, as 64 hex digits for a key file.
    pub fn generate_key_hex() -> Zeroizing<String> {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        Zeroizing::new(hex::encode(key.as_slice()))
    }

    /// `passphrase` or `key`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Passphrase(_) => "passphrase",
            Self::Key(_) => "key",
        }
    }
}

/// How a store's key is derived, as kept in its [`EncryptionRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kdf {
    Argon2id {
        memory_kib: u32,
        passes: u32,
        lanes: u32,
        salt: [u8; SALT_LEN],
    },
    /// The secret is the key.
    RawKey,
}

/// The non-secret description of an encrypted store's key, kept in its meta tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EncryptionRecord {
    kdf: Kdf,
    /// [`KEY_CHECK`] sealed with the key.
    check: Vec<u8>,
}

/// Why a store's encryption could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CryptError {
    /// The secret does not open the store (or the key check is damaged).
    WrongSecret(String),
    /// The record in the store is unreadable.
    BadRecord(String),
}

/// The cipher of an open encrypted store.
pub(crate) struct Cipher {
    aead: XChaCha20Poly1305,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(xchacha20poly1305, <key redacted>)")
    }
}

impl Cipher {
    /// Sets up encryption for a new store: a fresh salt for a passphrase, the key check.
    pub(crate) fn create(secret: &StoreSecret) -> Result<(Self, EncryptionRecord), CryptError> {
        let kdf = match secret {
            StoreSecret::Passphrase(_) => {
                let mut salt = [0u8; SALT_LEN];
                salt.copy_from_slice(&XChaCha20Poly1305::generate_nonce(&mut OsRng)[..SALT_LEN]);
                Kdf::Argon2id {
                    memory_kib: ARGON2_MEMORY_KIB,
                    passes: ARGON2_PASSES,
                    lanes: ARGON2_LANES,
                    salt,
                }
            }
            StoreSecret::Key(_) => Kdf::RawKey,
        };
        let cipher = Self::derive(secret, &kdf)?;
        let check = cipher.seal(b"", KEY_CHECK);
        Ok((cipher, EncryptionRecord { kdf, check }))
    }

    /// Opens an existing store's encryption with `secret`.
    pub(crate) fn open(
        secret: &StoreSecret,
        record: &EncryptionRecord,
    ) -> Result<Self, CryptError> {
        let cipher = Self::derive(secret, &record.kdf)?;
        match cipher.unseal(b"", &record.check) {
            Ok(text) if text == KEY_CHECK => Ok(cipher),
            _ => Err(CryptError::WrongSecret(format!(
                "the {} given does not open it (a wrong {}, or its key check record is damaged)",
                secret.kind(),
                secret.kind()
            ))),
        }
    }

    fn derive(secret: &StoreSecret, kdf: &Kdf) -> Result<Self, CryptError> {
        let mut key = Zeroizing::new([0u8; 32]);
        match (secret, kdf) {
            (
                StoreSecret::Passphrase(text),
                Kdf::Argon2id {
                    memory_kib,
                    passes,
                    lanes,
                    salt,
                },
            ) => {
                if text.is_empty() {
                    return Err(CryptError::WrongSecret("the passphrase is empty".into()));
                }
                let params = Params::new(*memory_kib, *passes, *lanes, Some(32))
                    .map_err(|e| CryptError::BadRecord(format!("argon2 costs: {e}")))?;
                Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                    .hash_password_into(text.as_bytes(), salt, key.as_mut_slice())
                    .map_err(|e| CryptError::BadRecord(format!("argon2: {e}")))?;
            }
            (StoreSecret::Key(bytes), Kdf::RawKey) => key.copy_from_slice(bytes.as_slice()),
            (StoreSecret::Passphrase(_), Kdf::RawKey) => {
                return Err(CryptError::WrongSecret(
                    "it is encrypted with a key file, not a passphrase".into(),
                ));
            }
            (StoreSecret::Key(_), Kdf::Argon2id { .. }) => {
                return Err(CryptError::WrongSecret(
                    "it is encrypted with a passphrase, not a key file".into(),
                ));
            }
        }
        Ok(Self {
            aead: XChaCha20Poly1305::new(Key::from_slice(key.as_slice())),
        })
    }

    /// Seals `payload` for storage under `encoded_key`.
    pub(crate) fn seal(&self, encoded_key: &[u8], payload: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(encoded_key);
        let sealed = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: payload,
                    aad: &aad,
                },
            )
            // The aead crate fails only for messages over 2^38 bytes, far beyond a frame.
            .expect("XChaCha20-Poly1305 seals any stored value");
        let mut out = Vec::with_capacity(SEALED_OVERHEAD + payload.len());
        out.push(FORMAT_SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a value stored under `encoded_key`.
    pub(crate) fn unseal(
        &self,
        encoded_key: &[u8],
        stored: &[u8],
    ) -> Result<Vec<u8>, CorruptionKind> {
        let Some((&format, rest)) = stored.split_first() else {
            return Err(CorruptionKind::Truncated { len: 0 });
        };
        if format != FORMAT_SEALED {
            return Err(CorruptionKind::NotSealed { byte: format });
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(CorruptionKind::Truncated { len: stored.len() });
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let aad = associated_data(encoded_key);
        self.aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| CorruptionKind::SealBroken)
    }
}

fn associated_data(encoded_key: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + encoded_key.len());
    aad.push(FORMAT_SEALED);
    aad.extend_from_slice(encoded_key);
    aad
}

impl EncryptionRecord {
    /// What the record says in words, for status and logs: `passphrase (argon2id)` or
    /// `key`.
    pub(crate) fn secret_kind(&self) -> &'static str {
        match self.kdf {
            Kdf::Argon2id { .. } => "passphrase",
            Kdf::RawKey => "key",
        }
    }

    /// A few lines of text: easy to read in a hex dump, and nothing in them is secret.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let kdf = match &self.kdf {
            Kdf::Argon2id {
                memory_kib,
                passes,
                lanes,
                salt,
            } => format!(
                "kdf argon2id {memory_kib} {passes} {lanes} {}",
                hex::encode(salt)
            ),
            Kdf::RawKey => "kdf raw-key".to_string(),
        };
        format!(
            "{RECORD_HEADER}\ncipher {CIPHER_NAME}\n{kdf}\ncheck {}",
            hex::encode(&self.check)
        )
        .into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, CryptError> {
        let bad = |what: &str| CryptError::BadRecord(what.to_string());
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
        let mut lines = text.lines();
        if lines.next() != Some(RECORD_HEADER) {
            return Err(bad("unknown record version"));
        }
        if lines.next() != Some(&format!("cipher {CIPHER_NAME}")[..]) {
            return Err(bad("unknown cipher"));
        }
        let kdf_line = lines.next().ok_or_else(|| bad("no kdf line"))?;
        let words: Vec<&str> = kdf_line.split(' ').collect();
        let kdf = match words.as_slice() {
            ["kdf", "raw-key"] => Kdf::RawKey,
            ["kdf", "argon2id", memory, passes, lanes, salt] => {
                let number = |s: &str| s.parse::<u32>().map_err(|_| bad("bad argon2 cost"));
                let mut salt_bytes = [0u8; SALT_LEN];
                hex::decode_to_slice(salt, &mut salt_bytes).map_err(|_| bad("bad salt"))?;
                Kdf::Argon2id {
                    memory_kib: number(memory)?,
                    passes: number(passes)?,
                    lanes: number(lanes)?,
                    salt: salt_bytes,
                }
            }
            _ => return Err(bad("unknown kdf")),
        };
        let check = lines
            .next()
            .and_then(|line| line.strip_prefix("check "))
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| bad("no key check"))?;
        Ok(Self { kdf, check })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_secret() -> StoreSecret {
        StoreSecret::key([7; 32])
    }

    #[test]
    fn seal_round_trips_and_binds_the_key() {
        let (cipher, _) = Cipher::create(&key_secret()).unwrap();
        let sealed = cipher.seal(b"k", b"hello");
        assert_eq!(sealed.len(), SEALED_OVERHEAD + 5);
        assert_eq!(cipher.unseal(b"k", &sealed).unwrap(), b"hello");
        assert_eq!(
            cipher.unseal(b"other", &sealed),
            Err(CorruptionKind::SealBroken)
        );
        // Two seals of the same value differ (fresh nonces).
        assert_ne!(cipher.seal(b"k", b"hello"), sealed);
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let (cipher, _) = Cipher::create(&key_secret()).unwrap();
        let sealed = cipher.seal(b"key", b"some payload bytes");
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                cipher.unseal(b"key", &bad).is_err(),
                "flip of bit {i} not caught"
            );
        }
        assert!(matches!(
            cipher.unseal(b"key", &[FORMAT_SEALED, 1, 2]),
            Err(CorruptionKind::Truncated { .. })
        ));
        assert_eq!(
            cipher.unseal(b"key", &crate::frame::frame(b"key", b"plain")),
            Err(CorruptionKind::NotSealed { byte: 1 })
        );
    }

    #[test]
    fn the_record_tells_a_wrong_secret_from_the_right_one() {
        let secret = StoreSecret::passphrase("correct horse");
        let (cipher, record) = Cipher::create(&secret).unwrap();
        let decoded = EncryptionRecord::decode(&record.encode()).unwrap();
        assert_eq!(decoded, record);
        let reopened = Cipher::open(&secret, &decoded).unwrap();
        let sealed = cipher.seal(b"k", b"v");
        assert_eq!(reopened.unseal(b"k", &sealed).unwrap(), b"v");
        assert!(matches!(
            Cipher::open(&StoreSecret::passphrase("correct horse "), &decoded),
            Err(CryptError::WrongSecret(_))
        ));
        assert!(matches!(
            Cipher::open(&key_secret(), &decoded),
            Err(CryptError::WrongSecret(m)) if m.contains("passphrase, not a key file")
        ));
        assert!(matches!(
            Cipher::open(&StoreSecret::passphrase(""), &decoded),
            Err(CryptError::WrongSecret(m)) if m.contains("empty")
        ));
        assert!(EncryptionRecord::decode(b"peerdoc-encryption v9").is_err());
    }

    #[test]
    fn key_files_are_64_hex_digits_and_debug_hides_secrets() {
        let hex = StoreSecret::generate_key_hex();
        assert_eq!(hex.len(), 64);
        let secret = StoreSecret::key_from_hex(&format!("  {}\n", hex.as_str())).unwrap();
        assert!(!format!("{secret:?}").contains(&hex[..8]));
        assert!(StoreSecret::key_from_hex("abcd").is_err());
        let passphrase = StoreSecret::passphrase("hunter2");
        assert_eq!(
            format!("{passphrase:?}"),
            "StoreSecret::passphrase(<redacted>)"
        );
    }
}
