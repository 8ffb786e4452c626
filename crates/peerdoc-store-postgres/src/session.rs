//! One connection: a tokio-postgres client driven by its own current-thread runtime,
//! with every operation bounded by the client-side timeout.
//!
//! This is what the synchronous `postgres` crate does per connection too (a private
//! current-thread runtime that runs only inside its calls); doing it here adds the one
//! thing that crate lacks: a client-side bound on each call, so a server that stopped
//! answering without closing the socket (frozen, or a network that drops packets) costs
//! a timeout, not a hung storage thread. No runtime is installed for anyone else, and
//! none is running between calls.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, Statement};

use crate::config::PgConfig;
use crate::error::{self, FailureKind, OpFailure, PgStoreError};
use crate::schema::Sql;

/// The statements a session prepares on first use (cheap to clone: `Arc`s).
#[derive(Debug, Clone)]
struct Prepared {
    get: Statement,
    range_bounded: Statement,
    range_all: Statement,
    scan_page: Statement,
    delete: Statement,
    upsert: Statement,
    notify: Statement,
}

/// The rows of a range read: encoded key, value, stored CRC.
pub(crate) type RawEntry = (Vec<u8>, Vec<u8>, i64);

/// A batch reduced to its final effect: keys to delete, and keys, values and CRCs to
/// upsert (disjoint key sets, so their order does not matter).
#[derive(Debug, Default)]
pub(crate) struct CollapsedBatch {
    pub(crate) deletes: Vec<Vec<u8>>,
    pub(crate) put_keys: Vec<Vec<u8>>,
    pub(crate) put_values: Vec<Vec<u8>>,
    pub(crate) put_crcs: Vec<i64>,
    /// `NOTIFY` payloads sent with the transaction (`crate::notify`).
    pub(crate) notices: Vec<String>,
}

pub(crate) struct Session {
    // Dropped before the runtime: the client's channel closes, then the runtime drops
    // the connection task and its socket.
    client: Client,
    prepared: Option<Prepared>,
    runtime: tokio::runtime::Runtime,
    operation_timeout: Duration,
    /// Whether the session served an earlier call (it may have gone stale since).
    pub(crate) reused: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("closed", &self.client.is_closed())
            .field("reused", &self.reused)
            .finish()
    }
}

impl Session {
    /// Connects, logs in and sets the session's parameters, within the connect timeout.
    pub(crate) fn connect(config: &PgConfig, target: &str) -> Result<Session, PgStoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| PgStoreError::Client(format!("starting the I/O runtime: {e}")))?;
        let mut connection_config = config.connection.clone();
        connection_config
            .connect_timeout(config.connect_timeout)
            .application_name("peerdoc");
        let statement_ms = config.statement_timeout.as_millis();
        // synchronous_commit is set here, not trusted to the server's default: COMMIT
        // returns only after its WAL record is flushed (on the primary; a synchronous
        // standby as the server is configured). idle_in_transaction ends a transaction
        // whose client went away without closing its socket.
        let setup = format!(
            "SET synchronous_commit = on; \
             SET statement_timeout = {statement_ms}; \
             SET idle_in_transaction_session_timeout = {}; \
             SET default_transaction_isolation = 'read committed'",
            statement_ms * 2 + 1000
        );
        let connect_timeout = config.connect_timeout;
        let client = runtime.block_on(async {
            let connecting = async {
                let (client, connection) = connection_config
                    .connect(NoTls)
                    .await
                    .map_err(|e| error::connect_error(target, &e))?;
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "PostgreSQL connection ended");
                    }
                });
                client
                    .batch_execute(&setup)
                    .await
                    .map_err(|e| error::connect_error(target, &e))?;
                Ok(client)
            };
            match tokio::time::timeout(connect_timeout, connecting).await {
                Ok(result) => result,
                Err(_) => Err(error::connect_timed_out(target, connect_timeout)),
            }
        })?;
        Ok(Session {
            client,
            prepared: None,
            runtime,
            operation_timeout: config.operation_timeout(),
            reused: false,
        })
    }

    /// Runs `work` on this session's runtime, bounded by the operation timeout.
    fn bounded<T, F>(
        runtime: &tokio::runtime::Runtime,
        timeout: Duration,
        during: &'static str,
        work: F,
    ) -> Result<T, OpFailure>
    where
        F: Future<Output = Result<T, OpFailure>>,
    {
        runtime.block_on(async {
            match tokio::time::timeout(timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(OpFailure {
                    kind: FailureKind::TimedOut {
                        during,
                        waited: timeout,
                    },
                    may_have_applied: true,
                }),
            }
        })
    }

    /// The session's prepared statements, prepared on first use.
    fn prepared(&mut self, sql: &Sql) -> Result<Prepared, OpFailure> {
        if let Some(prepared) = &self.prepared {
            return Ok(prepared.clone());
        }
        let client = &self.client;
        let prepared = Self::bounded(&self.runtime, self.operation_timeout, "prepare", async {
            let prepare = |text: &str| {
                let text = text.to_string();
                async move { client.prepare(&text).await.map_err(not_applied) }
            };
            Ok(Prepared {
                get: prepare(&sql.get).await?,
                range_bounded: prepare(&sql.range_bounded).await?,
                range_all: prepare(&sql.range_all).await?,
                scan_page: prepare(&sql.scan_page).await?,
                delete: prepare(&sql.delete).await?,
                upsert: prepare(&sql.upsert).await?,
                notify: prepare(&sql.notify).await?,
            })
        })?;
        self.prepared = Some(prepared.clone());
        Ok(prepared)
    }

    /// Runs plain SQL (the schema creation), bounded.
    pub(crate) fn batch_execute(&mut self, text: &str) -> Result<(), OpFailure> {
        let client = &self.client;
        Self::bounded(&self.runtime, self.operation_timeout, "schema", async {
            client.batch_execute(text).await.map_err(not_applied)
        })
    }

    /// One text cell of the first row of `text` (`None` without a row), bounded.
    pub(crate) fn query_text(&mut self, text: &str) -> Result<Option<String>, OpFailure> {
        let client = &self.client;
        Self::bounded(&self.runtime, self.operation_timeout, "schema", async {
            let row = client.query_opt(text, &[]).await.map_err(not_applied)?;
            Ok(row.map(|row| row.get::<_, String>(0)))
        })
    }

    /// Whether `text`'s single boolean answer is true, bounded.
    pub(crate) fn query_bool(&mut self, text: &str) -> Result<bool, OpFailure> {
        let client = &self.client;
        Self::bounded(&self.runtime, self.operation_timeout, "schema", async {
            let row = client.query_one(text, &[]).await.map_err(not_applied)?;
            Ok(row.get::<_, bool>(0))
        })
    }

    /// The stored value and CRC under one encoded key.
    pub(crate) fn get(
        &mut self,
        sql: &Sql,
        key: &[u8],
    ) -> Result<Option<(Vec<u8>, i64)>, OpFailure> {
        let prepared = self.prepared(sql)?;
        let client = &self.client;
        Self::bounded(&self.runtime, self.operation_timeout, "get", async {
            let row = client
                .query_opt(&prepared.get, &[&key])
                .await
                .map_err(not_applied)?;
            Ok(row.map(|row| (row.get(0), row.get(1))))
        })
    }

    /// Every row with `start <= key < end` (no bounds for an empty prefix), in key order.
    pub(crate) fn range(
        &mut self,
        sql: &Sql,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<RawEntry>, OpFailure> {
        let prepared = self.prepared(sql)?;
        let client = &self.client;
        Self::bounded(&self.runtime, self.operation_timeout, "range", async {
            let rows = match end {
                Some(end) => client
                    .query(&prepared.range_bounded, &[&start, &end])
                    .await
                    .map_err(not_applied)?,
                // No upper bound: only the empty prefix in our key encoding (whose
                // prefixes end in 0x01), but correct for any bytes.
                None => client
                    .query(&prepared.range_all, &[])
                    .await
                    .map_err(not_applied)?
                    .into_iter()
                    .filter(|row| row.get::<_, &[u8]>(0) >= start)
                    .collect(),
            };
            Ok(rows
                .into_iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect())
        })
    }

    /// A page of rows after `after` in key order: at most `max_rows`, ending with the
    /// row that brings the values to `max_bytes`.
    pub(crate) fn scan_page(
        &mut self,
        sql: &Sql,
        after: &[u8],
        max_rows: i64,
        max_bytes: i64,
    ) -> Result<Vec<RawEntry>, OpFailure> {
        let prepared = self.prepared(sql)?;
        let client = &self.client;
        Self::bounded(&self.runtime, self.operation_timeout, "scan", async {
            let rows = client
                .query(&prepared.scan_page, &[&after, &max_rows, &max_bytes])
                .await
                .map_err(not_applied)?;
            Ok(rows
                .into_iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect())
        })
    }

    /// Applies `batch` in one transaction and returns after COMMIT succeeded.
    pub(crate) fn write(&mut self, sql: &Sql, batch: &CollapsedBatch) -> Result<(), OpFailure> {
        let prepared = self.prepared(sql)?;
        let Session {
            client,
            runtime,
            operation_timeout,
            ..
        } = self;
        Self::bounded(runtime, *operation_timeout, "write", async {
            let transaction = client.transaction().await.map_err(not_applied)?;
            if !batch.notices.is_empty() {
                // Queued with the transaction, delivered only if it commits (first, so
                // that a failing statement after it shows that: tests/notify.rs).
                transaction
                    .execute(&prepared.notify, &[&batch.notices])
                    .await
                    .map_err(not_applied)?;
            }
            if !batch.deletes.is_empty() {
                transaction
                    .execute(&prepared.delete, &[&batch.deletes])
                    .await
                    .map_err(not_applied)?;
            }
            if !batch.put_keys.is_empty() {
                transaction
                    .execute(
                        &prepared.upsert,
                        &[&batch.put_keys, &batch.put_values, &batch.put_crcs],
                    )
                    .await
                    .map_err(not_applied)?;
            }
            // Up to here the server holds an open transaction that a broken connection
            // rolls back; from here on the outcome of a failure is unknown.
            transaction.commit().await.map_err(|error| OpFailure {
                kind: FailureKind::classify(&error),
                may_have_applied: true,
            })
        })
    }
}

/// A failure before anything could have been committed.
fn not_applied(error: tokio_postgres::Error) -> OpFailure {
    OpFailure {
        kind: FailureKind::classify(&error),
        may_have_applied: false,
    }
}
