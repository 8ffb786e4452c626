//! What the PostgreSQL store does when the database misbehaves: a failing statement
//! inside a batch, the server stopped, crashed, frozen, read-only, or never there.
//! Each test runs its own throwaway server (`support/pg.rs`).
//!
//! No assertion is about time. A call that hangs instead of failing would hang the test,
//! so calls made while the server is away run through [`bounded`], which turns "no
//! answer within a minute" (the configured bounds are 2–3 s) into a failure.

#[path = "support/pg.rs"]
mod pg;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerdoc_core::{Storage, StorageError, StorageKey, WriteBatch};
use peerdoc_store_postgres::{PgConfig, PgStoreError, PostgresStorage};

fn key(parts: &[&str]) -> StorageKey {
    StorageKey::new(parts.iter().copied())
}

fn put(store: &impl Storage, k: &[&str], value: &[u8]) -> Result<(), StorageError> {
    let mut batch = WriteBatch::new();
    batch.put(key(k), value.to_vec());
    store.write(batch)
}

/// Runs `op` on another thread; fails the test if it has not returned within a minute.
fn bounded<T: Send + 'static>(
    store: &Arc<PostgresStorage>,
    op: impl FnOnce(&PostgresStorage) -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let store = Arc::clone(store);
    std::thread::spawn(move || {
        let _ = tx.send(op(&store));
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the call neither returned nor failed: it hangs")
}

/// Retries `op` until it succeeds, for a store waiting out its reconnection backoff.
fn eventually<T>(what: &str, mut op: impl FnMut() -> Result<T, StorageError>) -> T {
    let mut last = None;
    for _ in 0..600 {
        match op() {
            Ok(value) => return value,
            Err(error) => last = Some(error),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} never succeeded; last error: {last:?}");
}

fn io_message(result: Result<impl std::fmt::Debug, StorageError>) -> String {
    match result {
        Err(StorageError::Io(message)) => message,
        other => panic!("expected StorageError::Io, got {other:?}"),
    }
}

#[test]
fn a_batch_whose_last_statement_fails_leaves_nothing_of_it() {
    let Some(server) = pg::start_or_skip("a_batch_whose_last_statement_fails_leaves_nothing_of_it")
    else {
        return;
    };
    let store = PostgresStorage::open(server.config("postgres", "atomic")).expect("open");
    // The server refuses any row whose key holds "poison", as a full disk would: the
    // batch's last statement (the upsert) fails after its first (the delete) ran.
    server.refuse_poisoned_keys("postgres", "atomic");
    put(&store, &["doc", "keep"], b"old").expect("write");
    put(&store, &["doc", "gone"], b"1").expect("write");
    let before = store.range(&[]).expect("range");

    let mut batch = WriteBatch::new();
    batch
        .delete(key(&["doc", "gone"]))
        .put(key(&["doc", "keep"]), b"new".to_vec())
        .put(key(&["doc", "fresh"]), b"1".to_vec())
        .put(key(&["doc", "poison"]), b"x".to_vec());
    match store.write(batch) {
        Err(StorageError::Full(message)) => {
            assert!(message.contains("database out of space"), "{message}");
            assert!(message.contains("no room for poison"), "{message}");
        }
        other => panic!("expected StorageError::Full, got {other:?}"),
    }
    // The delete ran before the failing statement: only the transaction undoes it.
    assert_eq!(
        store.get(&key(&["doc", "gone"])).expect("get"),
        Some(b"1".to_vec()),
        "the batch's delete survived its failure: the batch was not one transaction"
    );
    assert_eq!(
        store.range(&[]).expect("range"),
        before,
        "nothing of the batch"
    );
    // The connection is fine and the store goes on.
    put(&store, &["doc", "fresh"], b"2").expect("write after a refused batch");
    assert_eq!(
        store.get(&key(&["doc", "fresh"])).expect("get"),
        Some(b"2".to_vec())
    );
}

#[test]
fn a_stopped_database_fails_calls_promptly_and_the_same_store_reconnects() {
    let Some(server) = pg::start_or_skip("a_stopped_database_fails_calls_promptly") else {
        return;
    };
    let store = Arc::new(
        PostgresStorage::open(server.config("postgres", "restart").pool_size(2)).expect("open"),
    );
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let name = format!("before-{i:02}");
        put(&*store, &["doc", &name], name.as_bytes()).expect("write");
        acknowledged.push(name);
    }

    server.stop();
    let message = io_message(bounded(&store, |s| put(s, &["doc", "during"], b"x")));
    assert!(message.contains("database unreachable at"), "{message}");
    assert!(
        message.contains(&server.socket_dir().display().to_string()),
        "the message says where: {message}"
    );
    let message = io_message(bounded(&store, |s| s.get(&key(&["doc", "before-00"]))));
    assert!(message.contains("database unreachable at"), "{message}");
    let message = io_message(bounded(&store, |s| s.range(&["doc".to_string()])));
    assert!(message.contains("database unreachable at"), "{message}");

    server.start_server();
    // The same object, no reopen: the next call after the backoff connects again.
    eventually("a write after the restart", || {
        put(&*store, &["doc", "after"], b"y")
    });
    for name in &acknowledged {
        assert_eq!(
            store.get(&key(&["doc", name])).expect("get"),
            Some(name.as_bytes().to_vec()),
            "acknowledged {name} lost"
        );
    }
    let keys: Vec<StorageKey> = store
        .range(&["doc".to_string()])
        .expect("range")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys.len(), acknowledged.len() + 1);
    assert!(
        !keys.contains(&key(&["doc", "during"])),
        "a failed write was applied"
    );
}

#[test]
fn a_read_only_database_refuses_writes_clearly_and_still_reads() {
    let Some(server) = pg::start_or_skip("a_read_only_database_refuses_writes") else {
        return;
    };
    server.create_database("ro");
    let store = PostgresStorage::open(server.config("ro", "app")).expect("open");
    put(&store, &["doc", "a"], b"1").expect("write");
    drop(store);

    server.sql(
        "postgres",
        "ALTER DATABASE ro SET default_transaction_read_only = on",
    );
    // New sessions (a new store, or a reconnect) get the setting; the tables exist, so
    // opening works on a read-only database (a hot standby too).
    let store = PostgresStorage::open(server.config("ro", "app")).expect("open read-only");
    let message = io_message(put(&store, &["doc", "b"], b"2"));
    assert!(message.contains("database is read-only"), "{message}");
    assert_eq!(
        store.get(&key(&["doc", "a"])).expect("read"),
        Some(b"1".to_vec())
    );
    assert_eq!(store.range(&[]).expect("range").len(), 1);
    assert_eq!(store.get(&key(&["doc", "b"])).expect("read"), None);
    // A schema that does not exist yet cannot be created there, and open says why.
    match PostgresStorage::open(server.config("ro", "fresh")) {
        Err(error @ PgStoreError::ReadOnly { .. }) => {
            assert!(
                error.to_string().contains("database is read-only"),
                "{error}"
            )
        }
        other => panic!("expected ReadOnly, got {other:?}"),
    }

    server.sql(
        "postgres",
        "ALTER DATABASE ro RESET default_transaction_read_only",
    );
    let store = PostgresStorage::open(server.config("ro", "app")).expect("open writable");
    put(&store, &["doc", "b"], b"2").expect("writable again");
}

#[test]
fn acknowledged_writes_survive_a_crash_of_the_server() {
    let Some(server) = pg::start_or_skip("acknowledged_writes_survive_a_crash") else {
        return;
    };
    let store = Arc::new(PostgresStorage::open(server.config("postgres", "crash")).expect("open"));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (store, acknowledged) = (Arc::clone(&store), Arc::clone(&acknowledged));
        std::thread::spawn(move || {
            // Two keys per batch: after the crash a batch is there whole or not at all.
            for i in 0u32.. {
                let mut batch = WriteBatch::new();
                let value = i.to_be_bytes().repeat(50);
                batch
                    .put(key(&["crash", &format!("{i:06}"), "a"]), value.clone())
                    .put(key(&["crash", &format!("{i:06}"), "b"]), value);
                if store.write(batch).is_err() {
                    return i;
                }
                acknowledged.lock().expect("lock").push(i);
            }
            unreachable!()
        })
    };
    // Crash while the writer is mid-stream.
    eventually("300 acknowledged writes", || {
        let n = acknowledged.lock().expect("lock").len();
        if n >= 300 {
            Ok(())
        } else {
            Err(StorageError::Closed)
        }
    });
    server.crash();
    let first_failed = writer.join().expect("writer");
    server.start_server();

    let reopened = PostgresStorage::open(server.config("postgres", "crash")).expect("reopen");
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= 300);
    for i in &acknowledged {
        let value = i.to_be_bytes().repeat(50);
        for part in ["a", "b"] {
            assert_eq!(
                reopened
                    .get(&key(&["crash", &format!("{i:06}"), part]))
                    .expect("get"),
                Some(value.clone()),
                "acknowledged write {i} ({part}) lost in the crash\n{}",
                server.log()
            );
        }
    }
    // The write that failed at the crash may or may not have committed, but whole.
    let pending = reopened
        .range(&["crash".to_string(), format!("{first_failed:06}")])
        .expect("range");
    assert!(pending.is_empty() || pending.len() == 2, "{pending:?}");
    assert_eq!(
        reopened.range(&["crash".to_string()]).expect("range").len(),
        2 * (acknowledged.len() + pending.len() / 2)
    );
}

#[test]
fn a_frozen_server_costs_a_timeout_not_a_hang() {
    let Some(server) = pg::start_or_skip("a_frozen_server_costs_a_timeout_not_a_hang") else {
        return;
    };
    let store = Arc::new(PostgresStorage::open(server.config("postgres", "frozen")).expect("open"));
    put(&*store, &["doc", "a"], b"1").expect("write");

    // Every server process stopped: sockets stay open, nothing answers, and the
    // server-side statement_timeout cannot fire. Only the client's own bound helps.
    server.freeze();
    let message = io_message(bounded(&store, |s| put(s, &["doc", "b"], b"2")));
    assert!(message.contains("did not answer within"), "{message}");
    server.thaw();

    eventually("a write after the thaw", || {
        put(&*store, &["doc", "c"], b"3")
    });
    assert_eq!(
        store.get(&key(&["doc", "a"])).expect("get"),
        Some(b"1".to_vec())
    );
    assert_eq!(
        store.get(&key(&["doc", "c"])).expect("get"),
        Some(b"3".to_vec())
    );
}

#[test]
fn no_server_at_all_is_reported_without_the_password() {
    // Needs no PostgreSQL: a socket directory with nothing listening.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = PgConfig::from_connection_string(&format!(
        "host={} port=5432 user=peerdoc password=s3cret dbname=peerdoc",
        dir.path().display()
    ))
    .expect("config")
    .connect_timeout(Duration::from_secs(2));
    let error = PostgresStorage::open(config).expect_err("nothing listens there");
    let message = error.to_string();
    assert!(
        matches!(error, PgStoreError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(
        message.starts_with(&format!(
            "database unreachable at {}/.s.PGSQL.5432 (database peerdoc, user peerdoc)",
            dir.path().display()
        )),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    assert!(!format!("{error:?}").contains("s3cret"));
}
