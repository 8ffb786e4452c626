//! Item 3: cold replication of the automerge-paper editing trace (one automerge change
//! per recorded transaction) to an empty peer, against the document's own `save()` size
//! and `load()` time.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ObjType, ROOT, ReadDoc};
use peerdoc_core::repo::{Command, Reply};
use peerdoc_sim::Cluster;
use serde::Deserialize;

/// The trace file, relative to the shared data directory.
pub(crate) const TRACE_FILE: &str = "editing-traces/seq_ascii_automerge-paper.json.gz";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Trace {
    start_content: String,
    end_content: String,
    txns: Vec<Txn>,
}

#[derive(Debug, Deserialize)]
struct Txn {
    patches: Vec<(usize, usize, String)>,
}

/// The document built from the trace.
#[derive(Debug)]
pub(crate) struct TraceDoc {
    /// `save()` bytes.
    pub(crate) saved: Vec<u8>,
    /// Changes in it.
    pub(crate) changes: usize,
    /// Whether the text equals the trace's `endContent` (only checked for a full replay).
    pub(crate) matches_end: Option<bool>,
}

/// Replays the first `max_txns` transactions (all when `None`) as one change each.
pub(crate) fn build(path: &Path, max_txns: Option<usize>) -> anyhow::Result<TraceDoc> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    let mut json = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut json)?;
    let trace: Trace = serde_json::from_str(&json)?;
    let mut doc = AutoCommit::new();
    let text = doc.put_object(ROOT, "text", ObjType::Text)?;
    doc.splice_text(&text, 0, 0, &trace.start_content)?;
    doc.commit();
    let take = max_txns.unwrap_or(trace.txns.len()).min(trace.txns.len());
    for txn in &trace.txns[..take] {
        for (pos, del, ins) in &txn.patches {
            doc.splice_text(&text, *pos, *del as isize, ins)?;
        }
        doc.commit();
    }
    let matches_end =
        (take == trace.txns.len()).then(|| doc.text(&text).is_ok_and(|t| t == trace.end_content));
    let changes = doc.get_changes(&[]).len();
    Ok(TraceDoc {
        saved: doc.save(),
        changes,
        matches_end,
    })
}

/// Median time of `runs` loads of `saved`.
pub(crate) fn load_time(saved: &[u8], runs: usize) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let doc = Automerge::load(saved)?;
        times.push(start.elapsed());
        drop(doc);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// What replicating the document cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replication {
    /// Bytes on the link, both directions, handshake included.
    pub(crate) bytes: u64,
    /// Frames on the link.
    pub(crate) messages: u64,
    /// From connect until the link went quiet.
    pub(crate) time: Duration,
    /// Whether the empty peer ended with the same heads.
    pub(crate) converged: bool,
}

/// Imports `saved` on one engine and replicates it to an empty one.
pub(crate) fn replicate(saved: &[u8]) -> anyhow::Result<Replication> {
    let mut cluster = Cluster::new(2, 3, |_| {});
    let doc = match cluster.command(
        0,
        Command::Import {
            bytes: saved.to_vec(),
            priority: 0,
            title: None,
        },
    ) {
        Ok(Reply::Created { doc, .. }) => doc,
        other => anyhow::bail!("import failed: {other:?}"),
    };
    let exchange = crate::engine::connect_and_run(&mut cluster);
    let heads =
        |c: &Cluster, i: usize| c.nodes[i].repo.catalog().get(&doc).map(|m| m.heads.clone());
    let converged = heads(&cluster, 0).is_some() && heads(&cluster, 0) == heads(&cluster, 1);
    Ok(Replication {
        bytes: exchange.bytes,
        messages: exchange.messages,
        time: exchange.time,
        converged,
    })
}
