//! Encryption at rest: what is written cannot be read from the files without the secret,
//! the store opens only with its secret, and damaged sealed values are quarantined.

use std::path::Path;

use peerdoc_core::{Storage, StorageKey, WriteBatch};
use peerdoc_store::key::encode_key;
use peerdoc_store::{CorruptionKind, SledConfig, SledStorage, StoreError, StoreSecret};

const MARKER: &[u8] = b"Hartley-Okafor wedding, gate code 4471";

fn key(parts: &[&str]) -> StorageKey {
    StorageKey::new(parts.iter().copied())
}

fn passphrase() -> StoreSecret {
    StoreSecret::passphrase("the old mill, 14 june")
}

fn config(secret: Option<StoreSecret>) -> SledConfig {
    SledConfig::default().lock_wait_ms(5000).secret(secret)
}

/// Writes the marker in a small value, a large one (sled keeps values over about
/// 128 KiB in blob files of their own), a sync state and a document key's neighbour.
fn write_marked(store: &SledStorage) {
    let mut batch = WriteBatch::new();
    let mut small = b"title: ".to_vec();
    small.extend_from_slice(MARKER);
    batch.put(key(&["docA", "snapshot", "h1"]), small.clone());
    let mut large = Vec::new();
    while large.len() < 300 * 1024 {
        large.extend_from_slice(MARKER);
        large.extend_from_slice(b" seating plan row; ");
    }
    batch.put(key(&["docB", "snapshot", "h2"]), large);
    batch.put(key(&["docA", "sync-state", "peer1"]), small);
    store.write(batch).unwrap();
}

/// Every file under `dir` that contains `needle`, by path.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn nothing_written_to_an_encrypted_store_is_readable_in_its_files() {
    // The same writes to a plain store are found by the scan: it can see them.
    let plain = tempfile::tempdir().unwrap();
    {
        let store = SledStorage::open(plain.path(), config(None)).unwrap();
        write_marked(&store);
        assert_eq!(store.encryption(), None);
    }
    let in_plain = files_containing(plain.path(), MARKER);
    assert!(
        in_plain.iter().any(|p| p.contains("blobs")) && in_plain.iter().any(|p| p.ends_with("db")),
        "the scan should find the plain values in sled's log and blob files: {in_plain:?}"
    );

    for secret in [passphrase(), StoreSecret::key([9; 32])] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStorage::open(dir.path(), config(Some(secret.clone()))).unwrap();
            write_marked(&store);
            assert_eq!(store.encryption(), Some(secret.kind()));
        }
        let found = files_containing(dir.path(), MARKER);
        assert!(
            found.is_empty(),
            "plain text on disk with a {secret:?}: {found:?}"
        );
        // And the key itself is nowhere in the files.
        if let StoreSecret::Key(bytes) = &secret {
            assert!(files_containing(dir.path(), bytes.as_slice()).is_empty());
        }

        let store = SledStorage::open(dir.path(), config(Some(secret))).unwrap();
        let value = store
            .get(&key(&["docA", "snapshot", "h1"]))
            .unwrap()
            .unwrap();
        assert!(value.ends_with(MARKER));
        let large = store
            .get(&key(&["docB", "snapshot", "h2"]))
            .unwrap()
            .unwrap();
        assert!(large.len() >= 300 * 1024 && large.starts_with(MARKER));
        assert_eq!(store.range(&["docA".into()]).unwrap().len(), 2);
        assert!(store.quarantined().unwrap().is_empty());
    }
}

#[test]
fn an_encrypted_store_opens_only_with_its_secret_and_a_wrong_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStorage::open(dir.path(), config(Some(passphrase()))).unwrap();
        write_marked(&store);
    }
    let wrong = SledStorage::open(
        dir.path(),
        config(Some(StoreSecret::passphrase("the old mill, 15 june"))),
    )
    .unwrap_err();
    assert!(matches!(wrong, StoreError::WrongSecret { .. }), "{wrong}");
    assert!(wrong.to_string().contains("wrong passphrase"), "{wrong}");

    let kind = SledStorage::open(dir.path(), config(Some(StoreSecret::key([1; 32])))).unwrap_err();
    assert!(
        kind.to_string()
            .contains("with a passphrase, not a key file"),
        "{kind}"
    );

    let none = SledStorage::open(dir.path(), config(None)).unwrap_err();
    assert!(matches!(none, StoreError::SecretNeeded { .. }), "{none}");
    assert!(none.to_string().contains("is encrypted"), "{none}");

    // None of that touched a value: the right passphrase reads everything, nothing
    // quarantined.
    let store = SledStorage::open(dir.path(), config(Some(passphrase()))).unwrap();
    assert_eq!(store.range(&[]).unwrap().len(), 3);
    assert!(store.quarantined().unwrap().is_empty());
    drop(store);

    // A plain store is not silently half-encrypted by a secret given later.
    let plain = tempfile::tempdir().unwrap();
    drop(SledStorage::open(plain.path(), config(None)).unwrap());
    let late = SledStorage::open(plain.path(), config(Some(passphrase()))).unwrap_err();
    assert!(matches!(late, StoreError::NotEncrypted { .. }), "{late}");
    assert!(late.to_string().contains("peerdoc store encrypt"), "{late}");
}

#[test]
fn damaged_moved_or_unsealed_values_are_quarantined_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStorage::open(dir.path(), config(Some(StoreSecret::key([3; 32])))).unwrap();
    write_marked(&store);
    let tree = store.raw_data_tree();
    let a = key(&["docA", "snapshot", "h1"]);
    let sealed = tree.get(encode_key(&a)).unwrap().unwrap().to_vec();

    // One flipped bit in the ciphertext.
    let mut flipped = sealed.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 0x10;
    tree.insert(encode_key(&a), flipped).unwrap();
    // A sealed value copied under another key.
    let moved = key(&["docA", "incremental", "h9"]);
    tree.insert(encode_key(&moved), sealed).unwrap();
    // A plain frame written without the key.
    let planted = key(&["docA", "incremental", "h8"]);
    let encoded = encode_key(&planted);
    tree.insert(
        encoded.clone(),
        peerdoc_store::frame::frame(&encoded, b"not from us"),
    )
    .unwrap();
    store.raw_flush().unwrap();

    assert_eq!(store.get(&a).unwrap(), None);
    let left = store.range(&["docA".into()]).unwrap();
    assert_eq!(left.len(), 1, "only the sync state is intact: {left:?}");
    let mut reasons: Vec<_> = store
        .quarantined()
        .unwrap()
        .into_iter()
        .map(|chunk| (chunk.key.unwrap().to_string(), chunk.reason.unwrap()))
        .collect();
    reasons.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        reasons,
        vec![
            (planted.to_string(), CorruptionKind::NotSealed { byte: 1 }),
            (moved.to_string(), CorruptionKind::SealBroken),
            (a.to_string(), CorruptionKind::SealBroken),
        ]
    );
}
