//! Counters and histograms the driver updates as it works, for monitoring
//! ([`NodeHandle::metrics`](crate::NodeHandle::metrics)).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use automerge::ChangeHash;
use peerdoc_core::DocumentId;

/// Upper bounds (seconds) of the sync latency histogram's buckets.
pub const SYNC_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Local changes waiting for a peer's acknowledgement, at most; beyond this new ones are
/// not timed (the counters stay exact, the histogram samples).
const MAX_PENDING_ACKS: usize = 10_000;

/// A histogram with fixed buckets, safe to update from one task and read from others.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), plus one for `+Inf`.
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, seconds: f64) {
        let index = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        // Saturating float-to-int cast: a negative or absurd value cannot wrap.
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.counts.last().map_or(0, |c| c.load(Ordering::Relaxed));
        HistogramSnapshot {
            buckets,
            count,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram's state, in Prometheus' shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations <= bound)`, cumulative, ascending.
    pub buckets: Vec<(f64, u64)>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
}

/// What the driver counts. Shared by the driver (writer) and handles (readers).
#[derive(Debug)]
pub(crate) struct Metrics {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    messages_sent: AtomicU64,
    messages_received: AtomicU64,
    conflicts: AtomicU64,
    local_changes: AtomicU64,
    remote_changes: AtomicU64,
    sync_latency: Histogram,
    /// Per document: when its oldest unacknowledged local change was made, and the
    /// heads a peer must report to acknowledge it.
    pending_acks: Mutex<HashMap<DocumentId, (Instant, Vec<ChangeHash>)>>,
    /// Writes that failed since the node started.
    storage_write_failures: AtomicU64,
    /// Set while writes fail: cleared by the next write that succeeds.
    storage_failure: Mutex<Option<StorageFailure>>,
    /// When the storage thread started its current work (0: idle).
    storage_busy_since: crate::storage_worker::BusySince,
    /// The last time the store found it had lost acknowledged writes.
    store_rollback: Mutex<Option<StoreRollback>>,
    /// How the store is encrypted (`passphrase`, `key`), set once at start.
    store_encryption: std::sync::OnceLock<&'static str>,
}

/// A storage operation running this long is reported as a stall: sled can wait for
/// ever on a disk that filled behind its back (`docs/storage.md`).
pub(crate) const STORAGE_STALL_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// The store found on open that it had lost acknowledged writes: sled dropped the end
/// of a damaged log (`docs/storage.md`, "Silent rollback"). Peers that hold the
/// documents send the lost changes again when they sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRollback {
    /// What happened, in words.
    pub message: String,
    /// The documents that went back to an older version, or vanished.
    pub documents: Vec<String>,
    /// Whether store-wide records (peer records, the storage id) went back too.
    pub store_wide: bool,
    /// When the store found it.
    pub detected: std::time::SystemTime,
    /// Found when this node started (else at an earlier start).
    pub at_this_start: bool,
}

/// Why the store's writes fail now ([`NodeMetrics::storage_failure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageFailure {
    /// The disk is full (writes are refused before they reach the store); otherwise
    /// the store itself failed.
    pub full: bool,
    /// The latest error, in words.
    pub message: String,
    /// Since when writes fail.
    pub since: std::time::SystemTime,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            local_changes: AtomicU64::new(0),
            remote_changes: AtomicU64::new(0),
            sync_latency: Histogram::new(SYNC_LATENCY_BUCKETS),
            pending_acks: Mutex::new(HashMap::new()),
            storage_write_failures: AtomicU64::new(0),
            storage_failure: Mutex::new(None),
            storage_busy_since: crate::storage_worker::BusySince::default(),
            store_rollback: Mutex::new(None),
            store_encryption: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn set_store_encryption(&self, kind: Option<&'static str>) {
        if let Some(kind) = kind {
            let _ = self.store_encryption.set(kind);
        }
    }

    pub(crate) fn set_store_rollback(&self, rollback: Option<StoreRollback>) {
        if let Ok(mut kept) = self.store_rollback.lock() {
            *kept = rollback;
        }
    }

    /// The storage thread's busy marker (`storage_worker::spawn`).
    pub(crate) fn storage_busy(&self) -> crate::storage_worker::BusySince {
        self.storage_busy_since.clone()
    }

    /// A failure, or a stall: the storage thread on one operation for longer than
    /// [`STORAGE_STALL_AFTER`].
    fn storage_problem(&self) -> Option<StorageFailure> {
        if let Some(failure) = self.storage_failure.lock().ok().and_then(|f| f.clone()) {
            return Some(failure);
        }
        let since_ms = self.storage_busy_since.load(Ordering::Relaxed);
        if since_ms == 0 {
            return None;
        }
        let since = std::time::UNIX_EPOCH + std::time::Duration::from_millis(since_ms);
        let running = std::time::SystemTime::now().duration_since(since).ok()?;
        (running >= STORAGE_STALL_AFTER).then(|| StorageFailure {
            full: false,
            message: format!(
                "storage stalled: a write has not finished for {} s (is the disk failing or \
                 full?)",
                running.as_secs()
            ),
            since,
        })
    }

    /// A write completed: `Ok` clears a failure, an error sets (or updates) it.
    pub(crate) fn write_completed(&self, result: Result<(), &peerdoc_core::StorageError>) {
        let Ok(mut failure) = self.storage_failure.lock() else {
            return;
        };
        match result {
            Ok(()) => {
                if failure.take().is_some() {
                    tracing::info!("storage writes succeed again");
                }
            }
            Err(error) => {
                self.storage_write_failures.fetch_add(1, Ordering::Relaxed);
                let since = failure
                    .as_ref()
                    .map_or_else(std::time::SystemTime::now, |f| f.since);
                *failure = Some(StorageFailure {
                    full: matches!(error, peerdoc_core::StorageError::Full(_)),
                    message: error.to_string(),
                    since,
                });
            }
        }
    }

    pub(crate) fn frame_sent(&self, len: usize) {
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn frame_received(&self, len: usize) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received.fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// A document changed; a local change starts the clock for its acknowledgement.
    pub(crate) fn changed(&self, doc: DocumentId, heads: &[ChangeHash], local: bool) {
        if !local {
            self.remote_changes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.local_changes.fetch_add(1, Ordering::Relaxed);
        let Ok(mut pending) = self.pending_acks.lock() else {
            return;
        };
        if let Some(entry) = pending.get_mut(&doc) {
            entry.1 = heads.to_vec();
        } else if pending.len() < MAX_PENDING_ACKS {
            pending.insert(doc, (Instant::now(), heads.to_vec()));
        }
    }

    /// A peer reported `heads` for `doc`: if they cover the pending local change, the
    /// time since that change is one sync latency sample.
    pub(crate) fn synced(&self, doc: DocumentId, heads: &[ChangeHash]) {
        let Ok(mut pending) = self.pending_acks.lock() else {
            return;
        };
        let acknowledged = pending
            .get(&doc)
            .is_some_and(|(_, wanted)| wanted.iter().all(|h| heads.contains(h)));
        if acknowledged && let Some((since, _)) = pending.remove(&doc) {
            self.sync_latency.observe(since.elapsed().as_secs_f64());
        }
    }

    pub(crate) fn snapshot(&self) -> NodeMetrics {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NodeMetrics {
            bytes_sent: load(&self.bytes_sent),
            bytes_received: load(&self.bytes_received),
            messages_sent: load(&self.messages_sent),
            messages_received: load(&self.messages_received),
            conflicts: load(&self.conflicts),
            local_changes: load(&self.local_changes),
            remote_changes: load(&self.remote_changes),
            pending_acks: self.pending_acks.lock().map_or(0, |p| p.len()),
            sync_latency: self.sync_latency.snapshot(),
            storage_write_failures: load(&self.storage_write_failures),
            storage_failure: self.storage_problem(),
            store_rollback: self.store_rollback.lock().ok().and_then(|r| r.clone()),
            store_encryption: self.store_encryption.get().copied(),
        }
    }
}

/// Counters since the node started, from [`NodeHandle::metrics`](crate::NodeHandle::metrics).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeMetrics {
    /// Sync frame bytes handed to the transport.
    pub bytes_sent: u64,
    /// Sync frame bytes received.
    pub bytes_received: u64,
    /// Sync frames handed to the transport.
    pub messages_sent: u64,
    /// Sync frames received.
    pub messages_received: u64,
    /// Conflicts detected (first sightings).
    pub conflicts: u64,
    /// Local changes applied.
    pub local_changes: u64,
    /// Changes received from peers and applied.
    pub remote_changes: u64,
    /// Documents whose latest local change no peer has acknowledged yet.
    pub pending_acks: usize,
    /// Seconds from a local change to the first peer reporting heads that include it.
    pub sync_latency: HistogramSnapshot,
    /// Writes that failed since the node started.
    pub storage_write_failures: u64,
    /// Set while the store's writes fail (disk full, or the store failed); `None` once
    /// a write succeeds again.
    pub storage_failure: Option<StorageFailure>,
    /// The last time the store found it had lost acknowledged writes, if ever.
    pub store_rollback: Option<StoreRollback>,
    /// How the store is encrypted at rest: `passphrase` or `key`; `None`: it is not.
    pub store_encryption: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.1, 1), (1.0, 2)]);
        assert_eq!(s.count, 3);
        assert!((s.sum - 5.55).abs() < 1e-3);
    }

    #[test]
    fn a_storage_operation_running_past_the_stall_bound_is_reported() {
        let metrics = Metrics::new();
        let busy = metrics.storage_busy();
        let now_ms = |ago: std::time::Duration| {
            (std::time::SystemTime::now() - ago)
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        assert_eq!(metrics.snapshot().storage_failure, None, "idle");
        busy.store(now_ms(std::time::Duration::from_secs(1)), Ordering::Relaxed);
        assert_eq!(
            metrics.snapshot().storage_failure,
            None,
            "busy, not stalled"
        );
        busy.store(
            now_ms(STORAGE_STALL_AFTER + std::time::Duration::from_secs(1)),
            Ordering::Relaxed,
        );
        let stalled = metrics.snapshot().storage_failure.expect("stalled");
        assert!(!stalled.full);
        assert!(
            stalled
                .message
                .starts_with("storage stalled: a write has not finished for 3"),
            "{}",
            stalled.message
        );
        // It finished: nothing to report any more.
        busy.store(0, Ordering::Relaxed);
        assert_eq!(metrics.snapshot().storage_failure, None);
    }
}
