//! The order-preserving byte encoding of [`StorageKey`]s.
//!
//! Each component is written byte for byte, except that `0x00` becomes `0x00 0xFF`,
//! and is followed by the terminator `0x00 0x01`. Because the terminator sorts below
//! every escaped or plain byte that can follow a shared prefix, comparing two encoded
//! keys byte-wise gives the same answer as comparing their components lexicographically
//! (UTF-8 byte order is code-point order). The encoding of a component prefix is a byte
//! prefix of exactly the keys that start with those components, so a component-wise
//! range read is a sled prefix scan.

use peerdoc_core::StorageKey;

const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

/// Why stored key bytes do not decode to a [`StorageKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyDecodeError {
    /// A `0x00` byte was followed by something other than `0x01` or `0xFF`.
    #[error("bad escape byte {byte:#04x} at offset {offset}")]
    BadEscape {
        /// Where the byte after the escape sits.
        offset: usize,
        /// The byte found.
        byte: u8,
    },
    /// The bytes end inside a component.
    #[error("key ends without a component terminator")]
    Unterminated,
    /// A component is not UTF-8.
    #[error("key component is not UTF-8")]
    NotUtf8,
    /// The bytes hold no component.
    #[error("key has no components")]
    Empty,
}

/// Encodes a whole key.
pub fn encode_key(key: &StorageKey) -> Vec<u8> {
    encode_prefix(key.components())
}

/// Encodes leading components; the result is a byte prefix of every key that starts
/// with them. The empty prefix encodes to no bytes.
pub fn encode_prefix(components: &[String]) -> Vec<u8> {
    let len = components.iter().map(|c| c.len() + 2).sum();
    let mut out = Vec::with_capacity(len);
    for component in components {
        for &byte in component.as_bytes() {
            if byte == ESCAPE {
                out.extend_from_slice(&[ESCAPE, ESCAPED_ZERO]);
            } else {
                out.push(byte);
            }
        }
        out.extend_from_slice(&[ESCAPE, TERMINATOR]);
    }
    out
}

/// Decodes bytes written by [`encode_key`].
pub fn decode_key(bytes: &[u8]) -> Result<StorageKey, KeyDecodeError> {
    let mut components = Vec::new();
    let mut current = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte != ESCAPE {
            current.push(byte);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(&ESCAPED_ZERO) => current.push(0),
            Some(&TERMINATOR) => {
                let text = String::from_utf8(std::mem::take(&mut current))
                    .map_err(|_| KeyDecodeError::NotUtf8)?;
                components.push(text);
            }
            Some(&other) => {
                return Err(KeyDecodeError::BadEscape {
                    offset: i + 1,
                    byte: other,
                });
            }
            None => return Err(KeyDecodeError::Unterminated),
        }
        i += 2;
    }
    if !current.is_empty() {
        return Err(KeyDecodeError::Unterminated);
    }
    if components.is_empty() {
        return Err(KeyDecodeError::Empty);
    }
    Ok(StorageKey::new(components))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> StorageKey {
        StorageKey::new(parts.iter().copied())
    }

    #[test]
    fn round_trips_awkward_components() {
        for k in [
            key(&["a"]),
            key(&["", ""]),
            key(&["\u{0}", "\u{0}\u{1}", "x\u{0}"]),
            key(&["ünï", "🙂", "\u{ff}"]),
        ] {
            assert_eq!(decode_key(&encode_key(&k)), Ok(k));
        }
    }

    #[test]
    fn byte_order_equals_component_order() {
        let names = [
            "",
            "\u{0}",
            "\u{0}\u{0}",
            "\u{1}",
            "a",
            "a\u{0}",
            "aa",
            "b",
            "é",
            "\u{ff}",
        ];
        let mut keys = Vec::new();
        for a in names {
            keys.push(key(&[a]));
            for b in names {
                keys.push(key(&[a, b]));
            }
        }
        for x in &keys {
            for y in &keys {
                assert_eq!(
                    x.cmp(y),
                    encode_key(x).cmp(&encode_key(y)),
                    "{x:?} vs {y:?}"
                );
            }
        }
    }

    #[test]
    fn prefix_encoding_matches_whole_components_only() {
        let prefix = encode_prefix(&["a".to_string()]);
        assert!(encode_key(&key(&["a", "x"])).starts_with(&prefix));
        assert!(encode_key(&key(&["a"])).starts_with(&prefix));
        assert!(!encode_key(&key(&["ab"])).starts_with(&prefix));
        assert!(!encode_key(&key(&["a\u{0}"])).starts_with(&prefix));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(decode_key(b""), Err(KeyDecodeError::Empty));
        assert_eq!(decode_key(b"abc"), Err(KeyDecodeError::Unterminated));
        assert_eq!(decode_key(b"a\x00"), Err(KeyDecodeError::Unterminated));
        assert!(matches!(
            decode_key(b"a\x00\x07"),
            Err(KeyDecodeError::BadEscape { byte: 7, .. })
        ));
        assert_eq!(decode_key(b"\xff\x00\x01"), Err(KeyDecodeError::NotUtf8));
    }
}
