//! The core's storage conformance suite, unchanged, on sled.

use peerdoc_core::storage::conformance;
use peerdoc_core::{Storage, StorageError, StorageKey, WriteBatch};
use peerdoc_store::{SledConfig, SledStorage, StoreSecret};

/// A store that owns its temporary directory, so each fresh store cleans up after itself.
struct TempStore {
    store: SledStorage,
    _dir: tempfile::TempDir,
}

impl Storage for TempStore {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        self.store.get(key)
    }
    fn range(&self, prefix: &[String]) -> Result<Vec<(StorageKey, Vec<u8>)>, StorageError> {
        self.store.range(prefix)
    }
    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.store.write(batch)
    }
}

#[test]
fn sled_storage_passes_conformance() {
    conformance::run_all(&|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStorage::open(dir.path(), SledConfig::default()).expect("open");
        TempStore { store, _dir: dir }
    });
}

#[test]
fn encrypted_sled_storage_passes_conformance() {
    conformance::run_all(&|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = SledConfig::default().secret(Some(StoreSecret::key([5; 32])));
        let store = SledStorage::open(dir.path(), config).expect("open");
        TempStore { store, _dir: dir }
    });
}

#[test]
fn conformance_holds_after_reopen() {
    // Everything the suite wrote must read back the same from a reopened store.
    let dir = tempfile::tempdir().expect("tempdir");
    let before = {
        let store = SledStorage::open(dir.path(), SledConfig::default()).expect("open");
        conformance::range_is_sorted(&store);
        conformance::binary_and_unicode_round_trip(&store);
        conformance::many_keys(&store);
        store.range(&[]).expect("range")
    };
    let store = SledStorage::open(dir.path(), SledConfig::default()).expect("reopen");
    assert_eq!(store.range(&[]).expect("range"), before);
}
