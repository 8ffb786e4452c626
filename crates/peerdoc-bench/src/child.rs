//! Items 6 and 7 measure one node's memory, so the node runs alone in a child process:
//! the benchmark re-runs its own executable with a hidden `child` subcommand, which
//! prints one JSON line with what it measured.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Subcommand;
use peerdoc_node::Node;
use serde::{Deserialize, Serialize};

/// What a child process does.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum ChildTask {
    /// Creates `docs` small documents in a node on `dir`, then shuts it down.
    Populate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        docs: usize,
    },
    /// Cold sync of `docs` documents between two samod repos (see `samod_sync`).
    Samod {
        #[arg(long)]
        docs: usize,
    },
    /// Starts a node on `dir`, reports time to ready and RSS, shuts it down.
    Startup {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Measures idle CPU over `secs` seconds: of a node on `dir` after reading every
    /// document, or (without `dir`) of a process that only sleeps.
    Idle {
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        secs: u64,
    },
    /// Starts a node on `dir` with the given limits, reads every document, and reports
    /// RSS before and after.
    Memory {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        cache_bytes: u64,
        #[arg(long)]
        max_docs: usize,
    },
}

/// The child's answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ChildReport {
    /// Wall time of the task's measured part, ms.
    pub(crate) ms: f64,
    /// Documents the node knew.
    pub(crate) documents: usize,
    /// Documents it held in memory at the end.
    pub(crate) loaded: usize,
    /// Resident set size when the node was ready, KiB.
    pub(crate) rss_ready_kib: u64,
    /// Resident set size at the end, KiB.
    pub(crate) rss_end_kib: u64,
    /// Peak resident set size, KiB.
    pub(crate) rss_peak_kib: u64,
    /// CPU used over the measured window, percent of one core.
    #[serde(default)]
    pub(crate) cpu_percent: f64,
}

/// A field of `/proc/self/status` in KiB (0 where unknown).
pub(crate) fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs a child task (in the child process) and prints its report.
pub(crate) fn run_child(task: ChildTask) -> anyhow::Result<()> {
    if let ChildTask::Samod { docs } = task {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        return runtime.block_on(crate::samod_sync::child(docs));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async move {
        match task {
            ChildTask::Populate { dir, docs } => populate(&dir, docs).await,
            ChildTask::Samod { .. } => anyhow::bail!("handled above"),
            ChildTask::Startup { dir } => startup(&dir).await,
            ChildTask::Idle { dir, secs } => crate::idle::child(dir.as_deref(), secs).await,
            ChildTask::Memory {
                dir,
                cache_bytes,
                max_docs,
            } => memory(&dir, cache_bytes, max_docs).await,
        }
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn populate(dir: &Path, docs: usize) -> anyhow::Result<ChildReport> {
    let node = Node::start(crate::nodes::loopback_config(dir)?).await?;
    let start = Instant::now();
    let writers = 16;
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let handle = node.handle();
        tasks.push(tokio::spawn(async move {
            for i in (w..docs).step_by(writers) {
                handle
                    .create(
                        serde_json::json!({"i": i, "title": format!("run of show {i}")}),
                        0,
                        None,
                    )
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let ms = crate::stats::ms(start.elapsed());
    let documents = node.status().await?.documents;
    node.shutdown().await;
    Ok(ChildReport {
        ms,
        documents,
        ..ChildReport::default()
    })
}

async fn startup(dir: &Path) -> anyhow::Result<ChildReport> {
    let start = Instant::now();
    let node = Node::start(crate::nodes::loopback_config(dir)?).await?;
    let ms = crate::stats::ms(start.elapsed());
    let rss_ready_kib = proc_status_kib("VmRSS:");
    let status = node.status().await?;
    let report = ChildReport {
        ms,
        documents: status.documents,
        loaded: status.loaded,
        rss_ready_kib,
        rss_end_kib: proc_status_kib("VmRSS:"),
        rss_peak_kib: proc_status_kib("VmHWM:"),
        ..ChildReport::default()
    };
    node.shutdown().await;
    Ok(report)
}

async fn memory(dir: &Path, cache_bytes: u64, max_docs: usize) -> anyhow::Result<ChildReport> {
    let mut config = crate::nodes::loopback_config(dir)?;
    config.store_cache_bytes = cache_bytes;
    config.max_docs_in_memory = max_docs;
    let node = Node::start(config).await?;
    let rss_ready_kib = proc_status_kib("VmRSS:");
    let start = Instant::now();
    let docs = node.list().await?;
    for summary in &docs {
        node.read(summary.id).await?;
    }
    let ms = crate::stats::ms(start.elapsed());
    let status = node.status().await?;
    let report = ChildReport {
        ms,
        documents: status.documents,
        loaded: status.loaded,
        rss_ready_kib,
        rss_end_kib: proc_status_kib("VmRSS:"),
        rss_peak_kib: proc_status_kib("VmHWM:"),
        ..ChildReport::default()
    };
    node.shutdown().await;
    Ok(report)
}

/// Runs this executable's `child` subcommand with `args` and parses its report.
pub(crate) fn spawn(args: &[String]) -> anyhow::Result<ChildReport> {
    let exe = std::env::current_exe()?;
    let output = Command::new(exe).arg("child").args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "child {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow::anyhow!("child {args:?} printed no report"))?;
    Ok(serde_json::from_str(line)?)
}
