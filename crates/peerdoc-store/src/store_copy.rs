//! Copying a whole store into another of any backend, verified and restartable: how
//! `peerdoc store copy` moves a sled store into PostgreSQL and back. Both keep the same
//! keys and values (the backends differ only in how they frame them), so a copy is a
//! scan of one and batched writes to the other.
//!
//! The protocol, so that an interrupted copy is noticed and never served:
//!
//! 1. The destination must be empty, or hold only what an unfinished copy left: the
//!    marker ([`copy_marker_key`]) and entries. Those entries are deleted first (the
//!    marker stays), so running the copy again starts it over.
//! 2. The marker is written first, in a batch of its own, saying what is being copied.
//! 3. The source is read in key order, a page at a time ([`ScanStorage`]); each page is
//!    one atomic write to the destination. Memory holds one page, never the store.
//! 4. The destination is read back whole, page by page, through its own checks (CRC or
//!    seal): the count, the bytes and a SHA-256 over every key and value in order must
//!    equal the source's.
//! 5. The marker is deleted: the last write. Until then the destination is an
//!    unfinished copy, and the daemon refuses to start on it ([`unfinished_copy`]).

use peerdoc_core::{Storage, StorageError, StorageKey, WriteBatch};
use sha2::{Digest as _, Sha256};

use crate::error::StoreError;
use crate::key::encode_key;
use crate::scan::ScanStorage;

/// The key of the marker an unfinished copy leaves in its destination. Nothing else
/// uses it: `["peerdoc", …]` keys are peerdoc's own records, and none is named so.
pub fn copy_marker_key() -> StorageKey {
    StorageKey::new(["peerdoc", "copy-unfinished"])
}

/// What the marker of an unfinished copy says, when `store` holds one. A daemon
/// refuses such a store: it holds part of another store.
pub fn unfinished_copy(store: &(impl Storage + ?Sized)) -> Result<Option<String>, StorageError> {
    Ok(store
        .get(&copy_marker_key())?
        .map(|text| String::from_utf8_lossy(&text).into_owned()))
}

/// How much one page (read, then written as one atomic batch) may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyLimits {
    /// Entries per page.
    pub page_entries: usize,
    /// Value bytes per page (a page ends after the entry that reaches it, so a value
    /// larger than this is a page of its own).
    pub page_bytes: usize,
}

impl Default for CopyLimits {
    /// 1,000 entries or 8 MiB: a few hundred small documents, or one large one.
    fn default() -> Self {
        Self {
            page_entries: 1000,
            page_bytes: 8 * 1024 * 1024,
        }
    }
}

/// How far a copy got: counted and digested in key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Documents: their metadata records (`["peerdoc", "meta", docId]`).
    pub documents: u64,
    /// Entries (keys with their values).
    pub entries: u64,
    /// Value bytes.
    pub bytes: u64,
    /// SHA-256 over every entry in key order (key length, encoded key, value length,
    /// value), as of the last finished page.
    pub digest: [u8; 32],
}

impl Tally {
    /// The digest in hex.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }
}

/// A running [`Tally`].
#[derive(Debug, Default)]
struct Counter {
    tally: Tally,
    hasher: Sha256,
}

impl Counter {
    fn add(&mut self, key: &StorageKey, value: &[u8]) {
        let components = key.components();
        if components.len() == 3 && components[0] == "peerdoc" && components[1] == "meta" {
            self.tally.documents += 1;
        }
        self.tally.entries += 1;
        self.tally.bytes += value.len() as u64;
        let encoded = encode_key(key);
        self.hasher.update((encoded.len() as u64).to_le_bytes());
        self.hasher.update(&encoded);
        self.hasher.update((value.len() as u64).to_le_bytes());
        self.hasher.update(value);
    }

    /// The tally so far, with the digest of what was added.
    fn tally(&self) -> Tally {
        Tally {
            digest: self.hasher.clone().finalize().into(),
            ..self.tally
        }
    }
}

/// What a copy is doing, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyStage {
    /// Deleting what an unfinished copy left in the destination (the tally counts them).
    Clearing,
    /// Copying pages.
    Copying,
    /// Reading the destination back.
    Verifying,
}

/// What [`copy_store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopySummary {
    /// What was copied, and read back identical.
    pub copied: Tally,
    /// Atomic writes it took (one per page).
    pub batches: u64,
    /// Entries an unfinished earlier copy had left in the destination, deleted first.
    pub cleared: u64,
}

/// Copies every entry of `source` into `dest`, as the module docs describe: `dest` must
/// be empty or hold an unfinished copy; `marker` is what its marker says meanwhile
/// (what is copied from where, and when). `progress` hears after every page.
pub fn copy_store<S, D>(
    source: &S,
    dest: &D,
    marker: &str,
    limits: CopyLimits,
    progress: &mut dyn FnMut(CopyStage, &Tally),
) -> Result<CopySummary, StoreError>
where
    S: ScanStorage + ?Sized,
    D: ScanStorage + ?Sized,
{
    let marker_key = copy_marker_key();
    if let Some(marker) = unfinished_copy(source).map_err(StoreError::CopySource)? {
        return Err(StoreError::SourceUnfinished { marker });
    }
    let cleared = match unfinished_copy(dest).map_err(StoreError::CopyDestination)? {
        Some(earlier) => {
            tracing::info!(%earlier, "the destination holds an unfinished copy; starting it over");
            clear_unfinished(dest, limits, progress)?
        }
        None => {
            let first = dest
                .scan_page(None, 1, usize::MAX)
                .map_err(StoreError::CopyDestination)?;
            if let Some((first_key, _)) = first.first() {
                return Err(StoreError::DestinationNotEmpty {
                    first_key: first_key.to_string(),
                });
            }
            0
        }
    };
    let mut batch = WriteBatch::new();
    batch.put(marker_key.clone(), marker.as_bytes().to_vec());
    dest.write(batch).map_err(StoreError::CopyDestination)?;

    let mut copied = Counter::default();
    let mut batches = 0;
    let mut after: Option<StorageKey> = None;
    loop {
        let page = source
            .scan_page(after.as_ref(), limits.page_entries, limits.page_bytes)
            .map_err(StoreError::CopySource)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        let mut batch = WriteBatch::new();
        for (key, value) in page {
            copied.add(&key, &value);
            batch.put(key, value);
        }
        dest.write(batch).map_err(StoreError::CopyDestination)?;
        batches += 1;
        progress(CopyStage::Copying, &copied.tally());
    }
    let copied = copied.tally();

    let held = read_back(dest, limits, progress)?;
    if held != copied {
        return Err(StoreError::CopyVerifyFailed { copied, held });
    }
    let mut batch = WriteBatch::new();
    batch.delete(marker_key);
    dest.write(batch).map_err(StoreError::CopyDestination)?;
    Ok(CopySummary {
        copied,
        batches,
        cleared,
    })
}

/// Deletes every entry but the marker, a page at a time; returns how many.
fn clear_unfinished<D: ScanStorage + ?Sized>(
    dest: &D,
    limits: CopyLimits,
    progress: &mut dyn FnMut(CopyStage, &Tally),
) -> Result<u64, StoreError> {
    let marker_key = copy_marker_key();
    let mut cleared = Tally::default();
    let mut after: Option<StorageKey> = None;
    loop {
        let page = dest
            .scan_page(after.as_ref(), limits.page_entries, limits.page_bytes)
            .map_err(StoreError::CopyDestination)?;
        let Some((last, _)) = page.last() else {
            return Ok(cleared.entries);
        };
        after = Some(last.clone());
        let mut batch = WriteBatch::new();
        for (key, value) in page {
            if key != marker_key {
                cleared.entries += 1;
                cleared.bytes += value.len() as u64;
                batch.delete(key);
            }
        }
        dest.write(batch).map_err(StoreError::CopyDestination)?;
        progress(CopyStage::Clearing, &cleared);
    }
}

/// Counts and digests the destination, leaving the marker out.
fn read_back<D: ScanStorage + ?Sized>(
    dest: &D,
    limits: CopyLimits,
    progress: &mut dyn FnMut(CopyStage, &Tally),
) -> Result<Tally, StoreError> {
    let marker_key = copy_marker_key();
    let mut held = Counter::default();
    let mut after: Option<StorageKey> = None;
    loop {
        let page = dest
            .scan_page(after.as_ref(), limits.page_entries, limits.page_bytes)
            .map_err(StoreError::CopyDestination)?;
        let Some((last, _)) = page.last() else {
            return Ok(held.tally());
        };
        after = Some(last.clone());
        for (key, value) in &page {
            if *key != marker_key {
                held.add(key, value);
            }
        }
        progress(CopyStage::Verifying, &held.tally());
    }
}

#[cfg(test)]
mod tests {
    use peerdoc_core::MemoryStorage;

    use super::*;

    fn key(parts: &[&str]) -> StorageKey {
        StorageKey::new(parts.iter().copied())
    }

    /// Two documents, a conflict log entry, a sync state and a store-wide key.
    fn sample() -> MemoryStorage {
        let store = MemoryStorage::new();
        let mut batch = WriteBatch::new();
        for doc in ["docA", "docB"] {
            batch.put(key(&[doc, "incremental", "h1"]), vec![1; 10]);
            batch.put(key(&[doc, "snapshot", "h2"]), vec![2; 3000]);
            batch.put(key(&[doc, "sync-state", "peer"]), vec![3; 7]);
            batch.put(key(&["peerdoc", "meta", doc]), b"meta".to_vec());
        }
        batch.put(
            key(&["peerdoc", "conflicts", "docA", "00000000000000000001"]),
            vec![4],
        );
        batch.put(key(&["storage-adapter-id"]), b"id".to_vec());
        store.write(batch).unwrap();
        store
    }

    fn small_pages() -> CopyLimits {
        CopyLimits {
            page_entries: 4,
            page_bytes: 2000,
        }
    }

    fn quiet(_: CopyStage, _: &Tally) {}

    #[test]
    fn a_copy_holds_every_entry_and_no_marker() {
        let (source, dest) = (sample(), MemoryStorage::new());
        let summary = copy_store(&source, &dest, "test", small_pages(), &mut quiet).unwrap();
        assert_eq!(dest.snapshot(), source.snapshot());
        assert_eq!(summary.copied.documents, 2);
        assert_eq!(summary.copied.entries, 10);
        assert_eq!(summary.copied.bytes, 2 * (10 + 3000 + 7 + 4) + 1 + 2);
        assert_eq!(summary.cleared, 0);
        // 4 entries a page would be 3 pages; each 3,000-byte snapshot ends its page
        // early: [incA snapA] [syncA incB snapB] [syncB conflict metaA metaB] [id].
        assert_eq!(summary.batches, 4, "{summary:?}");
        assert_eq!(unfinished_copy(&dest).unwrap(), None);
    }

    #[test]
    fn a_destination_with_anything_in_it_is_refused_untouched() {
        let (source, dest) = (sample(), MemoryStorage::new());
        let mut batch = WriteBatch::new();
        batch.put(key(&["other", "snapshot", "x"]), vec![9]);
        dest.write(batch).unwrap();
        let before = dest.snapshot();
        let err = copy_store(&source, &dest, "test", small_pages(), &mut quiet).unwrap_err();
        assert!(
            matches!(&err, StoreError::DestinationNotEmpty { first_key } if first_key == "other/snapshot/x"),
            "{err}"
        );
        assert_eq!(dest.snapshot(), before);
    }

    #[test]
    fn an_interrupted_copy_is_marked_refused_as_a_source_and_started_over() {
        let (source, dest) = (sample(), MemoryStorage::new());
        // What a copy killed after its second page leaves: the marker, some entries,
        // and (the source changed since) one the source no longer has.
        let mut batch = WriteBatch::new();
        batch.put(copy_marker_key(), b"an earlier copy".to_vec());
        batch.put(key(&["docA", "incremental", "h1"]), vec![1; 10]);
        batch.put(key(&["docA", "incremental", "gone"]), vec![5; 5]);
        dest.write(batch).unwrap();
        assert_eq!(
            unfinished_copy(&dest).unwrap().as_deref(),
            Some("an earlier copy")
        );
        let err =
            copy_store(&dest, &MemoryStorage::new(), "x", small_pages(), &mut quiet).unwrap_err();
        assert!(matches!(err, StoreError::SourceUnfinished { .. }), "{err}");

        let mut stages = Vec::new();
        let summary = copy_store(&source, &dest, "again", small_pages(), &mut |stage, _| {
            stages.push(stage)
        })
        .unwrap();
        assert_eq!(summary.cleared, 2);
        assert_eq!(dest.snapshot(), source.snapshot());
        assert_eq!(stages.first(), Some(&CopyStage::Clearing));
        assert_eq!(stages.last(), Some(&CopyStage::Verifying));
    }

    /// A destination that loses one write: the copy must notice and keep its marker.
    #[derive(Debug, Default)]
    struct Forgetful(MemoryStorage, std::sync::atomic::AtomicUsize);

    impl Storage for Forgetful {
        fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
            self.0.get(key)
        }
        fn range(&self, prefix: &[String]) -> Result<Vec<(StorageKey, Vec<u8>)>, StorageError> {
            self.0.range(prefix)
        }
        fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
            // The marker is write 0; write 2 is the second page.
            if self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 2 {
                return Ok(());
            }
            self.0.write(batch)
        }
    }

    impl ScanStorage for Forgetful {
        fn scan_page(
            &self,
            after: Option<&StorageKey>,
            max_entries: usize,
            max_bytes: usize,
        ) -> Result<crate::scan::Page, StorageError> {
            self.0.scan_page(after, max_entries, max_bytes)
        }
    }

    #[test]
    fn a_destination_that_does_not_read_back_the_same_fails_verification_and_stays_marked() {
        let (source, dest) = (sample(), Forgetful::default());
        let err = copy_store(&source, &dest, "test", small_pages(), &mut quiet).unwrap_err();
        let StoreError::CopyVerifyFailed { copied, held } = &err else {
            panic!("{err}");
        };
        assert_eq!(copied.entries, 10);
        assert!(held.entries < 10 && held.digest != copied.digest);
        assert!(err.to_string().contains("run the copy again"), "{err}");
        assert_eq!(unfinished_copy(&dest).unwrap().as_deref(), Some("test"));
    }
}
