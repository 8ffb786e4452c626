//! The tables, the statements, and the idempotent creation of both.
//!
//! ```sql
//! CREATE TABLE <schema>.peerdoc_meta (name text PRIMARY KEY, value text NOT NULL);
//! -- ('layout_version', '1')
//! CREATE TABLE <schema>.peerdoc_entries (
//!     key   bytea  PRIMARY KEY,  -- peerdoc_store::key encoding: byte order = key order
//!     value bytea  NOT NULL,     -- STORAGE EXTERNAL: automerge data is compressed already
//!     crc32 bigint NOT NULL      -- CRC-32 of key bytes ++ value, checked on every read
//! );
//! ```

/// The newest layout this build writes and reads.
pub(crate) const LAYOUT_VERSION: u32 = 1;

/// Every statement, with the schema name spliced in (checked by
/// [`PgConfig::validate`](crate::PgConfig) to be a plain lower-case identifier).
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub(crate) schema: String,
    pub(crate) get: String,
    pub(crate) range_bounded: String,
    pub(crate) range_all: String,
    pub(crate) scan_page: String,
    pub(crate) delete: String,
    pub(crate) upsert: String,
    pub(crate) notify: String,
    pub(crate) meta_exists: String,
    pub(crate) layout_version: String,
    pub(crate) create: String,
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let entries = format!("\"{schema}\".peerdoc_entries");
        let meta = format!("\"{schema}\".peerdoc_meta");
        Self {
            schema: schema.to_string(),
            get: format!("SELECT value, crc32 FROM {entries} WHERE key = $1"),
            range_bounded: format!(
                "SELECT key, value, crc32 FROM {entries} WHERE key >= $1 AND key < $2 ORDER BY key"
            ),
            range_all: format!("SELECT key, value, crc32 FROM {entries} ORDER BY key"),
            // A page of the whole table after $1 (every key is longer than the empty
            // one): at most $2 rows, none after the row that brings the values to $3
            // bytes, and always the first. octet_length reads the TOAST header, not the
            // value; the window runs in key order, so the scan stops at the LIMIT.
            scan_page: format!(
                "SELECT key, value, crc32 FROM ( \
                     SELECT key, value, crc32, row_number() OVER w AS n, \
                         sum(octet_length(value)) OVER w - octet_length(value) AS before \
                     FROM {entries} WHERE key > $1 WINDOW w AS (ORDER BY key) \
                     ORDER BY key LIMIT $2 \
                 ) page WHERE n = 1 OR before < $3 ORDER BY key"
            ),
            delete: format!("DELETE FROM {entries} WHERE key = ANY($1)"),
            upsert: format!(
                "INSERT INTO {entries} (key, value, crc32) \
                 SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::int8[]) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, crc32 = EXCLUDED.crc32"
            ),
            notify: format!(
                "SELECT pg_notify('{}', p) FROM unnest($1::text[]) AS p",
                crate::notify::CHANNEL
            ),
            // Read-only servers (standbys) can answer this: the schema is only created
            // when it is missing, so a read-only store opens once it exists.
            meta_exists: format!("SELECT to_regclass('{meta}') IS NOT NULL"),
            layout_version: format!("SELECT value FROM {meta} WHERE name = 'layout_version'"),
            // One transaction under an advisory lock, so two daemons opening the same
            // new schema at once do not race on the catalog.
            create: format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock(hashtext('peerdoc-store-postgres'));
                 CREATE SCHEMA IF NOT EXISTS \"{schema}\";
                 CREATE TABLE IF NOT EXISTS {meta} (
                     name text PRIMARY KEY,
                     value text NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS {entries} (
                     key bytea PRIMARY KEY,
                     value bytea NOT NULL,
                     crc32 bigint NOT NULL
                 );
                 ALTER TABLE {entries} ALTER COLUMN value SET STORAGE EXTERNAL;
                 INSERT INTO {meta} (name, value) VALUES ('layout_version', '{LAYOUT_VERSION}')
                     ON CONFLICT (name) DO NOTHING;
                 COMMIT;"
            ),
        }
    }
}

/// The smallest byte string greater than every string that starts with `prefix`, or
/// `None` when there is none (`prefix` empty or all `0xFF`).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_bounds_exactly_the_prefixed_strings() {
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(&[0xFF, 0xFF]), None);
        assert_eq!(
            prefix_successor(&[0x61, 0x00, 0x01]),
            Some(vec![0x61, 0x00, 0x02])
        );
        assert_eq!(prefix_successor(&[0x61, 0xFF]), Some(vec![0x62]));
        let prefix = [0x61, 0x00, 0x01];
        let end = prefix_successor(&prefix).unwrap();
        for inside in [&[0x61, 0x00, 0x01][..], &[0x61, 0x00, 0x01, 0xFF, 0xFF]] {
            assert!(inside >= &prefix[..] && inside < &end[..]);
        }
        for outside in [&[0x61, 0x00][..], &[0x61, 0x00, 0x02], &[0x61, 0x01]] {
            assert!(!(outside >= &prefix[..] && outside < &end[..]));
        }
    }
}
