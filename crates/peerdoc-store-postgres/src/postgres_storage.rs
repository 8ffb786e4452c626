//! [`PostgresStorage`]: the [`Storage`] trait over the tables of [`crate::schema`].

use std::collections::BTreeMap;

use peerdoc_core::storage::validate_key;
use peerdoc_core::{Storage, StorageError, StorageKey, WriteBatch, WriteOp};
use peerdoc_store::key::{decode_key, encode_key, encode_prefix};
use peerdoc_store::{Page, ScanStorage};

use crate::config::PgConfig;
use crate::error::{FailureKind, OpFailure, PgStoreError};
use crate::notify::{self, ChangeFeed, StoreChange};
use crate::pool::Pool;
use crate::schema::{LAYOUT_VERSION, Sql, prefix_successor};
use crate::session::{CollapsedBatch, RawEntry, Session};

/// The longest encoded key accepted. A btree index entry must fit in a third of an
/// 8 KiB page (about 2,700 bytes); a longer key is refused as invalid up front rather
/// than failing in the server. automerge-repo's keys are about 100 bytes.
pub const MAX_KEY_BYTES: usize = 2048;

/// A [`Storage`] in a PostgreSQL database. See the crate docs.
pub struct PostgresStorage {
    pool: Pool,
    sql: Sql,
    config: PgConfig,
    /// Names this store in its notices, so that its own feed skips them.
    writer: String,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("schema", &self.sql.schema)
            .field("pool", &self.pool)
            .finish()
    }
}

impl PostgresStorage {
    /// Connects and creates the schema's tables when missing (idempotent; safe with
    /// several daemons opening at once). Fails when the server cannot be reached
    /// within the connect timeout, refuses the login, or holds a newer layout; a
    /// read-only server is fine once the tables exist.
    pub fn open(config: PgConfig) -> Result<Self, PgStoreError> {
        config.validate()?;
        let sql = Sql::new(&config.schema);
        let store = Self {
            pool: Pool::new(config.clone()),
            sql,
            config,
            writer: notify::writer_id(),
        };
        store.with_session(|session| store.ensure_layout(session))?;
        Ok(store)
    }

    /// Where the store is (no password), as its error messages say it.
    pub fn target(&self) -> &str {
        self.pool.target()
    }

    /// The PostgreSQL schema that holds the tables.
    pub fn schema(&self) -> &str {
        &self.sql.schema
    }

    /// Starts listening for what other writers of this schema (other cloud daemons on
    /// the same database) commit: `on_change` hears each document they changed, and
    /// [`StoreChange::Unknown`] whenever notices may have been missed (at the start and
    /// after a lost connection). It runs on the listener's own thread and must not
    /// block. The listener reconnects by itself and stops when the feed is dropped.
    /// See [`crate::notify`] for the protocol.
    pub fn watch(
        &self,
        on_change: impl FnMut(StoreChange) + Send + 'static,
    ) -> Result<ChangeFeed, PgStoreError> {
        notify::start(self.config.clone(), self.writer.clone(), on_change)
            .map_err(|e| PgStoreError::Client(format!("starting the listener thread: {e}")))
    }

    fn ensure_layout(&self, session: &mut Session) -> Result<(), OpFailure> {
        let found = if session.query_bool(&self.sql.meta_exists)? {
            session.query_text(&self.sql.layout_version)?
        } else {
            None
        };
        let found = match found {
            Some(found) => found,
            None => {
                session.batch_execute(&self.sql.create)?;
                tracing::info!(target = %self.target(), schema = %self.sql.schema, "created the peerdoc tables");
                session
                    .query_text(&self.sql.layout_version)?
                    .unwrap_or_default()
            }
        };
        if found.parse::<u32>().is_ok_and(|v| v <= LAYOUT_VERSION) {
            return Ok(());
        }
        Err(OpFailure {
            kind: FailureKind::Store(PgStoreError::SchemaTooNew {
                schema: self.sql.schema.clone(),
                found,
                known: LAYOUT_VERSION,
            }),
            may_have_applied: false,
        })
    }

    /// Runs `op` on a pooled session. A read, or a write that failed before COMMIT was
    /// sent, that lost its connection on a session from an earlier call is tried once
    /// more on a new connection: after a server restart every idle session is dead,
    /// and that should not cost the caller an error.
    fn with_session<T>(
        &self,
        mut op: impl FnMut(&mut Session) -> Result<T, OpFailure>,
    ) -> Result<T, PgStoreError> {
        let mut retried = false;
        loop {
            let mut lease = self.pool.checkout()?;
            let reused = lease.session().reused;
            match op(lease.session()) {
                Ok(value) => return Ok(value),
                Err(failure) => {
                    let retry = !retried
                        && reused
                        && !failure.may_have_applied
                        && matches!(failure.kind, FailureKind::Lost(_));
                    if failure.kind.connection_unusable() {
                        lease.discard();
                    }
                    if retry {
                        retried = true;
                        tracing::debug!(target = %self.target(), "stale PostgreSQL connection; retrying on a new one");
                        continue;
                    }
                    return Err(failure.kind.into_error(self.target()));
                }
            }
        }
    }

    fn checked_key(key: &StorageKey) -> Result<Vec<u8>, PgStoreError> {
        validate_key(key).map_err(PgStoreError::InvalidKey)?;
        let encoded = encode_key(key);
        if encoded.len() > MAX_KEY_BYTES {
            return Err(PgStoreError::InvalidKey(StorageError::InvalidKey {
                key: key.to_string(),
                reason: format!(
                    "{} bytes encoded; the PostgreSQL store takes at most {MAX_KEY_BYTES}",
                    encoded.len()
                ),
            }));
        }
        Ok(encoded)
    }

    fn get_checked(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, PgStoreError> {
        let encoded = Self::checked_key(key)?;
        let Some((value, stored)) =
            self.with_session(|session| session.get(&self.sql, &encoded))?
        else {
            return Ok(None);
        };
        verify(key, &encoded, value, stored).map(Some)
    }

    fn range_checked(&self, prefix: &[String]) -> Result<Vec<(StorageKey, Vec<u8>)>, PgStoreError> {
        let start = encode_prefix(prefix);
        let end = prefix_successor(&start);
        let rows = self.with_session(|session| session.range(&self.sql, &start, end.as_deref()))?;
        Self::decoded(rows)
    }

    fn scan_page_checked(
        &self,
        after: Option<&StorageKey>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<(StorageKey, Vec<u8>)>, PgStoreError> {
        let after = after.map(encode_key).unwrap_or_default();
        let max_rows = i64::try_from(max_entries.max(1)).unwrap_or(i64::MAX);
        let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let rows =
            self.with_session(|session| session.scan_page(&self.sql, &after, max_rows, max_bytes))?;
        Self::decoded(rows)
    }

    /// Decodes the keys of `rows` and checks every value's CRC.
    fn decoded(rows: Vec<RawEntry>) -> Result<Vec<(StorageKey, Vec<u8>)>, PgStoreError> {
        rows.into_iter()
            .map(|(encoded, value, stored)| {
                let key = decode_key(&encoded).map_err(|e| PgStoreError::UndecodableKey {
                    hex: encoded.iter().map(|b| format!("{b:02x}")).collect(),
                    reason: e.to_string(),
                })?;
                let value = verify(&key, &encoded, value, stored)?;
                Ok((key, value))
            })
            .collect()
    }

    fn write_checked(&self, batch: WriteBatch) -> Result<(), PgStoreError> {
        // Every key is checked before anything is sent: a bad key fails the batch whole.
        let mut last_op: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut notices = std::collections::BTreeSet::new();
        for op in batch.into_ops() {
            let key = match &op {
                WriteOp::Put { key, .. } | WriteOp::Delete { key } => key,
            };
            notices.extend(notify::notice_payload(
                &self.sql.schema,
                &self.writer,
                key.components(),
            ));
            match op {
                WriteOp::Put { key, value } => {
                    last_op.insert(Self::checked_key(&key)?, Some(value));
                }
                WriteOp::Delete { key } => {
                    last_op.insert(Self::checked_key(&key)?, None);
                }
            }
        }
        if last_op.is_empty() {
            return Ok(());
        }
        // A later op on a key replaces an earlier one, so the batch reduces to one
        // delete and one upsert statement over disjoint keys, whatever its length.
        let mut collapsed = CollapsedBatch {
            notices: notices.into_iter().collect(),
            ..CollapsedBatch::default()
        };
        for (key, value) in last_op {
            match value {
                Some(value) => {
                    collapsed.put_crcs.push(i64::from(checksum(&key, &value)));
                    collapsed.put_keys.push(key);
                    collapsed.put_values.push(value);
                }
                None => collapsed.deletes.push(key),
            }
        }
        self.with_session(|session| session.write(&self.sql, &collapsed))
    }
}

/// CRC-32 of the encoded key followed by the value, as `peerdoc-store` frames its values:
/// a value that lands under another key fails too.
fn checksum(encoded_key: &[u8], value: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(encoded_key);
    hasher.update(value);
    hasher.finalize()
}

fn verify(
    key: &StorageKey,
    encoded_key: &[u8],
    value: Vec<u8>,
    stored: i64,
) -> Result<Vec<u8>, PgStoreError> {
    let computed = checksum(encoded_key, &value);
    if i64::from(computed) == stored {
        return Ok(value);
    }
    tracing::error!(key = %key, stored, computed, len = value.len(), "PostgreSQL value fails its checksum");
    Err(PgStoreError::ChecksumMismatch {
        key: key.to_string(),
        stored: stored as u32,
        computed,
        len: value.len(),
    })
}

/// Pages of the whole table in key order, for `peerdoc store copy`
/// ([`peerdoc_store::copy_store`]): one indexed query a page.
impl ScanStorage for PostgresStorage {
    fn scan_page(
        &self,
        after: Option<&StorageKey>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError> {
        Ok(self.scan_page_checked(after, max_entries, max_bytes)?)
    }
}

impl Storage for PostgresStorage {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.get_checked(key)?)
    }

    fn range(&self, prefix: &[String]) -> Result<Vec<(StorageKey, Vec<u8>)>, StorageError> {
        Ok(self.range_checked(prefix)?)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        Ok(self.write_checked(batch)?)
    }
}
