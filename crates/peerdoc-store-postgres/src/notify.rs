//! Telling the other writers of a schema what changed: `NOTIFY` on write, a
//! [`ChangeFeed`] that `LISTEN`s.
//!
//! Several cloud daemons share one schema; each keeps documents in memory and must hear
//! of a change another one committed. Every write that puts or deletes a document's
//! chunks or catalog record sends, inside its transaction, one notice per document on
//! the channel [`CHANNEL`] with the payload `"<schema> <writer> <docId>"`. PostgreSQL
//! delivers notices only once the transaction commits (so a listener never reads a
//! change that could still roll back), merges identical notices of one transaction, and
//! delivers them to every listening session of the database.
//!
//! [`PostgresStorage::watch`](crate::PostgresStorage::watch) starts a thread with one
//! connection of its own that `LISTEN`s and reports each notice of its schema from
//! another writer as [`StoreChange::Document`]. Notices sent while it is not listening
//! (before its first `LISTEN`, or while its connection is down) are lost by PostgreSQL's
//! design; so after every successful `LISTEN` it reports [`StoreChange::Unknown`]
//! ("anything may have changed": read the catalog again). A server that stops answering
//! without closing the socket is found by a `SELECT 1` every [`PING_INTERVAL`], bounded
//! by the operation timeout; the connection is then made again with the pool's backoff.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, NoTls, Notification};

use crate::config::PgConfig;

/// The channel every peerdoc schema of a database notifies on (the payload names the
/// schema, so a channel name never needs the schema's 63 bytes plus a prefix).
pub const CHANNEL: &str = "peerdoc_changes";

/// How often an idle listening connection is checked.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);

/// Longest document id a notice carries (PostgreSQL takes payloads up to 8000 bytes;
/// automerge-repo's ids are about 28).
const MAX_NOTICE_ID: usize = 512;

/// What a [`ChangeFeed`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// Another writer committed a change to this document's chunks or record.
    Document(String),
    /// Notices may have been missed (the feed just started listening, or listens again
    /// after its connection was lost): anything may have changed.
    Unknown,
}

/// A running listener; stops (and joins its thread) when dropped.
pub struct ChangeFeed {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed").finish_non_exhaustive()
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A name for this process's store, unique among the writers of a schema: notices
/// carry it, so a writer skips its own.
pub(crate) fn writer_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}-{:x}-{:x}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The documents a batch's keys touch, as notice payloads: a chunk
/// (`[docId, "snapshot" | "incremental", …]`) or a catalog record
/// (`["peerdoc", "meta", docId]`). Sync states and conflict entries are not
/// announced: the first are each writer's own view, the second travel with the chunks'
/// notice of the same save.
pub(crate) fn notice_payload(schema: &str, writer: &str, key: &[String]) -> Option<String> {
    let doc = match key {
        [doc, kind, _] if kind == "snapshot" || kind == "incremental" => doc,
        [peerdoc, meta, doc] if peerdoc == "peerdoc" && meta == "meta" => doc,
        _ => return None,
    };
    (!doc.is_empty() && doc.len() <= MAX_NOTICE_ID && !doc.contains([' ', '\0']))
        .then(|| format!("{schema} {writer} {doc}"))
}

/// Starts the listener thread; `on_change` runs on it, so it must not block.
pub(crate) fn start(
    config: PgConfig,
    writer: String,
    on_change: impl FnMut(StoreChange) + Send + 'static,
) -> std::io::Result<ChangeFeed> {
    let (stop_tx, stop_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("peerdoc-pg-listen".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "the PostgreSQL listener could not start");
                    return;
                }
            };
            runtime.block_on(listen_until_stopped(config, writer, on_change, stop_rx));
        })?;
    Ok(ChangeFeed {
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

async fn listen_until_stopped(
    config: PgConfig,
    writer: String,
    mut on_change: impl FnMut(StoreChange),
    mut stop: oneshot::Receiver<()>,
) {
    let target = config.target();
    let mut backoff = config.backoff_initial;
    loop {
        let listening = listen(&config, &writer, &mut on_change, &mut backoff);
        tokio::select! {
            _ = &mut stop => return,
            ended = listening => {
                tracing::warn!(database = %target, reason = %ended, retry_in_ms = backoff.as_millis() as u64,
                    "not hearing other cloud nodes' changes; listening again after a pause");
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

/// One connection's life: connects, `LISTEN`s, reports notices until the connection
/// fails. Returns why it ended.
async fn listen(
    config: &PgConfig,
    writer: &str,
    on_change: &mut impl FnMut(StoreChange),
    backoff: &mut Duration,
) -> String {
    let mut connection_config = config.connection.clone();
    connection_config
        .connect_timeout(config.connect_timeout)
        .application_name("peerdoc-listen");
    let connecting =
        tokio::time::timeout(config.connect_timeout, connection_config.connect(NoTls)).await;
    let (client, mut connection) = match connecting {
        Ok(Ok(pair)) => pair,
        Ok(Err(error)) => return format!("connecting: {error}"),
        Err(_) => return "connecting: timed out".into(),
    };
    // The connection is polled here, not by `tokio_postgres::Connection`'s future,
    // because that future drops notices; this task forwards them.
    let (notices_tx, mut notices) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(notice))) => {
                    if notices_tx.send(Ok(notice)).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    let _ = notices_tx.send(Err(error.to_string()));
                    return;
                }
                None => {
                    let _ = notices_tx.send(Err("the server closed the connection".into()));
                    return;
                }
            }
        }
    });
    let timeout = config.operation_timeout();
    match tokio::time::timeout(timeout, client.batch_execute(&format!("LISTEN {CHANNEL}"))).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return format!("LISTEN: {error}"),
        Err(_) => return "LISTEN: timed out".into(),
    }
    tracing::info!(database = %config.target(), schema = %config.schema, "listening for other cloud nodes' changes");
    *backoff = config.backoff_initial;
    on_change(StoreChange::Unknown);
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Some(Ok(notice)) => {
                    if let Some(doc) = parse(&notice, &config.schema, writer) {
                        on_change(StoreChange::Document(doc));
                    }
                }
                Some(Err(error)) => return error,
                None => return "the connection task ended".into(),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(timeout, client.simple_query("SELECT 1")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return format!("ping: {error}"),
                    Err(_) => return format!("ping: no answer within {} ms", timeout.as_millis()),
                }
            }
        }
    }
}

/// The document a notice names, if it is for `schema` and from another writer.
fn parse(notice: &Notification, schema: &str, writer: &str) -> Option<String> {
    if notice.channel() != CHANNEL {
        return None;
    }
    let mut parts = notice.payload().splitn(3, ' ');
    let (Some(their_schema), Some(their_writer), Some(doc)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (their_schema == schema && their_writer != writer && !doc.is_empty()).then(|| doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn chunks_and_records_are_announced_and_nothing_else() {
        let notice = |parts: &[&str]| notice_payload("team_a", "w1", &key(parts));
        assert_eq!(
            notice(&["doc1", "snapshot", "h"]).as_deref(),
            Some("team_a w1 doc1")
        );
        assert_eq!(
            notice(&["doc1", "incremental", "h"]).as_deref(),
            Some("team_a w1 doc1")
        );
        assert_eq!(
            notice(&["peerdoc", "meta", "doc1"]).as_deref(),
            Some("team_a w1 doc1")
        );
        assert_eq!(notice(&["doc1", "sync-state", "s"]), None);
        assert_eq!(notice(&["peerdoc", "conflicts", "doc1", "0001"]), None);
        assert_eq!(notice(&["storage-adapter-id"]), None);
        assert_eq!(
            notice(&["a b", "snapshot", "h"]),
            None,
            "a space would split"
        );
    }

    #[test]
    fn writers_are_told_apart() {
        assert_ne!(writer_id(), writer_id());
    }
}
