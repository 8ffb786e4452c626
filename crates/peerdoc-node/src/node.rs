//! [`Node`]: opens the data directory and starts the storage thread, the network and
//! the driver.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use peerdoc_core::PeerId as RepoPeerId;
use peerdoc_core::repo::Repo;
use peerdoc_net::{NetEvent, Network};
use peerdoc_store::{SledConfig, SledStorage, StoreError};
use peerdoc_store_postgres::PostgresStorage;

use crate::shared_store::StoreChanges;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::driver::{Driver, DriverParts};
use crate::metrics::Metrics;
use crate::{NodeConfig, NodeError, NodeHandle, storage_worker};

/// Longest wait for the transport's first listen address; a failure guard only.
const LISTEN_GUARD: Duration = Duration::from_secs(10);

/// A running node. Derefs to its [`NodeHandle`]; [`Node::handle`] gives clones to share.
///
/// Dropping every handle (this one included) also shuts the node down gracefully,
/// but only [`Node::shutdown`] waits for it to finish.
#[derive(Debug)]
pub struct Node {
    handle: NodeHandle,
    driver: JoinHandle<()>,
}

impl Deref for Node {
    type Target = NodeHandle;

    fn deref(&self) -> &NodeHandle {
        &self.handle
    }
}

impl Node {
    /// Opens (or creates) the store and identity under `config.data_dir`, starts the
    /// storage thread, the network and the driver, and returns once the engine has
    /// loaded its catalog.
    ///
    /// Must be called within a tokio runtime. Fails with [`NodeError::DataDirLocked`]
    /// when another node has the directory open.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        config.validate().map_err(NodeError::InvalidConfig)?;
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| NodeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let metrics = Arc::new(Metrics::new());
        let mut store_changes = StoreChanges::none();
        let storage = match &config.postgres {
            None => open_sled(&config, &metrics).await?,
            Some(postgres) => {
                let pg = postgres.0.clone();
                // Connecting, creating the schema and reading the copy marker block:
                // keep them off the workers.
                let storage = tokio::task::spawn_blocking(move || {
                    let storage = PostgresStorage::open(pg)
                        .map_err(|e| NodeError::DatabaseOpen(e.to_string()))?;
                    refuse_unfinished_copy(&storage, || {
                        format!(
                            "the database at {}, schema {},",
                            storage.target(),
                            storage.schema()
                        )
                    })?;
                    Ok::<_, NodeError>(storage)
                })
                .await
                .map_err(|e| NodeError::StartFailed(format!("opening the database: {e}")))??;
                tracing::info!(database = %storage.target(), "documents are kept in PostgreSQL");
                store_changes = StoreChanges::watch(&storage)?;
                storage_worker::spawn(
                    storage,
                    config.storage_queue_len,
                    config.min_free_bytes,
                    metrics.storage_busy(),
                )
                .map_err(|e| NodeError::StartFailed(format!("spawning the storage thread: {e}")))?
            }
        };
        let keypair = peerdoc_net::load_or_create_identity(&data_dir.join("identity.key"))?;
        let local = keypair.public().to_peer_id();
        let repo_peer = RepoPeerId::new(local.to_string());
        let mut repo_config = config.repo_config(repo_peer.clone());
        // Every change this device makes names it (history maps actors to devices).
        repo_config.actor_prefix = Some(config.actor_prefix.unwrap_or(repo_peer.actor_prefix()));
        let actor_prefix = repo_config.actor_prefix;
        let repo = Repo::new(repo_config);
        // From here on, dropping `storage` closes the thread and frees the directory.
        let (net, mut net_events, net_loop) = Network::new(config.net.clone(), keypair)?;
        tokio::spawn(net_loop.run());
        let mut early = Vec::new();
        if !config.net.listen_addrs.is_empty() {
            let listening = tokio::time::timeout(LISTEN_GUARD, async {
                while let Some(event) = net_events.recv().await {
                    let done = matches!(event, NetEvent::Listening { .. });
                    early.push(event);
                    if done {
                        return true;
                    }
                }
                false
            })
            .await;
            if !matches!(listening, Ok(true)) {
                let _ = net.shutdown().await;
                return Err(NodeError::StartFailed(
                    "the network reported no listen address".into(),
                ));
            }
        }
        let (events, _) = broadcast::channel(config.event_queue_len);
        let (requests_tx, requests) = mpsc::channel(config.command_queue_len);
        let (ready_tx, ready) = oneshot::channel();
        let handle = NodeHandle {
            requests: requests_tx,
            events: events.clone(),
            net: net.clone(),
            metrics: metrics.clone(),
            actor_prefix,
        };
        let driver = Driver::new(
            repo,
            StdRng::from_os_rng(),
            DriverParts {
                requests,
                net,
                net_events,
                storage,
                events,
                ready: ready_tx,
                peer_backlog_len: config.peer_backlog_len,
                attached_queue_len: config.attached_queue_len,
                max_pending_commands: config.max_pending_commands,
                announce_changes: config.announce_changes,
                metrics,
                departed: crate::departed::Departures::load(Some(&data_dir)),
                store_changes,
            },
        );
        let driver = tokio::spawn(driver.run(early));
        let node = Node { handle, driver };
        match ready.await {
            Ok(Ok(())) => Ok(node),
            Ok(Err(error)) => {
                node.shutdown().await;
                Err(error)
            }
            Err(_) => Err(NodeError::StartFailed("the driver stopped".into())),
        }
    }

    /// A handle to share with other tasks.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Shuts down gracefully (see [`NodeHandle::shutdown`]) and waits for the driver
    /// task to end. [`Node::close`] also says whether the store's final flush worked.
    pub async fn shutdown(self) {
        if let Err(error) = self.close().await {
            tracing::error!(%error, "node shutdown");
        }
    }

    /// [`Node::shutdown`], with [`NodeError::UncleanStop`] when the store's final flush
    /// failed (or the driver died): a process should then exit with an error.
    pub async fn close(self) -> Result<(), NodeError> {
        let stopped = self.handle.shutdown().await;
        match self.driver.await {
            Ok(()) => stopped,
            Err(error) => Err(NodeError::UncleanStop(format!(
                "the driver task failed: {error}"
            ))),
        }
    }
}

/// Opens the sled store under `config.data_dir` and starts its storage thread.
async fn open_sled(
    config: &NodeConfig,
    metrics: &Metrics,
) -> Result<storage_worker::StorageWorker, NodeError> {
    let data_dir = config.data_dir.clone();
    // sled reads its log while opening; keep that off the async workers.
    let store_path = data_dir.join("store");
    let sled_config = SledConfig::default()
        .cache_capacity_bytes(config.store_cache_bytes)
        .lock_wait_ms(config.store_lock_wait_ms)
        .durability(config.durability)
        .secret(config.store_secret.clone());
    let storage = tokio::task::spawn_blocking(move || SledStorage::open(store_path, sled_config))
        .await
        .map_err(|e| NodeError::StartFailed(format!("opening the store: {e}")))?
        .map_err(|error| match error {
            StoreError::HeldByAnotherProcess { detail, .. } => NodeError::DataDirLocked {
                path: data_dir.clone(),
                detail,
            },
            other => NodeError::StoreOpen(other),
        })?;
    refuse_unfinished_copy(&storage, || {
        format!("the store {}", storage.path().display())
    })?;
    metrics.set_store_rollback(store_rollback(&storage));
    metrics.set_store_encryption(storage.encryption());
    storage_worker::spawn(
        storage,
        config.storage_queue_len,
        config.min_free_bytes,
        metrics.storage_busy(),
    )
    .map_err(|e| NodeError::StartFailed(format!("spawning the storage thread: {e}")))
}

/// Fails when `storage` is the destination of a `peerdoc store copy` that did not
/// finish (`peerdoc_store::copy_store` deletes its marker last).
fn refuse_unfinished_copy(
    storage: &impl peerdoc_core::Storage,
    store: impl FnOnce() -> String,
) -> Result<(), NodeError> {
    match peerdoc_store::unfinished_copy(storage) {
        Ok(None) => Ok(()),
        Ok(Some(marker)) => Err(NodeError::UnfinishedCopy {
            store: store(),
            marker,
        }),
        Err(error) => Err(NodeError::StartFailed(format!(
            "reading the store's copy marker: {error}"
        ))),
    }
}

/// The last rollback the store recorded, for status and metrics.
fn store_rollback(storage: &SledStorage) -> Option<crate::StoreRollback> {
    let recorded = match storage.last_rollback() {
        Ok(recorded) => recorded?,
        Err(error) => {
            tracing::warn!(%error, "could not read the store's rollback record");
            return None;
        }
    };
    Some(crate::StoreRollback {
        message: recorded.report.to_string(),
        store_wide: recorded.report.store_wide,
        documents: recorded.report.documents,
        detected: std::time::UNIX_EPOCH + std::time::Duration::from_millis(recorded.detected_ms),
        at_this_start: storage.rollback().is_some(),
    })
}
