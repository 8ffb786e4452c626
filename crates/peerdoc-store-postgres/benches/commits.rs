//! Durable commits per second of `PostgresStorage::write` with 1 and 8 writers, next to
//! the sled store with `Durability::Power` (the cloud profile's default) measured in the
//! same run. Figures only: nothing is asserted.
//!
//! Run: `cargo bench -p peerdoc-store-postgres --bench commits [-- --writes N]`.
//! PostgreSQL is a throwaway server on a Unix socket (`tests/support/pg.rs`, default
//! settings but `fsync=on`, `synchronous_commit=on`); sled's files go under
//! `CARGO_TARGET_TMPDIR`. Each commit is one batch holding one ~200-byte incremental
//! change, as the engine writes a local edit.

#[path = "../tests/support/pg.rs"]
mod pg;

use std::time::Instant;

use peerdoc_core::{Storage, StorageKey, WriteBatch};
use peerdoc_store::{Durability, SledConfig, SledStorage};
use peerdoc_store_postgres::PostgresStorage;

fn parse_writes() -> usize {
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--writes" {
            return args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("--writes needs a number");
                std::process::exit(2)
            });
        }
    }
    4000
}

fn chunks(writes: usize) -> Vec<(StorageKey, Vec<u8>)> {
    (0..writes)
        .map(|i| {
            let doc = format!("bench-doc-{:04}", i % 50);
            let hash = format!("{:064x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let note = format!(
                "{:02}:{:02} florist confirmed delivery to the barn, table {} gets the \
                 peonies; photographer needs the list by {}:00 ({i})",
                8 + i % 12,
                i % 60,
                i % 40,
                9 + i % 9
            );
            (
                StorageKey::new([doc.as_str(), "incremental", hash.as_str()]),
                note.into_bytes(),
            )
        })
        .collect()
}

/// Commits per second of `writers` threads sharing `items` round-robin.
fn commits_per_second(store: &dyn Storage, items: &[(StorageKey, Vec<u8>)], writers: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for w in 0..writers {
            scope.spawn(move || {
                for (key, value) in items.iter().skip(w).step_by(writers) {
                    let mut batch = WriteBatch::new();
                    batch.put(key.clone(), value.clone());
                    store.write(batch).expect("write");
                }
            });
        }
    });
    items.len() as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let writes = parse_writes();
    let items = chunks(writes);
    println!("{writes} commits of one ~200-byte change each");
    println!("{:<28} {:>8} {:>12}", "store", "writers", "commits/s");

    let tmp = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    for writers in [1, 8] {
        let dir = tempfile::tempdir_in(&tmp).expect("tempdir");
        let config = SledConfig::default().durability(Durability::Power);
        let store = SledStorage::open(dir.path().join("store"), config).expect("open sled");
        let rate = commits_per_second(&store, &items, writers);
        println!("{:<28} {writers:>8} {rate:>12.0}", "sled, durability power");
    }

    let Some(server) = pg::start_or_skip("bench commits") else {
        return;
    };
    for writers in [1, 8] {
        let schema = format!("bench_{writers}");
        let config = server.config("postgres", &schema).pool_size(writers);
        let store = PostgresStorage::open(config).expect("open postgres");
        let rate = commits_per_second(&store, &items, writers);
        println!(
            "{:<28} {writers:>8} {rate:>12.0}",
            "postgres 15, unix socket"
        );
    }
}
