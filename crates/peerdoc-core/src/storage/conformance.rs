//! The storage conformance suite: every [`Storage`] backend runs it unchanged.
//!
//! ```
//! use peerdoc_core::storage::{conformance, MemoryStorage};
//! conformance::run_all(&|| MemoryStorage::new());
//! ```
//!
//! `new_store` must return a fresh, empty store each call. Each check panics with a
//! message naming the broken rule.

use super::{Storage, StorageError, StorageKey, WriteBatch};

fn key(parts: &[&str]) -> StorageKey {
    StorageKey::new(parts.iter().copied())
}

fn prefix(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn put<S: Storage>(store: &S, k: &[&str], v: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.put(key(k), v.to_vec());
    store.write(batch).expect("write failed");
}

/// Runs every check against fresh stores from `new_store`.
pub fn run_all<S: Storage>(new_store: &dyn Fn() -> S) {
    get_missing_is_none(&new_store());
    put_then_get(&new_store());
    overwrite_and_delete(&new_store());
    batch_applies_in_order(&new_store());
    range_matches_whole_components(&new_store());
    range_is_sorted(&new_store());
    range_of_empty_prefix_is_everything(&new_store());
    empty_key_is_rejected(&new_store());
    failed_batch_changes_nothing(&new_store());
    binary_and_unicode_round_trip(&new_store());
    large_values_round_trip(&new_store());
    many_keys(&new_store());
}

/// A missing key reads as `None`, not an error.
pub fn get_missing_is_none<S: Storage>(store: &S) {
    assert_eq!(store.get(&key(&["nope"])).unwrap(), None, "missing key");
    assert!(store.range(&prefix(&["nope"])).unwrap().is_empty());
}

/// A write is visible to the next read.
pub fn put_then_get<S: Storage>(store: &S) {
    put(store, &["doc", "snapshot", "h1"], b"abc");
    assert_eq!(
        store.get(&key(&["doc", "snapshot", "h1"])).unwrap(),
        Some(b"abc".to_vec()),
        "read after write"
    );
}

/// Put replaces; delete removes; deleting a missing key is fine.
pub fn overwrite_and_delete<S: Storage>(store: &S) {
    put(store, &["k"], b"1");
    put(store, &["k"], b"2");
    assert_eq!(store.get(&key(&["k"])).unwrap(), Some(b"2".to_vec()));
    let mut batch = WriteBatch::new();
    batch.delete(key(&["k"])).delete(key(&["never-there"]));
    store.write(batch).unwrap();
    assert_eq!(store.get(&key(&["k"])).unwrap(), None, "delete");
}

/// Within a batch, a later op on the same key wins.
pub fn batch_applies_in_order<S: Storage>(store: &S) {
    let mut batch = WriteBatch::new();
    batch
        .put(key(&["a"]), b"1".to_vec())
        .delete(key(&["a"]))
        .put(key(&["b"]), b"1".to_vec())
        .put(key(&["b"]), b"2".to_vec())
        .put(key(&["c"]), b"1".to_vec());
    store.write(batch).unwrap();
    assert_eq!(store.get(&key(&["a"])).unwrap(), None, "put then delete");
    assert_eq!(store.get(&key(&["b"])).unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.get(&key(&["c"])).unwrap(), Some(b"1".to_vec()));
}

/// A prefix matches whole components only.
pub fn range_matches_whole_components<S: Storage>(store: &S) {
    put(store, &["a", "x"], b"1");
    put(store, &["a", "y", "z"], b"2");
    put(store, &["ab", "x"], b"3");
    put(store, &["a"], b"4");
    put(store, &["b"], b"5");
    let got: Vec<StorageKey> = store
        .range(&prefix(&["a"]))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        got,
        vec![key(&["a"]), key(&["a", "x"]), key(&["a", "y", "z"])],
        "prefix must match whole components"
    );
    let got: Vec<StorageKey> = store
        .range(&prefix(&["a", "y"]))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(got, vec![key(&["a", "y", "z"])]);
}

/// Range results are in component-wise lexicographic order.
pub fn range_is_sorted<S: Storage>(store: &S) {
    let names = ["b", "a", "a\u{0}", "aa", "", "\u{1}", "z", "é"];
    for n in names {
        put(store, &["p", n, "x"], n.as_bytes());
        put(store, &["p", n], n.as_bytes());
    }
    let got: Vec<StorageKey> = store
        .range(&prefix(&["p"]))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut want = got.clone();
    want.sort();
    assert_eq!(got, want, "range must be sorted by components");
    assert_eq!(got.len(), names.len() * 2);
}

/// The empty prefix returns every entry.
pub fn range_of_empty_prefix_is_everything<S: Storage>(store: &S) {
    put(store, &["x"], b"1");
    put(store, &["y", "z"], b"2");
    assert_eq!(store.range(&[]).unwrap().len(), 2);
}

/// A key with no components is rejected.
pub fn empty_key_is_rejected<S: Storage>(store: &S) {
    let mut batch = WriteBatch::new();
    batch.put(StorageKey::new(Vec::<String>::new()), b"x".to_vec());
    assert!(
        matches!(store.write(batch), Err(StorageError::InvalidKey { .. })),
        "empty key must be rejected"
    );
    assert!(store.get(&StorageKey::new(Vec::<String>::new())).is_err());
}

/// A batch rejected for a bad key leaves the store untouched (atomicity).
pub fn failed_batch_changes_nothing<S: Storage>(store: &S) {
    let mut batch = WriteBatch::new();
    batch
        .put(key(&["ok"]), b"1".to_vec())
        .put(StorageKey::new(Vec::<String>::new()), b"x".to_vec());
    assert!(store.write(batch).is_err());
    assert_eq!(
        store.get(&key(&["ok"])).unwrap(),
        None,
        "a failed batch must not be partly applied"
    );
}

/// Arbitrary bytes and unicode components survive.
pub fn binary_and_unicode_round_trip<S: Storage>(store: &S) {
    let value: Vec<u8> = (0..=255u8).collect();
    put(store, &["ünï", "\u{0}/\u{ff}", "🙂"], &value);
    assert_eq!(
        store.get(&key(&["ünï", "\u{0}/\u{ff}", "🙂"])).unwrap(),
        Some(value)
    );
    put(store, &["empty"], b"");
    assert_eq!(store.get(&key(&["empty"])).unwrap(), Some(Vec::new()));
}

/// A multi-megabyte value survives.
pub fn large_values_round_trip<S: Storage>(store: &S) {
    let value: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    put(store, &["big"], &value);
    assert_eq!(store.get(&key(&["big"])).unwrap(), Some(value));
}

/// Thousands of keys in one batch and ranges over them.
pub fn many_keys<S: Storage>(store: &S) {
    let mut batch = WriteBatch::new();
    for i in 0..2000 {
        batch.put(
            key(&["many", &format!("{i:05}")]),
            i.to_string().into_bytes(),
        );
    }
    store.write(batch).unwrap();
    let all = store.range(&prefix(&["many"])).unwrap();
    assert_eq!(all.len(), 2000);
    assert_eq!(all[1234].1, b"1234".to_vec());
}
