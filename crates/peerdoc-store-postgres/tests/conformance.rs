//! The core's storage conformance suite, unchanged, on PostgreSQL: each fresh store gets
//! a schema of its own in one throwaway server (`support/pg.rs`).

#[path = "support/pg.rs"]
mod pg;

use std::sync::atomic::{AtomicUsize, Ordering};

use peerdoc_core::Storage;
use peerdoc_core::storage::conformance;
use peerdoc_store_postgres::PostgresStorage;

#[test]
fn postgres_storage_passes_conformance() {
    let Some(server) = pg::start_or_skip("postgres_storage_passes_conformance") else {
        return;
    };
    let next = AtomicUsize::new(0);
    conformance::run_all(&|| {
        let schema = format!("conformance_{}", next.fetch_add(1, Ordering::Relaxed));
        PostgresStorage::open(server.config("postgres", &schema)).expect("open")
    });
    assert_eq!(
        next.load(Ordering::Relaxed),
        12,
        "every check had a fresh store"
    );
}

#[test]
fn conformance_holds_after_reopen_and_server_restart() {
    let Some(server) = pg::start_or_skip("conformance_holds_after_reopen_and_server_restart")
    else {
        return;
    };
    let before = {
        let store = PostgresStorage::open(server.config("postgres", "reopen")).expect("open");
        conformance::range_is_sorted(&store);
        conformance::binary_and_unicode_round_trip(&store);
        conformance::many_keys(&store);
        store.range(&[]).expect("range")
    };
    server.stop();
    server.start_server();
    let store = PostgresStorage::open(server.config("postgres", "reopen")).expect("reopen");
    assert_eq!(store.range(&[]).expect("range"), before);
    // Opening an existing schema again changes nothing (the layout is created once).
    let again = PostgresStorage::open(server.config("postgres", "reopen")).expect("reopen");
    assert_eq!(again.range(&[]).expect("range"), before);
}

/// The paged scan `peerdoc store copy` reads a whole store with (one indexed query a
/// page, bounded by entries and by bytes) gives exactly what `range` gives.
#[test]
fn postgres_storage_scans_in_pages() {
    let Some(server) = pg::start_or_skip("postgres_storage_scans_in_pages") else {
        return;
    };
    let store = PostgresStorage::open(server.config("postgres", "scan")).expect("open");
    peerdoc_store::check_scan_pages(&store);
}
