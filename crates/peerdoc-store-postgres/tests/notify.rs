//! Two writers of one schema (two cloud daemons on one database): what one commits, the
//! other's change feed reports; its own writes, other schemas' writes and rolled-back
//! work are not reported; a feed whose server restarts listens again and says that it
//! may have missed notices. Each test runs its own throwaway server (`support/pg.rs`).

#[path = "support/pg.rs"]
mod pg;

use std::sync::mpsc;
use std::time::Duration;

use peerdoc_core::{Storage, StorageKey, WriteBatch};
use peerdoc_store_postgres::{PostgresStorage, StoreChange};

/// Waits for the next report; a feed that reports nothing fails the test after a
/// minute instead of hanging it.
fn next(feed: &mpsc::Receiver<StoreChange>) -> StoreChange {
    feed.recv_timeout(Duration::from_secs(60))
        .expect("the feed reported nothing")
}

fn put(store: &PostgresStorage, parts: &[&str]) {
    let mut batch = WriteBatch::new();
    batch.put(StorageKey::new(parts.iter().copied()), b"value".to_vec());
    store.write(batch).expect("write");
}

#[test]
fn what_one_writer_commits_the_other_hears_and_nothing_else() {
    let Some(server) = pg::start_or_skip("what_one_writer_commits_the_other_hears") else {
        return;
    };
    let node1 = PostgresStorage::open(server.config("postgres", "cloud")).expect("open 1");
    let node2 = PostgresStorage::open(server.config("postgres", "cloud")).expect("open 2");
    let other_team = PostgresStorage::open(server.config("postgres", "other")).expect("open 3");
    let (tx, feed) = mpsc::channel();
    let _watching = node2
        .watch(move |change| {
            let _ = tx.send(change);
        })
        .expect("watch");
    assert_eq!(next(&feed), StoreChange::Unknown, "listening starts");

    // Not reported: node 2's own write, another schema's, a sync state (each node's
    // own), a key outside any document.
    put(&node2, &["doc-own", "incremental", "h1"]);
    put(&other_team, &["doc-other", "incremental", "h1"]);
    put(&node1, &["doc-a", "sync-state", "device"]);
    put(&node1, &["storage-adapter-id"]);
    // A transaction that fails after its notice was queued: not reported.
    server.refuse_poisoned_keys("postgres", "cloud");
    let mut batch = WriteBatch::new();
    batch.put(
        StorageKey::new(["doc-rolled-back", "incremental", "h"]),
        b"c".to_vec(),
    );
    batch.put(
        StorageKey::new(["doc-rolled-back", "incremental", "poison"]),
        b"c".to_vec(),
    );
    assert!(node1.write(batch).is_err(), "the poisoned batch fails");
    // Reported, once per document per transaction: a chunk and a record together.
    let mut batch = WriteBatch::new();
    batch.put(
        StorageKey::new(["doc-a", "incremental", "h2"]),
        b"c".to_vec(),
    );
    batch.put(
        StorageKey::new(["doc-a", "incremental", "h3"]),
        b"c".to_vec(),
    );
    batch.put(
        StorageKey::new(["peerdoc", "meta", "doc-a"]),
        b"{}".to_vec(),
    );
    node1.write(batch).expect("write");
    // A deletion is a change too (a tombstone, a compaction).
    let mut batch = WriteBatch::new();
    batch.delete(StorageKey::new(["doc-b", "snapshot", "h"]));
    node1.write(batch).expect("write");

    assert_eq!(next(&feed), StoreChange::Document("doc-a".into()));
    assert_eq!(next(&feed), StoreChange::Document("doc-b".into()));
    assert!(
        feed.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing else is reported"
    );
}

#[test]
fn a_feed_listens_again_after_the_server_restarts_and_says_it_may_have_missed_some() {
    let Some(server) = pg::start_or_skip("a_feed_listens_again") else {
        return;
    };
    let node1 = PostgresStorage::open(server.config("postgres", "cloud")).expect("open 1");
    let node2 = PostgresStorage::open(server.config("postgres", "cloud")).expect("open 2");
    let (tx, feed) = mpsc::channel();
    let _watching = node2
        .watch(move |change| {
            let _ = tx.send(change);
        })
        .expect("watch");
    assert_eq!(next(&feed), StoreChange::Unknown);

    server.stop();
    server.start_server();
    assert_eq!(
        next(&feed),
        StoreChange::Unknown,
        "after listening again, anything may have changed"
    );
    // Writes are retried until the store reconnects; the feed hears the next one.
    let mut written = false;
    for _ in 0..600 {
        let mut batch = WriteBatch::new();
        batch.put(
            StorageKey::new(["doc-c", "incremental", "h"]),
            b"c".to_vec(),
        );
        if node1.write(batch).is_ok() {
            written = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(written, "node 1 writes again after the restart");
    assert_eq!(next(&feed), StoreChange::Document("doc-c".into()));
}

#[test]
fn a_dropped_feed_stops_listening() {
    let Some(server) = pg::start_or_skip("a_dropped_feed_stops_listening") else {
        return;
    };
    let node = PostgresStorage::open(server.config("postgres", "cloud")).expect("open");
    let (tx, feed) = mpsc::channel();
    let watching = node
        .watch(move |change| {
            let _ = tx.send(change);
        })
        .expect("watch");
    assert_eq!(next(&feed), StoreChange::Unknown);
    let listeners = || {
        server.sql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'peerdoc-listen'",
        )
    };
    assert_eq!(listeners().trim(), "1");
    drop(watching);
    // The thread has joined; the server notices the closed socket at once.
    let mut gone = false;
    for _ in 0..200 {
        if listeners().trim() == "0" {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gone, "the listening connection is closed");
    assert!(
        feed.recv().is_err(),
        "the callback was dropped with the feed"
    );
}
