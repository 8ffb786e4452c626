//! Damaged values are quarantined; the rest of the document and the store keep working.

use automerge::{AutoCommit, ChangeHash, ROOT, transaction::Transactable};
use peerdoc_core::{Storage, StorageKey, WriteBatch};
use peerdoc_store::key::{encode_key, encode_prefix};
use peerdoc_store::{CorruptionKind, SledConfig, SledStorage, StoreError};

fn key(parts: &[&str]) -> StorageKey {
    StorageKey::new(parts.iter().copied())
}

/// Writes `changes` automerge changes of one document as incremental chunks (after a
/// snapshot of its first change) and returns the incremental keys in write order with
/// the change hashes.
fn write_document(
    store: &SledStorage,
    doc_id: &str,
    changes: usize,
) -> Vec<(StorageKey, ChangeHash)> {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "title", format!("{doc_id} run of show"))
        .unwrap();
    doc.commit();
    let mut batch = WriteBatch::new();
    batch.put(key(&[doc_id, "snapshot", "heads0"]), doc.save());
    store.write(batch).unwrap();
    let mut written = Vec::new();
    for i in 0..changes {
        doc.put(
            ROOT,
            format!("item{i}"),
            format!("vendor {i} arrives at 14:{i:02}"),
        )
        .unwrap();
        doc.commit();
        let change = doc.get_last_local_change().unwrap();
        let k = key(&[doc_id, "incremental", &change.hash().to_string()]);
        let mut batch = WriteBatch::new();
        batch.put(k.clone(), change.raw_bytes().to_vec());
        store.write(batch).unwrap();
        written.push((k, change.hash()));
    }
    written
}

/// Loads a document from its stored chunks, the way the engine does.
fn load(store: &SledStorage, doc_id: &str) -> AutoCommit {
    let mut doc = AutoCommit::new();
    for (_, chunk) in store.range(&[doc_id.to_string()]).unwrap() {
        doc.load_incremental(&chunk).unwrap();
    }
    doc
}

fn raw_get(store: &SledStorage, k: &StorageKey) -> Vec<u8> {
    store
        .raw_data_tree()
        .get(encode_key(k))
        .unwrap()
        .unwrap()
        .to_vec()
}

fn raw_put(store: &SledStorage, raw_key: &[u8], value: &[u8]) {
    store.raw_data_tree().insert(raw_key, value).unwrap();
    store.raw_flush().unwrap();
}

#[test]
fn flipped_payload_and_checksum_bytes_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let (damaged_doc, healthy_docs) = {
        let store = SledStorage::open(dir.path(), SledConfig::default()).unwrap();
        let damaged = write_document(&store, "docDamaged", 6);
        let healthy: Vec<_> = ["docOk1", "docOk2"]
            .iter()
            .map(|d| (*d, write_document(&store, d, 6)))
            .collect();
        // Flip one payload byte of the 5th change and one checksum byte of the 6th.
        let mut payload_flip = raw_get(&store, &damaged[4].0);
        let last = payload_flip.len() - 1;
        payload_flip[last] ^= 0x40;
        raw_put(&store, &encode_key(&damaged[4].0), &payload_flip);
        let mut checksum_flip = raw_get(&store, &damaged[5].0);
        checksum_flip[2] ^= 0x01;
        raw_put(&store, &encode_key(&damaged[5].0), &checksum_flip);
        (damaged, healthy)
    };

    let store = SledStorage::open(dir.path(), SledConfig::default()).expect("store opens");
    assert_eq!(store.get(&damaged_doc[4].0).unwrap(), None);
    let entries = store.range(&["docDamaged".to_string()]).unwrap();
    let keys: Vec<_> = entries.iter().map(|(k, _)| k.clone()).collect();
    let mut want = vec![key(&["docDamaged", "snapshot", "heads0"])];
    want.extend(damaged_doc[..4].iter().map(|(k, _)| k.clone()));
    want.sort();
    assert_eq!(keys, want, "the damaged document's other chunks still read");

    let quarantined = store.quarantined().unwrap();
    assert_eq!(quarantined.len(), 2, "{quarantined:?}");
    let mut quarantined_keys: Vec<_> = quarantined.iter().map(|c| c.key.clone().unwrap()).collect();
    quarantined_keys.sort();
    let mut damaged_keys = vec![damaged_doc[4].0.clone(), damaged_doc[5].0.clone()];
    damaged_keys.sort();
    assert_eq!(quarantined_keys, damaged_keys);
    for chunk in &quarantined {
        assert!(
            matches!(chunk.reason, Some(CorruptionKind::ChecksumMismatch { .. })),
            "{chunk:?}"
        );
    }

    // The damaged document still loads from its good chunks.
    let mut doc = load(&store, "docDamaged");
    for (_, hash) in &damaged_doc[..4] {
        assert!(doc.get_change_by_hash(hash).is_some());
    }
    // Other documents read fully.
    for (doc_id, changes) in &healthy_docs {
        let mut doc = load(&store, doc_id);
        for (_, hash) in changes {
            assert!(
                doc.get_change_by_hash(hash).is_some(),
                "{doc_id} lost {hash}"
            );
        }
    }
    // The quarantine is durable and the store keeps accepting writes, even to the
    // damaged keys.
    let mut batch = WriteBatch::new();
    batch.put(damaged_doc[4].0.clone(), b"rewritten".to_vec());
    store.write(batch).unwrap();
    drop(store);
    let store = SledStorage::open(dir.path(), SledConfig::default()).unwrap();
    assert_eq!(store.quarantined().unwrap().len(), 2);
    assert_eq!(
        store.get(&damaged_doc[4].0).unwrap(),
        Some(b"rewritten".to_vec())
    );
    assert_eq!(store.verify_all().unwrap(), 0);
}

#[test]
fn truncated_and_garbage_frames_are_quarantined_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path(), SledConfig::default()).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(key(&["doc", "incremental", "good"]), b"fine".to_vec());
    store.write(batch).unwrap();

    let empty = key(&["doc", "incremental", "empty"]);
    let short = key(&["doc", "incremental", "short"]);
    let format = key(&["doc", "incremental", "format"]);
    raw_put(&store, &encode_key(&empty), b"");
    raw_put(&store, &encode_key(&short), b"\x01\x02\x03");
    raw_put(&store, &encode_key(&format), b"\x7f\0\0\0\0payload");
    // Key bytes with a bad escape, under the document's prefix.
    let mut bad_key = encode_prefix(&["doc".to_string()]);
    bad_key.extend_from_slice(b"x\x00\x07");
    raw_put(&store, &bad_key, b"whatever");

    assert_eq!(store.get(&empty).unwrap(), None);
    let entries = store.range(&["doc".to_string()]).unwrap();
    assert_eq!(
        entries,
        vec![(key(&["doc", "incremental", "good"]), b"fine".to_vec())]
    );

    let mut reasons: Vec<_> = store
        .quarantined()
        .unwrap()
        .into_iter()
        .map(|c| (c.key, c.reason))
        .collect();
    reasons.sort_by_key(|(k, _)| format!("{k:?}"));
    assert_eq!(
        reasons,
        vec![
            (None, Some(CorruptionKind::UndecodableKey)),
            (
                Some(empty.clone()),
                Some(CorruptionKind::Truncated { len: 0 })
            ),
            (
                Some(format),
                Some(CorruptionKind::UnknownFormat { byte: 0x7f })
            ),
            (Some(short), Some(CorruptionKind::Truncated { len: 3 })),
        ]
    );
    // The same key damaged again after a reopen gets its own record.
    drop(store);
    let store = SledStorage::open(dir.path(), SledConfig::default()).unwrap();
    raw_put(&store, &encode_key(&empty), b"\x01");
    assert_eq!(store.verify_all().unwrap(), 1);
    assert_eq!(store.quarantined().unwrap().len(), 5);
}

/// Damages sled's files with `damage`, then checks that opening fails with an error
/// naming the path (sled 0.34 by itself opens some damaged logs as an empty store; the
/// creation marker catches that).
fn open_after_damaging(damage: impl Fn(&std::path::Path, &str)) -> StoreError {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStorage::open(dir.path(), SledConfig::default()).unwrap();
        write_document(&store, "doc", 3);
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_file() {
            damage(&path, &name);
        }
    }
    match SledStorage::open(dir.path(), SledConfig::default()) {
        Ok(store) => panic!("a damaged store opened: {store:?}"),
        Err(err) => {
            eprintln!("damaged store refused: {err}");
            assert!(
                matches!(
                    err,
                    StoreError::DamagedStore { .. }
                        | StoreError::Open { .. }
                        | StoreError::LostContents { .. }
                ),
                "{err:?}"
            );
            assert!(
                err.to_string().contains(&dir.path().display().to_string()),
                "{err}"
            );
            err
        }
    }
}

fn garbage(path: &std::path::Path) {
    let len = std::fs::metadata(path).unwrap().len() as usize;
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn damaged_store_files_give_an_error_naming_the_path() {
    open_after_damaging(|path, _| garbage(path));
}

#[test]
fn a_damaged_log_with_an_intact_config_does_not_panic_the_caller() {
    open_after_damaging(|path, name| {
        if name != "conf" {
            garbage(path)
        }
    });
}

#[test]
fn a_log_that_sled_would_open_as_empty_is_reported_as_lost() {
    // An emptied log (and no snapshot) makes sled 0.34 open an empty store silently.
    let err = open_after_damaging(|path, name| {
        if name == "db" {
            std::fs::File::create(path).unwrap();
        } else if name.starts_with("snap.") {
            std::fs::remove_file(path).unwrap();
        }
    });
    assert!(matches!(err, StoreError::LostContents { .. }), "{err:?}");
}
