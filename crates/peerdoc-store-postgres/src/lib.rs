//! peerdoc's PostgreSQL-backed [`Storage`](peerdoc_core::Storage), for the cloud tier.
//!
//! [`PostgresStorage`] keeps automerge-repo's key layout (`[docId, "snapshot", hash]`,
//! …) in one table of a schema of its own:
//!
//! - **Keys** are stored as `bytea` in `peerdoc-store`'s order-preserving encoding
//!   ([`peerdoc_store::key`]): byte order equals component order, and the encoding of a
//!   component prefix is a byte prefix of exactly the keys under it. So `range(prefix)`
//!   is `key >= enc(prefix) AND key < successor(enc(prefix)) ORDER BY key` on the
//!   primary-key btree, and PostgreSQL compares `bytea` with `memcmp` (no collation),
//!   so rows come back in `StorageKey` order. A `text[]` column was the other candidate
//!   and is ruled out: `text` cannot hold the NUL character keys may contain, and its
//!   order depends on the database's collation.
//! - **Values** are `bytea` beside a CRC-32 of key bytes and value, checked on every
//!   read ([`PgStoreError::ChecksumMismatch`]): end to end, whether or not the cluster
//!   has page checksums (`initdb --data-checksums`, off by default).
//! - **`write`** reduces the batch to its final effect per key (a later op wins) and
//!   applies it as one `DELETE … = ANY($1)` and one `INSERT … SELECT unnest(…) ON
//!   CONFLICT DO UPDATE` inside **one transaction**, returning only after `COMMIT`
//!   succeeded with `synchronous_commit = on` (set on every session): the commit's WAL
//!   record is flushed, so the write survives a crash of PostgreSQL or of its machine,
//!   as far as the server's `fsync` setting and its disks honour it.
//! - **Failures** are named ([`PgStoreError`]): unreachable, read-only, out of space,
//!   login refused, timed out. No call waits longer than the connect timeout or the
//!   statement timeout plus a second, a server that comes back is reconnected to on
//!   the next call after a backoff, and no message shows the password.
//!
//! `docs/storage.md` ("PostgreSQL backend") has the guarantees and figures.
//!
//! ```no_run
//! use peerdoc_core::{Storage, StorageKey, WriteBatch};
//! use peerdoc_store_postgres::{PgConfig, PostgresStorage};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PgConfig::from_connection_string("postgres://peerdoc@localhost/peerdoc")?
//!     .schema("team_wedding")
//!     .pool_size(4);
//! let store = PostgresStorage::open(config)?;
//!
//! let key = StorageKey::new(["2ZXwKc3jS1pXDD6ruZ4Fr4Q4Gh1P", "incremental", "ab12"]);
//! let mut batch = WriteBatch::new();
//! batch.put(key.clone(), b"change bytes".to_vec());
//! store.write(batch)?; // committed, WAL flushed, once this returns
//!
//! assert_eq!(store.get(&key)?, Some(b"change bytes".to_vec()));
//! assert_eq!(store.range(&["2ZXwKc3jS1pXDD6ruZ4Fr4Q4Gh1P".to_string()])?.len(), 1);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod config;
mod error;
pub mod notify;
mod pool;
mod postgres_storage;
mod schema;
mod session;

pub use config::PgConfig;
pub use error::PgStoreError;
pub use notify::{ChangeFeed, StoreChange};
pub use postgres_storage::{MAX_KEY_BYTES, PostgresStorage};
