//! Item 5: durable write latency and throughput with 1 and 8 writers, through
//! `SledStorage::write` and through a node's `edit`, against raw append + `fdatasync`
//! of the same bytes in the same directory. The store part follows
//! `crates/peerdoc-store/benches/durable_writes.rs` (same chunks, same method).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use automerge::{AutoCommit, ROOT, transaction::Transactable};
use peerdoc_core::{Storage, StorageKey, WriteBatch};
use peerdoc_node::EditOp;
use peerdoc_store::{SledConfig, SledStorage};

use crate::stats::Samples;

/// One realistic incremental chunk: an automerge change to one of `docs` documents.
#[derive(Debug)]
pub(crate) struct Chunk {
    key: StorageKey,
    bytes: Vec<u8>,
}

/// `writes` changes spread round-robin over `docs` documents.
pub(crate) fn generate(writes: usize, docs: usize) -> Vec<Chunk> {
    let docs = docs.max(1);
    let mut documents: Vec<AutoCommit> = (0..docs).map(|_| AutoCommit::new()).collect();
    let mut chunks = Vec::with_capacity(writes);
    for i in 0..writes {
        let d = i % docs;
        let doc = &mut documents[d];
        let note = format!(
            "{:02}:{:02} florist confirmed delivery to the barn, table {} gets the peonies ({i})",
            8 + i % 12,
            i % 60,
            i % 40,
        );
        // Cannot fail: ROOT is a map.
        let _ = doc.put(ROOT, format!("slot{}", i % 20), note);
        doc.commit();
        if let Some(change) = doc.get_last_local_change() {
            chunks.push(Chunk {
                key: StorageKey::new([
                    format!("bench-doc-{d:04}"),
                    "incremental".to_string(),
                    change.hash().to_string(),
                ]),
                bytes: change.raw_bytes().to_vec(),
            });
        }
    }
    chunks
}

/// Latencies and throughput of one configuration.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) latencies: Samples,
    pub(crate) wall: Duration,
}

impl Measured {
    /// Commits per second over the wall time.
    pub(crate) fn per_second(&self) -> f64 {
        crate::stats::per_second(self.latencies.len(), self.wall)
    }
}

/// Runs `op` over `items` split round-robin across `writers` threads, timing each call.
fn run<T: Sync>(
    items: &[T],
    writers: usize,
    op: impl Fn(&T) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<Measured> {
    let latencies = Mutex::new(Samples::new());
    let failure = Mutex::new(None);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for w in 0..writers {
            let (op, latencies, failure) = (&op, &latencies, &failure);
            scope.spawn(move || {
                let mut mine = Samples::new();
                for item in items.iter().skip(w).step_by(writers) {
                    let t = Instant::now();
                    if let Err(e) = op(item) {
                        if let Ok(mut f) = failure.lock() {
                            *f = Some(e);
                        }
                        return;
                    }
                    mine.push(t.elapsed());
                }
                if let Ok(mut l) = latencies.lock() {
                    l.extend(mine);
                }
            });
        }
    });
    let wall = start.elapsed();
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    let latencies = latencies
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a writer panicked"))?;
    Ok(Measured { latencies, wall })
}

/// Raw baseline: append each chunk to one file and `fdatasync` it.
pub(crate) fn raw(path: &Path, chunks: &[Chunk], writers: usize) -> anyhow::Result<Measured> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    run(chunks, writers, |chunk| {
        let mut f: &File = &file;
        f.write_all(&chunk.bytes)?;
        f.sync_data()?;
        Ok(())
    })
}

/// `SledStorage::write`, one batch per chunk, on a fresh store.
pub(crate) fn sled(dir: &Path, chunks: &[Chunk], writers: usize) -> anyhow::Result<Measured> {
    let store = SledStorage::open(dir, SledConfig::default())?;
    run(chunks, writers, |chunk| {
        let mut batch = WriteBatch::new();
        batch.put(chunk.key.clone(), chunk.bytes.clone());
        store.write(batch)?;
        Ok(())
    })
}

/// A node's `edit` (returns once durable), `writes` edits over `docs` documents from
/// `writers` concurrent tasks.
pub(crate) async fn node_edits(
    base: &Path,
    writes: usize,
    docs: usize,
    writers: usize,
) -> anyhow::Result<Measured> {
    let node = crate::nodes::start_temp(base).await?;
    let mut ids = Vec::with_capacity(docs);
    for d in 0..docs.max(1) {
        ids.push(
            node.node
                .create(serde_json::json!({"d": d}), 0, None)
                .await?,
        );
    }
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let handle = node.node.handle();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Samples::new();
            for i in (w..writes).step_by(writers) {
                let t = Instant::now();
                handle
                    .edit(
                        ids[i % ids.len()],
                        vec![EditOp::Set {
                            path: format!("/slot{}", i % 20),
                            value: serde_json::json!(format!(
                                "florist confirmed delivery to the barn ({i})"
                            )),
                        }],
                        None,
                    )
                    .await?;
                mine.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(mine)
        }));
    }
    let mut latencies = Samples::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let wall = start.elapsed();
    node.node.shutdown().await;
    Ok(Measured { latencies, wall })
}
