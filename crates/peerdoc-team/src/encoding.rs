//! Serde helpers: fixed-size byte arrays as hex strings, byte vectors as base64 strings, keys
//! by epoch as a map of hex strings.

/// `[u8; N]` as a lowercase hex string.
pub(crate) mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let mut bytes = [0u8; N];
        hex::decode_to_slice(text.as_bytes(), &mut bytes)
            .map_err(|_| D::Error::custom(format_args!("expected {} hex digits", 2 * N)))?;
        Ok(bytes)
    }
}

/// `Vec<u8>` as a padded standard base64 string.
pub(crate) mod base64_bytes {
    use data_encoding::BASE64;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        BASE64
            .decode(text.as_bytes())
            .map_err(|_| D::Error::custom("expected base64"))
    }
}

/// `BTreeMap<u64, [u8; 32]>` as a map from the number (a string key in JSON) to lowercase hex.
pub(crate) mod hex_key_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    struct HexKey(#[serde(with = "super::hex_array")] [u8; 32]);

    pub(crate) fn serialize<S: Serializer>(
        keys: &BTreeMap<u64, [u8; 32]>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(keys.iter().map(|(epoch, key)| (epoch, hex::encode(key))))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u64, [u8; 32]>, D::Error> {
        let keys = BTreeMap::<u64, HexKey>::deserialize(deserializer)?;
        Ok(keys
            .into_iter()
            .map(|(epoch, HexKey(key))| (epoch, key))
            .collect())
    }
}
