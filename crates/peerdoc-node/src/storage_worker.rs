//! The storage thread: runs the engine's storage operations against a blocking
//! [`Storage`] strictly in emission order, with group commit.
//!
//! The driver sends [`StorageJob`]s over a bounded channel. The thread takes everything
//! queued at once, merges each run of consecutive writes into one batch (their
//! operations concatenated in order) written with one durable `write`, and only then
//! completes every write of the run. A read ends a run, so it sees every earlier write.
//! Completions go back to the driver as one message per group, in order.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use peerdoc_core::repo::{StorageOp, StorageOpId, StorageResult};
use peerdoc_core::{Storage, StorageError, WriteBatch};
use tokio::sync::{mpsc, oneshot};

/// One storage operation and the id its completion echoes.
#[derive(Debug)]
pub(crate) struct StorageJob {
    pub(crate) id: StorageOpId,
    pub(crate) op: StorageOp,
}

/// A finished operation.
pub(crate) type Completion = (StorageOpId, Result<StorageResult, StorageError>);

/// What the driver keeps of the storage thread.
#[derive(Debug)]
pub(crate) struct StorageWorker {
    /// Closing this (dropping it) asks the thread to finish the queue, flush and exit.
    pub(crate) jobs: std_mpsc::SyncSender<StorageJob>,
    /// One message per group of completed operations, in order.
    pub(crate) completions: mpsc::Receiver<Vec<Completion>>,
    /// Fires after the thread dropped the storage (the data directory is free again),
    /// with the final flush's error if it failed.
    pub(crate) closed: oneshot::Receiver<Result<(), String>>,
}

/// A [`Storage`] that can also be flushed one last time before it is closed.
pub(crate) trait ClosableStorage: Storage + 'static {
    /// Makes everything written durable; called once, after the last operation.
    fn final_flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// A file the backend holds an exclusive `flock` on while open, if any.
    fn lock_file(&self) -> Option<PathBuf> {
        None
    }

    /// The directory whose disk holds the store, if it is on one: its free space is
    /// checked before each write.
    fn disk_path(&self) -> Option<PathBuf> {
        None
    }
}

impl ClosableStorage for peerdoc_store::SledStorage {
    fn final_flush(&self) -> Result<(), StorageError> {
        self.raw_flush().map_err(StorageError::from)
    }

    fn lock_file(&self) -> Option<PathBuf> {
        Some(self.path().join("db"))
    }

    fn disk_path(&self) -> Option<PathBuf> {
        Some(self.path().to_owned())
    }
}

/// Refuses writes while the store's disk has less than a reserve free.
///
/// sled 0.34 does not survive running out of space: once a write fails with `ENOSPC`
/// every later operation fails with the same error until the store is reopened, and
/// in about a third of the fills we tried, a flush waits forever (its I/O buffer never
/// becomes stable) and the daemon hangs, SIGTERM included. So a write never gets that
/// far: with less than `min_free` bytes (plus the batch) free it is refused with
/// [`StorageError::Full`], sled stays healthy, reads go on, and writes succeed again as
/// soon as space is freed. The check is one `statvfs` per group of writes.
#[derive(Debug, Clone)]
pub(crate) struct SpaceGuard {
    pub(crate) path: Option<PathBuf>,
    pub(crate) min_free: u64,
}

impl SpaceGuard {
    /// A guard that never refuses (no disk, or a reserve of 0).
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        Self {
            path: None,
            min_free: 0,
        }
    }

    fn check(&self, batch_bytes: u64) -> Result<(), StorageError> {
        let Some(path) = self.path.as_deref().filter(|_| self.min_free > 0) else {
            return Ok(());
        };
        // A disk whose free space cannot be read is not refused on that account.
        let Ok(free) = fs2::available_space(path) else {
            return Ok(());
        };
        let needed = self.min_free.saturating_add(batch_bytes);
        if free < needed {
            let mib = |b: u64| b.div_ceil(1024 * 1024);
            return Err(StorageError::Full(format!(
                "{} MiB free on the disk of {} and {} MiB must stay free \
                 (node.min_free_bytes); writes resume when space is freed",
                free / (1024 * 1024),
                path.display(),
                mib(needed)
            )));
        }
        Ok(())
    }
}

/// Longest wait for a closed store's lock to be released; a failure guard only.
const RELEASE_GUARD: Duration = Duration::from_secs(10);

/// Waits until nobody holds the `flock` on `path`.
///
/// sled 0.34 releases its lock when the last internal reference to its files drops,
/// which can be on one of its background threads shortly after the `Db` itself was
/// dropped. Shutdown promises a free data directory, so it waits for that here.
fn wait_until_unlocked(path: &Path) {
    let Ok(file) = std::fs::File::open(path) else {
        return; // No lock file, no lock.
    };
    let started = Instant::now();
    loop {
        // std's lock is the same `flock` sled (through fs2) takes.
        if file.try_lock().is_ok() {
            let _ = file.unlock();
            return;
        }
        if started.elapsed() > RELEASE_GUARD {
            tracing::warn!(path = %path.display(), "store still locked after closing it");
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

impl ClosableStorage for peerdoc_core::MemoryStorage {}

/// Every write is committed before it returns; no lock file, no local disk to watch
/// (the server reports a full disk itself).
impl ClosableStorage for peerdoc_store_postgres::PostgresStorage {}

/// Largest number of operations taken in one group; bounds one completion message.
const MAX_GROUP: usize = 256;

/// When the thread started what it is doing now (ms since the Unix epoch; 0 when it
/// waits for work), so that a write the store never finishes shows (`Metrics`).
pub(crate) type BusySince = std::sync::Arc<std::sync::atomic::AtomicU64>;

fn mark_busy(busy: &BusySince, on: bool) {
    let now = if on {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis().max(1) as u64)
    } else {
        0
    };
    busy.store(now, std::sync::atomic::Ordering::Relaxed);
}

/// Starts the thread. `queue_len` bounds the job channel.
pub(crate) fn spawn<S: ClosableStorage>(
    storage: S,
    queue_len: usize,
    min_free: u64,
    busy: BusySince,
) -> Result<StorageWorker, std::io::Error> {
    let guard = SpaceGuard {
        path: storage.disk_path(),
        min_free,
    };
    let (jobs, job_rx) = std_mpsc::sync_channel(queue_len);
    // Each message holds at most MAX_GROUP completions; the driver always reads them, so
    // the thread waits here only briefly while the driver handles earlier ones.
    let (done_tx, completions) = mpsc::channel(64);
    let (closed_tx, closed) = oneshot::channel();
    thread::Builder::new()
        .name("peerdoc-storage".into())
        .spawn(move || {
            run(&storage, &guard, &job_rx, &done_tx, &busy);
            mark_busy(&busy, true);
            let flushed = storage.final_flush().map_err(|error| {
                tracing::error!(%error, "final storage flush failed");
                error.to_string()
            });
            let lock_file = storage.lock_file();
            drop(storage);
            if let Some(path) = lock_file {
                wait_until_unlocked(&path);
            }
            let _ = closed_tx.send(flushed);
        })?;
    Ok(StorageWorker {
        jobs,
        completions,
        closed,
    })
}

fn run<S: Storage>(
    storage: &S,
    guard: &SpaceGuard,
    jobs: &std_mpsc::Receiver<StorageJob>,
    done: &mpsc::Sender<Vec<Completion>>,
    busy: &BusySince,
) {
    // `recv` fails once the driver dropped the sender and the queue is empty.
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        mark_busy(busy, true);
        let completions = execute_group(storage, guard, group);
        mark_busy(busy, false);
        if done.blocking_send(completions).is_err() {
            // The driver is gone; keep executing what is queued so that nothing the
            // engine emitted is silently skipped, but nobody hears about it.
            tracing::debug!("storage completions have no receiver");
        }
    }
}

/// Runs one group in order: consecutive writes share one durable write.
pub(crate) fn execute_group<S: Storage + ?Sized>(
    storage: &S,
    guard: &SpaceGuard,
    group: Vec<StorageJob>,
) -> Vec<Completion> {
    let mut completions = Vec::with_capacity(group.len());
    let mut run_ids: Vec<StorageOpId> = Vec::new();
    let mut run_batch = WriteBatch::new();
    for StorageJob { id, op } in group {
        match op {
            StorageOp::Write(batch) => {
                run_batch.extend(batch);
                run_ids.push(id);
            }
            StorageOp::LoadRange { prefix } => {
                flush_run(
                    storage,
                    guard,
                    &mut run_ids,
                    &mut run_batch,
                    &mut completions,
                );
                completions.push((id, storage.range(&prefix).map(StorageResult::Range)));
            }
            StorageOp::Load { key } => {
                flush_run(
                    storage,
                    guard,
                    &mut run_ids,
                    &mut run_batch,
                    &mut completions,
                );
                completions.push((id, storage.get(&key).map(StorageResult::Value)));
            }
        }
    }
    flush_run(
        storage,
        guard,
        &mut run_ids,
        &mut run_batch,
        &mut completions,
    );
    completions
}

fn flush_run<S: Storage + ?Sized>(
    storage: &S,
    guard: &SpaceGuard,
    ids: &mut Vec<StorageOpId>,
    batch: &mut WriteBatch,
    completions: &mut Vec<Completion>,
) {
    if ids.is_empty() {
        return;
    }
    let batch = std::mem::take(batch);
    // An empty merged batch still completes its writes: there is nothing to make durable.
    let result = if batch.is_empty() {
        Ok(())
    } else {
        guard
            .check(batch.payload_bytes() as u64)
            .and_then(|()| storage.write(batch))
    };
    for id in ids.drain(..) {
        completions.push((id, result.clone().map(|()| StorageResult::Written)));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use peerdoc_core::{MemoryStorage, StorageKey};

    use super::*;

    /// Counts the durable writes reaching the backend.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryStorage,
        writes: Mutex<Vec<usize>>,
    }

    impl Storage for Counting {
        fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
            self.inner.get(key)
        }
        fn range(&self, prefix: &[String]) -> Result<Vec<(StorageKey, Vec<u8>)>, StorageError> {
            self.inner.range(prefix)
        }
        fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
            self.writes.lock().unwrap().push(batch.ops().len());
            self.inner.write(batch)
        }
    }

    fn put(id: u64, key: &str, value: &str) -> StorageJob {
        let mut batch = WriteBatch::new();
        batch.put(StorageKey::new([key]), value.as_bytes().to_vec());
        StorageJob {
            id: StorageOpId(id),
            op: StorageOp::Write(batch),
        }
    }

    fn get(id: u64, key: &str) -> StorageJob {
        StorageJob {
            id: StorageOpId(id),
            op: StorageOp::Load {
                key: StorageKey::new([key]),
            },
        }
    }

    #[test]
    fn consecutive_writes_share_one_durable_write_and_reads_break_runs() {
        let storage = Counting::default();
        let group = vec![
            put(0, "a", "1"),
            put(1, "a", "2"),
            put(2, "b", "1"),
            get(3, "a"),
            put(4, "a", "3"),
            get(5, "a"),
        ];
        let completions = execute_group(&storage, &SpaceGuard::none(), group);
        let ids: Vec<u64> = completions.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5], "completions keep emission order");
        // Three writes merged into one batch of three ops, then one single write.
        assert_eq!(*storage.writes.lock().unwrap(), [3, 1]);
        match &completions[3].1 {
            Ok(StorageResult::Value(Some(v))) => assert_eq!(v, b"2", "later op wins"),
            other => panic!("unexpected {other:?}"),
        }
        match &completions[5].1 {
            Ok(StorageResult::Value(Some(v))) => assert_eq!(v, b"3"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_failed_merged_write_fails_every_write_of_its_run() {
        let storage = MemoryStorage::new();
        let mut bad = WriteBatch::new();
        bad.put(StorageKey::new(Vec::<String>::new()), b"x".to_vec());
        let group = vec![
            put(0, "a", "1"),
            StorageJob {
                id: StorageOpId(1),
                op: StorageOp::Write(bad),
            },
            get(2, "a"),
        ];
        let completions = execute_group(&storage, &SpaceGuard::none(), group);
        assert!(completions[0].1.is_err());
        assert!(completions[1].1.is_err());
        // Atomic: the good half of the merged batch was not applied either.
        assert!(matches!(completions[2].1, Ok(StorageResult::Value(None))));
    }

    #[tokio::test]
    async fn the_thread_completes_everything_queued_before_it_closes() {
        let worker = spawn(MemoryStorage::new(), 4, 0, BusySince::default()).unwrap();
        let StorageWorker {
            jobs,
            mut completions,
            closed,
        } = worker;
        let sender = std::thread::spawn(move || {
            for i in 0..20 {
                jobs.send(put(i, "k", &i.to_string())).unwrap();
            }
            jobs.send(get(20, "k")).unwrap();
        });
        let mut seen = Vec::new();
        while seen.len() < 21 {
            let group = completions.recv().await.unwrap();
            seen.extend(group);
        }
        sender.join().unwrap();
        let ids: Vec<u64> = seen.iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, (0..21).collect::<Vec<_>>());
        match &seen[20].1 {
            Ok(StorageResult::Value(Some(v))) => assert_eq!(v, b"19"),
            other => panic!("unexpected {other:?}"),
        }
        closed.await.unwrap().unwrap();
    }

    /// Memory storage that misbehaves as a test asks: writes that wait at a gate until
    /// the test lets them go, a final flush that fails as sled's does on a dying disk.
    #[derive(Default)]
    struct Faulty {
        inner: MemoryStorage,
        gate: Option<Mutex<std::sync::mpsc::Receiver<()>>>,
        flush_fails: bool,
    }

    impl Storage for Faulty {
        fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
            self.inner.get(key)
        }
        fn range(&self, prefix: &[String]) -> Result<Vec<(StorageKey, Vec<u8>)>, StorageError> {
            self.inner.range(prefix)
        }
        fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
            if let Some(gate) = &self.gate {
                let _ = gate.lock().unwrap().recv();
            }
            self.inner.write(batch)
        }
    }

    impl ClosableStorage for Faulty {
        fn final_flush(&self) -> Result<(), StorageError> {
            if self.flush_fails {
                return Err(StorageError::Io("EIO".into()));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_final_flush_is_reported_to_whoever_closes_the_thread() {
        let worker = spawn(
            Faulty {
                flush_fails: true,
                ..Faulty::default()
            },
            4,
            0,
            BusySince::default(),
        )
        .unwrap();
        drop(worker.jobs);
        let closed = worker.closed.await.unwrap();
        assert!(closed.is_err_and(|e| e.contains("EIO")));
    }

    #[tokio::test]
    async fn the_thread_says_since_when_it_is_busy() {
        let (release, gate) = std::sync::mpsc::channel();
        let busy = BusySince::default();
        let mut worker = spawn(
            Faulty {
                gate: Some(Mutex::new(gate)),
                ..Faulty::default()
            },
            4,
            0,
            busy.clone(),
        )
        .unwrap();
        assert_eq!(busy.load(std::sync::atomic::Ordering::Relaxed), 0);
        worker.jobs.send(put(0, "a", "1")).unwrap();
        // The write waits at the gate: the thread is marked busy meanwhile.
        while busy.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        release.send(()).unwrap();
        let done = worker.completions.recv().await.unwrap();
        assert!(done[0].1.is_ok());
        assert_eq!(
            busy.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "idle again"
        );
    }
}
