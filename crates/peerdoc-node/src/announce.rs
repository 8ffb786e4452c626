//! Gossip announcements: "document D is now at heads H", published on the team topic
//! after every local change so that an edit fans out at once, even to devices we have
//! no sync stream with (gossipsub relays it). A receiver that lacks any of H syncs D
//! right away (`Input::HeadsAnnounced`); anything gossip loses is repaired by the
//! per-peer sync stream, which pushes every change anyway.
//!
//! Wire form (JSON, at most ~700 bytes, far below the transport's 1 KiB minimum cap):
//! `{"v":1,"doc":"<bs58check document id>","heads":["<64 hex digits>", …]}`. A document
//! with more than [`MAX_HEADS`] heads is announced without them ("changed, heads not
//! given").

use automerge::ChangeHash;
use peerdoc_core::DocumentId;
use serde_json::{Value, json};

/// The format version this node writes and reads.
const VERSION: u64 = 1;

/// Most heads carried; more only happens after heavy concurrent editing, and a sync
/// finds them anyway.
pub(crate) const MAX_HEADS: usize = 8;

/// Longest announcement accepted (a correct one is well under this).
const MAX_ANNOUNCEMENT_LEN: usize = 2 * 1024;

/// One announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announcement {
    pub(crate) doc: DocumentId,
    /// Empty when the document had more than [`MAX_HEADS`] heads.
    pub(crate) heads: Vec<ChangeHash>,
}

/// Why gossip bytes are not an announcement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AnnouncementError {
    #[error("announcement of {0} bytes exceeds the {MAX_ANNOUNCEMENT_LEN} byte cap")]
    TooLarge(usize),
    #[error("announcement is not JSON: {0}")]
    NotJson(String),
    #[error("announcement version {0:?} is not supported")]
    Version(Option<u64>),
    #[error("announcement field {0} is missing or malformed")]
    Field(&'static str),
}

impl Announcement {
    /// The announcement of `doc` at `heads`.
    pub(crate) fn new(doc: DocumentId, heads: &[ChangeHash]) -> Self {
        let heads = if heads.len() > MAX_HEADS {
            Vec::new()
        } else {
            heads.to_vec()
        };
        Self { doc, heads }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let heads: Vec<String> = self.heads.iter().map(ToString::to_string).collect();
        json!({"v": VERSION, "doc": self.doc.to_string(), "heads": heads})
            .to_string()
            .into_bytes()
    }

    /// Parses gossip bytes from a peer; never panics on any input.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, AnnouncementError> {
        if bytes.len() > MAX_ANNOUNCEMENT_LEN {
            return Err(AnnouncementError::TooLarge(bytes.len()));
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| AnnouncementError::NotJson(e.to_string()))?;
        let version = value.get("v").and_then(Value::as_u64);
        if version != Some(VERSION) {
            return Err(AnnouncementError::Version(version));
        }
        let doc = value
            .get("doc")
            .and_then(Value::as_str)
            .and_then(|s| DocumentId::parse(s).ok())
            .ok_or(AnnouncementError::Field("doc"))?;
        let heads = value
            .get("heads")
            .and_then(Value::as_array)
            .filter(|heads| heads.len() <= MAX_HEADS)
            .ok_or(AnnouncementError::Field("heads"))?
            .iter()
            .map(|h| h.as_str().and_then(|s| s.parse::<ChangeHash>().ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or(AnnouncementError::Field("heads"))?;
        Ok(Self { doc, heads })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(byte: u8) -> ChangeHash {
        ChangeHash([byte; 32])
    }

    #[test]
    fn round_trips_and_stays_small() {
        let doc = DocumentId::from_bytes([3; 16]);
        let heads: Vec<ChangeHash> = (0..MAX_HEADS as u8).map(hash).collect();
        let announcement = Announcement::new(doc, &heads);
        let bytes = announcement.encode();
        assert!(bytes.len() < 1024, "{} bytes", bytes.len());
        assert_eq!(Announcement::decode(&bytes).unwrap(), announcement);
    }

    #[test]
    fn too_many_heads_are_announced_as_none() {
        let doc = DocumentId::from_bytes([3; 16]);
        let heads: Vec<ChangeHash> = (0..=MAX_HEADS as u8).map(hash).collect();
        let announcement = Announcement::new(doc, &heads);
        assert!(announcement.heads.is_empty());
        assert_eq!(
            Announcement::decode(&announcement.encode()).unwrap(),
            announcement
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let doc = DocumentId::from_bytes([3; 16]).to_string();
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\xff\x00garbage".to_vec(),
            b"[]".to_vec(),
            br#"{"v":2,"doc":"x","heads":[]}"#.to_vec(),
            br#"{"v":1,"doc":"not a doc id","heads":[]}"#.to_vec(),
            format!(r#"{{"v":1,"doc":"{doc}","heads":["zz"]}}"#).into_bytes(),
            format!(r#"{{"v":1,"doc":"{doc}","heads":"none"}}"#).into_bytes(),
            vec![b' '; MAX_ANNOUNCEMENT_LEN + 1],
        ];
        for bytes in cases {
            assert!(Announcement::decode(&bytes).is_err(), "{bytes:?}");
        }
    }
}
