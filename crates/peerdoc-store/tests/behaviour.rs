//! Locking, group commit and usage accounting.

use std::sync::Arc;

use peerdoc_core::{Storage, StorageKey, WriteBatch};
use peerdoc_store::{DocUsage, SledConfig, SledStorage, StoreError};

fn key(parts: &[&str]) -> StorageKey {
    StorageKey::new(parts.iter().copied())
}

fn put(store: &SledStorage, k: &[&str], value: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.put(key(k), value.to_vec());
    store.write(batch).expect("write");
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledStorage::open(dir.path(), SledConfig::default()).unwrap();
    let second = SledStorage::open(dir.path(), SledConfig::default().lock_wait_ms(0));
    match second {
        Err(err @ StoreError::HeldByAnotherProcess { .. }) => {
            let text = err.to_string();
            assert!(text.contains("held by another process"), "{text}");
            assert!(text.contains(&dir.path().display().to_string()), "{text}");
        }
        other => panic!("expected HeldByAnotherProcess, got {other:?}"),
    }
}

#[test]
fn a_store_can_be_closed_and_reopened_at_once() {
    // sled may hold its lock briefly after a drop; `open` waits for it (lock_wait_ms).
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..20 {
        let store = SledStorage::open(dir.path(), SledConfig::default()).unwrap();
        put(&store, &["d", "incremental", "x"], b"v");
    }
}

#[test]
fn concurrent_writers_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStorage::open(dir.path(), SledConfig::default()).unwrap());
    const THREADS: usize = 8;
    const WRITES: usize = 40;
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..WRITES {
                    put(
                        &store,
                        &[&format!("doc{t}"), "incremental", &i.to_string()],
                        &[7; 200],
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = store.commit_stats();
    assert_eq!(stats.batches_written, (THREADS * WRITES) as u64);
    assert!(
        stats.flushes_performed < stats.batches_written,
        "no flush was shared: {stats:?}"
    );
    for t in 0..THREADS {
        let entries = store.range(&[format!("doc{t}")]).unwrap();
        assert_eq!(entries.len(), WRITES);
    }
}

#[test]
fn empty_batches_do_not_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path(), SledConfig::default()).unwrap();
    store.write(WriteBatch::new()).unwrap();
    assert_eq!(store.commit_stats().flushes_performed, 0);
}

#[test]
fn usage_attributes_every_live_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path(), SledConfig::default()).unwrap();
    put(&store, &["docA", "snapshot", "h1"], &[1; 1000]);
    put(&store, &["docA", "incremental", "c1"], &[2; 200]);
    put(&store, &["docA", "incremental", "c2"], &[2; 200]);
    put(&store, &["docA", "sync-state", "peer1"], &[3; 50]);
    put(&store, &["peerdoc", "meta", "docA"], &[4; 30]);
    put(&store, &["peerdoc", "conflicts", "docA", "1"], &[5; 30]);
    put(&store, &["docB", "incremental", "c1"], &[6; 200]);
    put(&store, &["peerdoc", "peers", "peer1"], &[7; 40]);
    put(&store, &["storage-adapter-id"], b"id");

    let usage = store.usage().unwrap();
    let a = usage.per_document["docA"];
    // Each entry counts its encoded key (components + 2 bytes each) and its framed value
    // (payload + 5 header bytes).
    let entry = |parts: &[&str], payload: u64| -> u64 {
        parts.iter().map(|p| p.len() as u64 + 2).sum::<u64>() + payload + 5
    };
    assert_eq!(
        a,
        DocUsage {
            snapshot_bytes: entry(&["docA", "snapshot", "h1"], 1000),
            incremental_bytes: entry(&["docA", "incremental", "c1"], 200) * 2,
            sync_state_bytes: entry(&["docA", "sync-state", "peer1"], 50),
            other_bytes: entry(&["peerdoc", "meta", "docA"], 30)
                + entry(&["peerdoc", "conflicts", "docA", "1"], 30),
        }
    );
    assert_eq!(
        usage.per_document["docB"].incremental_bytes,
        entry(&["docB", "incremental", "c1"], 200)
    );
    assert_eq!(
        usage.store_bytes,
        entry(&["peerdoc", "peers", "peer1"], 40) + entry(&["storage-adapter-id"], 2)
    );
    let per_doc: u64 = usage.per_document.values().map(DocUsage::total).sum();
    assert_eq!(
        usage.live_bytes,
        per_doc + usage.store_bytes + usage.quarantined_bytes
    );
    assert!(usage.total_disk_bytes > 0);
    let incremental: u64 = usage
        .per_document
        .values()
        .map(|d| d.incremental_bytes)
        .sum();
    assert_eq!(
        usage.reclaimable_bytes,
        incremental + usage.total_disk_bytes.saturating_sub(usage.live_bytes)
    );
}

#[test]
fn writes_survive_a_clean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStorage::open(dir.path(), SledConfig::default()).unwrap();
        put(&store, &["d", "incremental", "x"], b"payload");
    }
    let store = SledStorage::open(dir.path(), SledConfig::default()).unwrap();
    assert_eq!(
        store.get(&key(&["d", "incremental", "x"])).unwrap(),
        Some(b"payload".to_vec())
    );
    assert_eq!(store.verify_all().unwrap(), 0);
}
