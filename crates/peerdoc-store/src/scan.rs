//! Reading a whole store in key order, a page at a time: what copying one store into
//! another needs so that it never holds more than a page in memory
//! ([`copy_store`](crate::copy_store)). The core's `Storage::range` returns a prefix
//! whole, which is right for one document and wrong for a store.

use std::ops::Bound;

use peerdoc_core::{MemoryStorage, Storage, StorageError, StorageKey};

use crate::error::StoreError;
use crate::frame::CorruptionKind;
use crate::key::{decode_key, encode_key};
use crate::sled_storage::{COMMIT_SEQ_KEY, SledStorage};

/// The entries of one page, in key order.
pub type Page = Vec<(StorageKey, Vec<u8>)>;

/// A [`Storage`] that can be read whole, in key order, a page at a time.
pub trait ScanStorage: Storage {
    /// The entries whose key sorts after `after` (from the first when `None`), in key
    /// order: at most `max_entries`, and none after the one whose value brings the
    /// page to `max_bytes` (so at least one when any is left). An empty page means the
    /// scan is done. Values are verified as `get` verifies them.
    fn scan_page(
        &self,
        after: Option<&StorageKey>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError>;
}

impl<S: ScanStorage + ?Sized> ScanStorage for std::sync::Arc<S> {
    fn scan_page(
        &self,
        after: Option<&StorageKey>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError> {
        (**self).scan_page(after, max_entries, max_bytes)
    }
}

/// Whether a page of `entries` entries and `bytes` value bytes is full.
pub(crate) fn page_full(
    entries: usize,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
) -> bool {
    entries >= max_entries.max(1) || bytes >= max_bytes
}

impl ScanStorage for SledStorage {
    /// A value that fails verification is quarantined and left out, as `range` does.
    fn scan_page(
        &self,
        after: Option<&StorageKey>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError> {
        Ok(self.scan_page_verified(after, max_entries, max_bytes)?)
    }
}

impl SledStorage {
    fn scan_page_verified(
        &self,
        after: Option<&StorageKey>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Page, StoreError> {
        let start = match after {
            Some(key) => Bound::Excluded(encode_key(key)),
            None => Bound::Unbounded,
        };
        let (mut page, mut bytes) = (Vec::new(), 0);
        for entry in self.data.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (raw_key, stored) = entry?;
            if raw_key == COMMIT_SEQ_KEY {
                continue;
            }
            let Ok(key) = decode_key(&raw_key) else {
                let shown = String::from_utf8_lossy(&raw_key).into_owned();
                self.quarantine_value(&raw_key, &shown, &stored, CorruptionKind::UndecodableKey)?;
                continue;
            };
            if let Some(value) = self.verify(&raw_key, &key, stored)? {
                bytes += value.len();
                page.push((key, value));
                if page_full(page.len(), bytes, max_entries, max_bytes) {
                    break;
                }
            }
        }
        Ok(page)
    }
}

/// For tests and the simulator: reads the map whole, then keeps the page.
impl ScanStorage for MemoryStorage {
    fn scan_page(
        &self,
        after: Option<&StorageKey>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError> {
        let (mut page, mut bytes) = (Vec::new(), 0);
        for (key, value) in self.snapshot() {
            if after.is_some_and(|after| key <= *after) {
                continue;
            }
            bytes += value.len();
            page.push((key, value));
            if page_full(page.len(), bytes, max_entries, max_bytes) {
                break;
            }
        }
        Ok(page)
    }
}

/// Checks [`ScanStorage::scan_page`] against `range` on a store that starts empty, for
/// every backend (the sled and memory stores here, PostgreSQL in its crate's tests):
/// pages of any size, chained by their last key, give exactly `range(&[])` in order,
/// and no page breaks its limits. Panics on a violation.
pub fn check_scan_pages(store: &dyn ScanStorage) {
    use peerdoc_core::WriteBatch;
    let mut batch = WriteBatch::new();
    // Awkward components (NUL, empty, multi-byte) and a value far above the byte bound.
    let keys: [&[&str]; 8] = [
        &["a"],
        &["a", ""],
        &["a", "\0"],
        &["a\0"],
        &["ab", "snapshot", "h"],
        &["doc", "incremental", "é"],
        &["peerdoc", "meta", "doc"],
        &["z"],
    ];
    for (n, key) in keys.iter().enumerate() {
        let len = if n == 4 { 50_000 } else { n * 100 };
        batch.put(StorageKey::new(key.iter().copied()), vec![n as u8; len]);
    }
    store.write(batch).expect("write");
    let whole = store.range(&[]).expect("range");
    assert_eq!(whole.len(), keys.len());
    for (max_entries, max_bytes) in [(1, usize::MAX), (3, usize::MAX), (100, 250), (2, 0)] {
        let mut chained = Vec::new();
        let mut after: Option<StorageKey> = None;
        loop {
            let page = store
                .scan_page(after.as_ref(), max_entries, max_bytes)
                .expect("scan_page");
            let Some((last, _)) = page.last() else {
                break;
            };
            assert!(page.len() <= max_entries, "{max_entries} entries at most");
            let before_last: usize = page[..page.len() - 1].iter().map(|(_, v)| v.len()).sum();
            assert!(
                page.len() == 1 || before_last < max_bytes,
                "a page goes on after reaching {max_bytes} bytes"
            );
            after = Some(last.clone());
            chained.extend(page);
        }
        // Keys and lengths in the message: the values are long.
        let shown = |entries: &[(StorageKey, Vec<u8>)]| {
            entries
                .iter()
                .map(|(k, v)| format!("{k:?}: {} bytes", v.len()))
                .collect::<Vec<_>>()
        };
        assert!(
            chained == whole,
            "pages of {max_entries} / {max_bytes} bytes: {:?} instead of {:?}",
            shown(&chained),
            shown(&whole)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SledConfig;

    #[test]
    fn the_memory_store_scans_in_pages() {
        check_scan_pages(&MemoryStorage::new());
    }

    #[test]
    fn the_sled_store_scans_in_pages_without_its_commit_counter() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStorage::open(dir.path().join("s"), SledConfig::default()).unwrap();
        check_scan_pages(&store);
    }
}
