//! Disk usage accounting and key classification.

use std::collections::BTreeMap;
use std::path::Path;

use peerdoc_core::StorageKey;

use crate::error::StoreError;

/// What a key holds, following the layout in `docs/storage.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass<'a> {
    /// `[docId, "snapshot", headsHash]`.
    Snapshot {
        /// The document.
        doc: &'a str,
    },
    /// `[docId, "incremental", changeHash]`.
    Incremental {
        /// The document.
        doc: &'a str,
    },
    /// `[docId, "sync-state", storageId]`.
    SyncState {
        /// The document.
        doc: &'a str,
    },
    /// peerdoc's per-document records: `["peerdoc", "meta", docId]`,
    /// `["peerdoc", "conflicts", docId, seq]`, or any other `[docId, kind, ...]`.
    DocumentOther {
        /// The document.
        doc: &'a str,
    },
    /// Everything not tied to one document (`["storage-adapter-id"]`,
    /// `["peerdoc", "peers", storageId]`, ...).
    Store,
}

/// Classifies a key for usage accounting.
pub fn classify(key: &StorageKey) -> KeyClass<'_> {
    match key.components() {
        [first, kind, doc, ..] if first == "peerdoc" && (kind == "meta" || kind == "conflicts") => {
            KeyClass::DocumentOther { doc }
        }
        [first, ..] if first == "peerdoc" => KeyClass::Store,
        [doc, kind, ..] => match kind.as_str() {
            "snapshot" => KeyClass::Snapshot { doc },
            "incremental" => KeyClass::Incremental { doc },
            "sync-state" => KeyClass::SyncState { doc },
            _ => KeyClass::DocumentOther { doc },
        },
        _ => KeyClass::Store,
    }
}

/// Bytes attributed to one document. Each entry counts its encoded key plus its stored
/// (framed) value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DocUsage {
    /// `[docId, "snapshot", *]` entries.
    pub snapshot_bytes: u64,
    /// `[docId, "incremental", *]` entries.
    pub incremental_bytes: u64,
    /// `[docId, "sync-state", *]` entries.
    pub sync_state_bytes: u64,
    /// peerdoc's metadata and conflict log for the document, and unknown per-doc kinds.
    pub other_bytes: u64,
}

impl DocUsage {
    /// All bytes of the document.
    pub fn total(&self) -> u64 {
        self.snapshot_bytes + self.incremental_bytes + self.sync_state_bytes + self.other_bytes
    }
}

/// A breakdown of the store's disk usage; `docs/storage.md` says how each figure is
/// computed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageUsage {
    /// Apparent size of every file under the store directory.
    pub total_disk_bytes: u64,
    /// Encoded keys plus stored values of every live entry, quarantine included.
    pub live_bytes: u64,
    /// Per-document breakdown, keyed by document id.
    pub per_document: BTreeMap<String, DocUsage>,
    /// Live entries not tied to a document.
    pub store_bytes: u64,
    /// Live bytes held in the quarantine tree.
    pub quarantined_bytes: u64,
    /// `sum(incremental_bytes) + total_disk_bytes.saturating_sub(live_bytes)`: what
    /// compaction plus sled's own segment cleaning could give back, at most.
    pub reclaimable_bytes: u64,
}

impl StorageUsage {
    pub(crate) fn add(&mut self, key: Option<&StorageKey>, bytes: u64) {
        self.live_bytes += bytes;
        let Some(key) = key else {
            self.store_bytes += bytes;
            return;
        };
        let (doc, slot): (&str, fn(&mut DocUsage) -> &mut u64) = match classify(key) {
            KeyClass::Snapshot { doc } => (doc, |u| &mut u.snapshot_bytes),
            KeyClass::Incremental { doc } => (doc, |u| &mut u.incremental_bytes),
            KeyClass::SyncState { doc } => (doc, |u| &mut u.sync_state_bytes),
            KeyClass::DocumentOther { doc } => (doc, |u| &mut u.other_bytes),
            KeyClass::Store => {
                self.store_bytes += bytes;
                return;
            }
        };
        *slot(self.per_document.entry(doc.to_string()).or_default()) += bytes;
    }

    pub(crate) fn finish(&mut self, total_disk_bytes: u64) {
        self.total_disk_bytes = total_disk_bytes;
        let incremental: u64 = self
            .per_document
            .values()
            .map(|d| d.incremental_bytes)
            .sum();
        self.reclaimable_bytes = incremental + total_disk_bytes.saturating_sub(self.live_bytes);
    }
}

/// Apparent size (`du --apparent-size -b`) of every file under `dir`.
pub fn directory_bytes(dir: &Path) -> Result<u64, StoreError> {
    let measure = |path: &Path, source| StoreError::Measure {
        path: path.to_path_buf(),
        source,
    };
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).map_err(|e| measure(&current, e))? {
            let entry = entry.map_err(|e| measure(&current, e))?;
            let meta = entry.metadata().map_err(|e| measure(&entry.path(), e))?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> StorageKey {
        StorageKey::new(parts.iter().copied())
    }

    #[test]
    fn layout_keys_are_classified() {
        assert_eq!(
            classify(&key(&["d", "snapshot", "h"])),
            KeyClass::Snapshot { doc: "d" }
        );
        assert_eq!(
            classify(&key(&["d", "incremental", "h"])),
            KeyClass::Incremental { doc: "d" }
        );
        assert_eq!(
            classify(&key(&["d", "sync-state", "s"])),
            KeyClass::SyncState { doc: "d" }
        );
        assert_eq!(
            classify(&key(&["peerdoc", "meta", "d"])),
            KeyClass::DocumentOther { doc: "d" }
        );
        assert_eq!(
            classify(&key(&["peerdoc", "conflicts", "d", "7"])),
            KeyClass::DocumentOther { doc: "d" }
        );
        assert_eq!(classify(&key(&["peerdoc", "peers", "s"])), KeyClass::Store);
        assert_eq!(classify(&key(&["storage-adapter-id"])), KeyClass::Store);
    }

    #[test]
    fn reclaimable_is_incrementals_plus_overhead() {
        let mut usage = StorageUsage::default();
        usage.add(Some(&key(&["d", "incremental", "a"])), 100);
        usage.add(Some(&key(&["d", "snapshot", "h"])), 1000);
        usage.add(Some(&key(&["storage-adapter-id"])), 10);
        usage.finish(5000);
        assert_eq!(usage.live_bytes, 1110);
        assert_eq!(usage.store_bytes, 10);
        assert_eq!(usage.reclaimable_bytes, 100 + (5000 - 1110));
        assert_eq!(usage.per_document["d"].total(), 1100);
    }
}
