//! How a [`PostgresStorage`](crate::PostgresStorage) connects: [`PgConfig`].

use std::str::FromStr;
use std::time::Duration;

use crate::error::PgStoreError;

/// Where the database is, which schema holds the store, and the bounds on every wait.
///
/// Built from a libpq-style connection string (`postgres://user:pass@host:5432/db` or
/// `host=/run/postgresql dbname=peerdoc user=peerdoc`), then adjusted with the
/// consuming setters. The password stays inside; nothing this crate prints shows it
/// ([`PgConfig::target`]).
#[derive(Clone)]
pub struct PgConfig {
    pub(crate) connection: tokio_postgres::Config,
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) statement_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
}

impl PgConfig {
    /// Parses a libpq connection string or `postgres://` URL; every other setting gets
    /// its default: schema `peerdoc`, 4 connections, 5 s to connect, 30 s per
    /// statement, reconnection backoff from 100 ms doubling to 5 s.
    pub fn from_connection_string(connection: &str) -> Result<Self, PgStoreError> {
        // tokio-postgres' parse error displays only its kind, never the string (which
        // may hold a password).
        let connection = tokio_postgres::Config::from_str(connection)
            .map_err(|e| PgStoreError::InvalidConfig(format!("connection string: {e}")))?;
        Ok(Self {
            connection,
            schema: "peerdoc".into(),
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        })
    }

    /// The PostgreSQL schema (namespace) that holds the store's tables, created when
    /// missing. Lower-case ASCII letters, digits and `_`, starting with a letter or `_`,
    /// at most 63 bytes. Two stores in different schemas of one database never see each
    /// other's entries.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// At most this many connections are open at once (at least 1). A caller that finds
    /// all of them busy waits at most the statement timeout.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The longest a new connection may take, TCP or Unix socket, login included.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The server cancels a statement that runs longer (`statement_timeout`); the
    /// client gives up on the whole operation a second later, for a server that cannot
    /// even cancel (frozen, or a network that drops everything), and drops the
    /// connection.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// After a failed connection attempt, calls fail at once (with the last error) for
    /// `initial`, then twice as long after each further failure, up to `max`; the first
    /// call after that tries again. A success resets it.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// Where the store connects, for messages and logs: hosts (or socket paths),
    /// database and user; never the password.
    pub fn target(&self) -> String {
        describe_target(&self.connection)
    }

    /// How long the client waits for one operation before it drops the connection.
    pub(crate) fn operation_timeout(&self) -> Duration {
        self.statement_timeout + Duration::from_secs(1)
    }

    /// Whether this configuration can work (a well-formed schema name, a pool of at
    /// least one, a host), without connecting. [`PostgresStorage::open`](crate::PostgresStorage::open)
    /// checks the same.
    pub fn check(&self) -> Result<(), PgStoreError> {
        self.validate()
    }

    pub(crate) fn validate(&self) -> Result<(), PgStoreError> {
        let schema = self.schema.as_bytes();
        let well_formed = !schema.is_empty()
            && schema.len() <= 63
            && (schema[0].is_ascii_lowercase() || schema[0] == b'_')
            && schema
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !well_formed {
            return Err(PgStoreError::InvalidConfig(format!(
                "schema {:?}: use lower-case ASCII letters, digits and _, starting with a \
                 letter or _, at most 63 bytes",
                self.schema
            )));
        }
        if self.pool_size == 0 {
            return Err(PgStoreError::InvalidConfig(
                "pool size 0: at least one connection is needed".into(),
            ));
        }
        if self.connection.get_hosts().is_empty() {
            return Err(PgStoreError::InvalidConfig(
                "the connection string names no host (host=… or postgres://host/…)".into(),
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("target", &self.target())
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .finish()
    }
}

/// `host:port` or `socket-dir/.s.PGSQL.port` for each host, then the database and user.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            // libpq: one port for all hosts, or one per host; 5432 when none is given.
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(dir) => {
                    format!("{}/.s.PGSQL.{port}", dir.display())
                }
            }
        })
        .collect();
    let user = config.get_user().unwrap_or("(default user)");
    let dbname = config.get_dbname().unwrap_or(user);
    format!("{} (database {dbname}, user {user})", hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_never_shows_the_password() {
        let config =
            PgConfig::from_connection_string("postgres://alice:s3cret@db.example:6543/cloud")
                .unwrap();
        let target = config.target();
        assert_eq!(target, "db.example:6543 (database cloud, user alice)");
        assert!(!format!("{config:?}").contains("s3cret"));
        let unix = PgConfig::from_connection_string("host=/run/pg user=bob").unwrap();
        assert_eq!(
            unix.target(),
            "/run/pg/.s.PGSQL.5432 (database bob, user bob)"
        );
    }

    #[test]
    fn a_bad_connection_string_is_refused_without_echoing_it() {
        let error = PgConfig::from_connection_string("postgres://u:s3cret@h:notaport/db")
            .unwrap_err()
            .to_string();
        assert!(error.contains("connection string"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn schema_names_are_checked() {
        let base = PgConfig::from_connection_string("host=/tmp").unwrap();
        assert!(base.clone().schema("peerdoc_team_1").validate().is_ok());
        for bad in ["", "Peerdoc", "1abc", "a\"b", "a;drop", &"x".repeat(64)] {
            assert!(base.clone().schema(bad).validate().is_err(), "{bad:?}");
        }
        assert!(base.pool_size(0).validate().is_err());
    }
}
