//! The notices of a store shared with other cloud nodes, as engine inputs.
//!
//! A node on PostgreSQL watches its schema ([`PostgresStorage::watch`]): each document
//! another node committed becomes `Input::StorageChanged { doc: Some(..) }`, and "notices
//! may have been missed" becomes `doc: None` (the engine then reads its catalog again).
//! The listener runs on its own thread and must never block, so notices go through a
//! bounded channel; when it is full they are dropped and a `None` follows once there is
//! room, which covers every one dropped. A node on sled has no feed and a closed channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use peerdoc_core::DocumentId;
use peerdoc_store_postgres::{ChangeFeed, PostgresStorage, StoreChange};
use tokio::sync::mpsc;

use crate::NodeError;

/// Notices waiting for the driver; beyond this, a catch-up replaces them.
const QUEUE_LEN: usize = 4096;

/// The driver's end of a store's change notices.
#[derive(Debug)]
pub(crate) struct StoreChanges {
    pub(crate) rx: mpsc::Receiver<Option<DocumentId>>,
    /// Whether notices may still come (false once the channel closed).
    pub(crate) open: bool,
    /// Kept for the listener's lifetime: dropping it stops the thread.
    _feed: Option<ChangeFeed>,
}

impl StoreChanges {
    /// No shared store: nothing ever arrives.
    pub(crate) fn none() -> Self {
        let (_, rx) = mpsc::channel(1);
        Self {
            rx,
            open: false,
            _feed: None,
        }
    }

    /// Starts listening for what other writers of `storage`'s schema commit.
    pub(crate) fn watch(storage: &PostgresStorage) -> Result<Self, NodeError> {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        let dropped = Arc::new(AtomicBool::new(false));
        let feed = storage
            .watch(move |change| {
                if dropped.load(Ordering::Relaxed) {
                    if tx.try_send(None).is_err() {
                        return;
                    }
                    dropped.store(false, Ordering::Relaxed);
                }
                let input = match change {
                    StoreChange::Unknown => None,
                    StoreChange::Document(id) => match id.parse::<DocumentId>() {
                        Ok(doc) => Some(doc),
                        Err(_) => {
                            tracing::debug!(id = %id, "a notice names no document id; ignored");
                            return;
                        }
                    },
                };
                if tx.try_send(input).is_err() {
                    dropped.store(true, Ordering::Relaxed);
                }
            })
            .map_err(|e| NodeError::DatabaseOpen(e.to_string()))?;
        Ok(Self {
            rx,
            open: true,
            _feed: Some(feed),
        })
    }
}
