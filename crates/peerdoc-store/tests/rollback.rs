//! A store that silently went back in time is caught on open.
//!
//! sled recovers its log only up to the first message whose checksum fails, so one
//! flipped byte in a stopped store drops every write after it, with no error. These tests
//! flip one byte inside the log bytes of the last commits, then open the store: it must
//! name exactly the documents those commits wrote, keep the record across restarts, and
//! otherwise carry on (a SIGKILL, which loses nothing, is never taken for a rollback:
//! `crash.rs` checks that after every kill).

use std::path::Path;

use peerdoc_core::{Storage, StorageKey, WriteBatch};
use peerdoc_store::{SledConfig, SledStorage};

fn put(store: &SledStorage, doc: &str, kind: &str, value: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.put(StorageKey::new([doc, kind, "k"]), value.to_vec());
    store.write(batch).unwrap();
}

fn log_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("db")).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A stopped store whose last two commits wrote `late` (new) and `busy` (an update),
/// and the offsets of the log bytes those commits changed.
fn store_with_late_commits(dir: &Path) -> Vec<usize> {
    let config = || SledConfig::default().flush_every_ms(None);
    {
        let store = SledStorage::open(dir, config()).unwrap();
        for i in 0..20 {
            put(
                &store,
                &format!("early-{i:02}"),
                "incremental",
                &[i as u8; 300],
            );
        }
        put(&store, "busy", "incremental", b"first version");
    }
    let before = log_bytes(dir);
    {
        let store = SledStorage::open(dir, config()).unwrap();
        assert!(store.rollback().is_none(), "a clean stop is no rollback");
        put(&store, "late", "incremental", &[7; 400]);
        put(&store, "busy", "snapshot", &[9; 400]);
    }
    let after = log_bytes(dir);
    (0..after.len())
        .filter(|&i| before.get(i) != Some(&after[i]))
        .collect()
}

#[test]
fn a_flipped_byte_that_drops_the_last_commits_is_reported_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("store");
    let changed = store_with_late_commits(&original);
    assert!(!changed.is_empty());

    // Flip bytes the last commits wrote until sled drops them on recovery (some bytes,
    // such as padding, change nothing sled reads). Each try is on a fresh copy.
    let mut found = None;
    for (attempt, &offset) in changed.iter().step_by(7).enumerate() {
        let copy = tmp.path().join(format!("copy-{attempt}"));
        copy_dir(&original, &copy);
        let mut log = log_bytes(&copy);
        log[offset] ^= 0x5a;
        std::fs::write(copy.join("db"), &log).unwrap();
        let Ok(store) = SledStorage::open(&copy, SledConfig::default()) else {
            continue; // sled refused the log outright: not a silent rollback
        };
        let late = store
            .get(&StorageKey::new(["late", "incremental", "k"]))
            .unwrap();
        if late.is_none() {
            found = Some((copy, store, offset));
            break;
        }
    }
    let (copy, store, offset) = found.expect("no flipped byte made sled drop the last commits");

    // sled dropped the commits without a word; the store names what went back.
    let report = store
        .rollback()
        .unwrap_or_else(|| panic!("byte {offset}: the lost commits went unnoticed"))
        .clone();
    assert!(report.documents.contains(&"late".to_string()), "{report:?}");
    for doc in &report.documents {
        assert!(
            doc == "late" || doc == "busy",
            "{doc} was not written by the lost commits: {report:?}"
        );
    }
    assert!(report.acknowledged_commit > report.recovered_commit);
    assert!(!report.store_wide);
    let recorded = store.last_rollback().unwrap().expect("recorded");
    assert_eq!(recorded.report, report);

    // The store carries on: writes work, and the next open reports nothing new but
    // still has the record.
    put(&store, "late", "incremental", b"sent again by a peer");
    drop(store);
    let store = SledStorage::open(&copy, SledConfig::default()).unwrap();
    assert_eq!(store.rollback(), None);
    assert_eq!(store.last_rollback().unwrap().unwrap().report, report);
    assert_eq!(
        store
            .get(&StorageKey::new(["late", "incremental", "k"]))
            .unwrap(),
        Some(b"sent again by a peer".to_vec())
    );
}

#[test]
fn a_lost_ledger_detects_nothing_and_reports_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    store_with_late_commits(&dir);
    std::fs::remove_file(dir.join("peerdoc.ledger")).unwrap();
    let store = SledStorage::open(&dir, SledConfig::default()).unwrap();
    assert_eq!(store.rollback(), None);
    assert_eq!(store.last_rollback().unwrap(), None);
    assert_eq!(
        store.range(&["busy".to_string()]).unwrap().len(),
        2,
        "the commit-sequence record never shows up in reads"
    );
    assert_eq!(store.range(&[]).unwrap().len(), 23);
}
