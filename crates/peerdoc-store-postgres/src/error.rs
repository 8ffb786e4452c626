//! The store's error type, and how driver errors are sorted into it.

use std::time::Duration;

use peerdoc_core::StorageError;
use tokio_postgres::error::SqlState;

/// Why a PostgreSQL store operation failed. No variant ever holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgStoreError {
    /// The configuration cannot work (bad schema name, no host, pool of 0, …).
    #[error("invalid PostgreSQL store configuration: {0}")]
    InvalidConfig(String),
    /// No connection could be made, or the one in use broke (server stopped, crashed,
    /// restarting, network gone). The next call after the backoff tries again.
    #[error("database unreachable at {target}: {detail}")]
    Unreachable {
        /// Where (no password).
        target: String,
        /// The driver's or the server's words.
        detail: String,
    },
    /// The server took longer than the configured bound; the connection was dropped,
    /// so a write in flight may or may not have committed (it was not acknowledged).
    #[error("database at {target} did not answer within {} ms ({during}); the connection was dropped", waited.as_millis())]
    TimedOut {
        /// Where (no password).
        target: String,
        /// What was being done.
        during: &'static str,
        /// How long the client waited.
        waited: Duration,
    },
    /// The server refuses writes: `default_transaction_read_only`, a hot standby, or a
    /// read-only role. Reads still work.
    #[error("database is read-only at {target}: {detail}")]
    ReadOnly {
        /// Where (no password).
        target: String,
        /// The server's words.
        detail: String,
    },
    /// The server ran out of disk (SQLSTATE 53100). Nothing of the batch was applied.
    #[error("database out of space at {target}: {detail}")]
    OutOfSpace {
        /// Where (no password).
        target: String,
        /// The server's words.
        detail: String,
    },
    /// The server refused the login (wrong password, unknown role, `pg_hba.conf`).
    #[error("database refused the login at {target}: {detail}")]
    LoginRefused {
        /// Where (no password).
        target: String,
        /// The server's words.
        detail: String,
    },
    /// Every connection of the pool stayed busy for the whole wait.
    #[error("all {size} database connections stayed busy for {} ms", waited.as_millis())]
    PoolExhausted {
        /// The pool's size.
        size: usize,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The schema was created by a newer peerdoc; this one does not know its layout.
    #[error(
        "schema {schema} is at layout version {found}; this peerdoc knows versions up to {known}"
    )]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// The stored version.
        found: String,
        /// The newest this build knows.
        known: u32,
    },
    /// A stored value does not match the CRC-32 stored beside it (changed outside
    /// peerdoc, or damaged below PostgreSQL).
    #[error(
        "value under key {key} fails its checksum (stored {stored:#010x}, computed {computed:#010x}, {len} bytes)"
    )]
    ChecksumMismatch {
        /// The key.
        key: String,
        /// The CRC stored with it.
        stored: u32,
        /// The CRC of what was read.
        computed: u32,
        /// The value's length as read.
        len: usize,
    },
    /// Stored key bytes do not decode (written outside peerdoc).
    #[error("stored key bytes {hex} do not decode: {reason}")]
    UndecodableKey {
        /// The bytes, in hex.
        hex: String,
        /// Why.
        reason: String,
    },
    /// A key violates the storage contract.
    #[error(transparent)]
    InvalidKey(StorageError),
    /// Any other error the server reported.
    #[error("database error at {target}: {message} (SQLSTATE {code})")]
    Database {
        /// Where (no password).
        target: String,
        /// The SQLSTATE.
        code: String,
        /// The server's words.
        message: String,
    },
    /// The client itself failed (its I/O runtime could not start, a protocol error).
    #[error("PostgreSQL client failed: {0}")]
    Client(String),
}

impl From<PgStoreError> for StorageError {
    fn from(error: PgStoreError) -> Self {
        match error {
            PgStoreError::InvalidKey(inner) => inner,
            full @ PgStoreError::OutOfSpace { .. } => StorageError::Full(full.to_string()),
            other => StorageError::Io(other.to_string()),
        }
    }
}

/// A failed operation on one connection, before it is named with the target.
#[derive(Debug)]
pub(crate) struct OpFailure {
    pub(crate) kind: FailureKind,
    /// Whether a write may have committed (COMMIT was sent): such a write is never
    /// retried, and is reported failed (not acknowledged) all the same.
    pub(crate) may_have_applied: bool,
}

#[derive(Debug)]
pub(crate) enum FailureKind {
    /// The connection broke: it is discarded.
    Lost(String),
    /// The client's own bound ran out: the connection is discarded.
    TimedOut {
        during: &'static str,
        waited: Duration,
    },
    /// The server answered with an error; the connection is still good.
    Db { code: SqlState, message: String },
    /// A client-side error that is not about the connection.
    Client(String),
    /// The store's own refusal (a newer layout, …), already named.
    Store(PgStoreError),
}

impl FailureKind {
    /// Sorts a driver error.
    pub(crate) fn classify(error: &tokio_postgres::Error) -> Self {
        if let Some(db) = error.as_db_error() {
            let code = db.code().clone();
            let message = match db.detail() {
                Some(detail) => format!("{}: {}", db.message(), detail),
                None => db.message().to_string(),
            };
            return if is_connection_state(&code) {
                FailureKind::Lost(message)
            } else {
                FailureKind::Db { code, message }
            };
        }
        if error.is_closed() || has_io_source(error) {
            return FailureKind::Lost(chain(error));
        }
        FailureKind::Client(chain(error))
    }

    /// Whether the connection must not go back to the pool.
    pub(crate) fn connection_unusable(&self) -> bool {
        matches!(self, FailureKind::Lost(_) | FailureKind::TimedOut { .. })
    }

    /// Names the failure with the target.
    pub(crate) fn into_error(self, target: &str) -> PgStoreError {
        let target = target.to_string();
        match self {
            FailureKind::Lost(detail) => PgStoreError::Unreachable {
                target,
                detail: format!("connection lost: {detail}"),
            },
            FailureKind::TimedOut { during, waited } => PgStoreError::TimedOut {
                target,
                during,
                waited,
            },
            FailureKind::Db { code, message } => db_error(target, &code, message),
            FailureKind::Client(detail) => PgStoreError::Client(detail),
            FailureKind::Store(error) => error,
        }
    }
}

/// Sorts an error from opening a connection: anything that is not the server's own
/// refusal means the server could not be reached.
pub(crate) fn connect_error(target: &str, error: &tokio_postgres::Error) -> PgStoreError {
    match FailureKind::classify(error) {
        FailureKind::Db { code, message } => db_error(target.to_string(), &code, message),
        FailureKind::Lost(detail) | FailureKind::Client(detail) => PgStoreError::Unreachable {
            target: target.to_string(),
            detail,
        },
        FailureKind::TimedOut { waited, .. } => connect_timed_out(target, waited),
        FailureKind::Store(error) => error,
    }
}

/// The connect timeout ran out.
pub(crate) fn connect_timed_out(target: &str, waited: Duration) -> PgStoreError {
    PgStoreError::Unreachable {
        target: target.to_string(),
        detail: format!("no connection within {} ms", waited.as_millis()),
    }
}

fn db_error(target: String, code: &SqlState, message: String) -> PgStoreError {
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        PgStoreError::ReadOnly {
            target,
            detail: message,
        }
    } else if *code == SqlState::DISK_FULL {
        PgStoreError::OutOfSpace {
            target,
            detail: message,
        }
    } else if *code == SqlState::INVALID_PASSWORD
        || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        PgStoreError::LoginRefused {
            target,
            detail: message,
        }
    } else if is_connection_state(code) {
        PgStoreError::Unreachable {
            target,
            detail: message,
        }
    } else {
        PgStoreError::Database {
            target,
            code: code.code().to_string(),
            message,
        }
    }
}

/// Class 08 (connection exception) and the shutdown/startup states of class 57.
fn is_connection_state(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
}

fn has_io_source(error: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The error and its causes, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_space_is_storage_full_and_the_rest_is_io() {
        let full = PgStoreError::OutOfSpace {
            target: "t".into(),
            detail: "could not extend file".into(),
        };
        match StorageError::from(full) {
            StorageError::Full(text) => assert!(text.contains("database out of space at t")),
            other => panic!("{other:?}"),
        }
        let read_only = db_error(
            "t".into(),
            &SqlState::READ_ONLY_SQL_TRANSACTION,
            "cannot execute INSERT in a read-only transaction".into(),
        );
        match StorageError::from(read_only) {
            StorageError::Io(text) => assert!(text.contains("database is read-only at t")),
            other => panic!("{other:?}"),
        }
    }
}
