//! The seven items of the benchmark issue, each a [`Section`] of rows.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::report::{Machine, Report, Row, Section, Target};
use crate::stats::{ms, per_second};
use crate::{child, durable, engine, latency, node_sync, plain, samod_sync, trace};

/// How big each item is.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    reconnect: Vec<usize>,
    cold_sync: Vec<usize>,
    /// (N, time budget) for samod; it is quadratic, so large N gets a budget.
    pub(crate) samod: Vec<(usize, Duration)>,
    trace_txns: Option<usize>,
    daemons: Vec<usize>,
    history: Vec<usize>,
    edits: usize,
    writes: usize,
    node_writes: usize,
    startup_docs: usize,
    memory_docs: Vec<usize>,
    pub(crate) idle_docs: usize,
    pub(crate) idle_secs: u64,
    /// Devices, and documents each, reconciling with the cloud at once.
    pub(crate) cloud: (usize, usize),
}

impl Sizes {
    /// The sizes the issue asks for.
    pub(crate) fn full() -> Self {
        Self {
            reconnect: vec![1_000, 10_000],
            cold_sync: vec![1_000, 10_000],
            samod: vec![
                (1_000, Duration::from_secs(90)),
                (10_000, Duration::from_secs(90)),
            ],
            trace_txns: None,
            daemons: vec![2, 5],
            history: vec![100, 10_000, 100_000],
            edits: 100,
            writes: 4_000,
            node_writes: 2_000,
            startup_docs: 10_000,
            memory_docs: vec![10_000, 100_000],
            idle_docs: 10_000,
            idle_secs: 60,
            cloud: (20, 100),
        }
    }

    /// Every N shrunk: a smoke test.
    pub(crate) fn quick() -> Self {
        Self {
            reconnect: vec![100, 1_000],
            cold_sync: vec![100, 500],
            samod: vec![(100, Duration::from_secs(30))],
            trace_txns: Some(2_000),
            daemons: vec![2, 5],
            history: vec![100, 1_000],
            edits: 5,
            writes: 200,
            node_writes: 200,
            startup_docs: 300,
            memory_docs: vec![300, 1_000],
            idle_docs: 300,
            idle_secs: 3,
            cloud: (4, 20),
        }
    }
}

/// What to run, where.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) sizes: Sizes,
    pub(crate) work_dir: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) only: Vec<String>,
    /// Node-level cold sync + reconnect results, shared by items 1 and 2.
    pub(crate) node_sync: std::sync::Mutex<std::collections::BTreeMap<usize, node_sync::NodeSync>>,
}

impl Plan {
    /// Node-level cold sync then reconnect with `n` documents (run once per `n`).
    fn node_sync(&self, n: usize) -> anyhow::Result<node_sync::NodeSync> {
        if let Some(done) = self.node_sync.lock().ok().and_then(|m| m.get(&n).copied()) {
            return Ok(done);
        }
        let dir = tempfile::tempdir_in(&self.work_dir)?;
        let result = runtime()?.block_on(node_sync::cold_then_reconnect(dir.path(), n))?;
        if let Ok(mut m) = self.node_sync.lock() {
            m.insert(n, result);
        }
        Ok(result)
    }
}

type SectionFn = fn(&Plan, &mut Section) -> anyhow::Result<()>;

/// Runs every (selected) section, printing each table as it completes.
pub(crate) fn run_all(plan: &Plan, quick: bool) -> anyhow::Result<Report> {
    let machine = Machine::detect();
    println!(
        "peerdoc-bench{}: {} ({} cores), Linux {}\n",
        if quick { " --quick" } else { "" },
        machine.cpu,
        machine.cores,
        machine.kernel
    );
    let all: [(&'static str, &str, SectionFn); 10] = [
        (
            "reconnect",
            "1. Reconnect with N unchanged documents",
            reconnect,
        ),
        (
            "cold_sync",
            "2. Cold sync of N small documents to an empty peer",
            cold_sync,
        ),
        (
            "trace",
            "3. Cold replication of the automerge-paper editing trace",
            trace_section,
        ),
        (
            "latency",
            "4. Edit-to-visible-and-durable latency across daemons on loopback",
            latency_section,
        ),
        (
            "durable_writes",
            "5. Durable write latency and throughput",
            durable_section,
        ),
        ("startup", "6. Startup with many documents", startup_section),
        ("memory", "7. Memory with many documents", memory_section),
        (
            "idle",
            "8. Idle CPU with many documents",
            crate::idle::section,
        ),
        (
            "big_doc",
            "9. A 2 MB text document, and the other documents meanwhile",
            crate::big_doc::section,
        ),
        (
            "cloud",
            "10. Many devices reconcile with the cloud at once: sled, PostgreSQL, two nodes",
            crate::cloud::section,
        ),
    ];
    let mut sections = serde_json::Map::new();
    for (id, title, run) in all {
        if !plan.only.is_empty() && !plan.only.iter().any(|o| o == id) {
            continue;
        }
        let mut section = Section::new(id, title);
        let start = Instant::now();
        if let Err(error) = run(plan, &mut section) {
            section.note(format!("FAILED: {error:#}"));
        }
        section.seconds = start.elapsed().as_secs_f64();
        println!("{}", section.markdown());
        sections.insert(id.to_string(), serde_json::to_value(&section)?);
    }
    Ok(Report {
        quick,
        machine,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        sections,
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn reconnect(plan: &Plan, s: &mut Section) -> anyhow::Result<()> {
    for &n in &plan.sizes.reconnect {
        let (ours, kinds) = engine::reconnect(n);
        let mut pairs = (0..n)
            .map(|i| plain::Pair::reconnecting(plain::small_doc(i)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let base = plain::sync_all(&mut pairs)?;
        let subject = format!("peerdoc engine, N={n}");
        let baseline = "plain automerge sync, persisted states";
        let big = n >= 10_000;
        let mut row = Row::new(
            &subject,
            "round trips",
            "",
            Some(ours.round_trips as f64),
            baseline,
            Some(base.round_trips as f64),
        );
        if big {
            row = row.target("≤ 2", Target::AtMost(2.0));
        }
        s.row(row);
        s.row(Row::new(
            &subject,
            "messages",
            "",
            Some(ours.messages as f64),
            baseline,
            Some(base.messages as f64),
        ));
        let mut row = Row::new(
            &subject,
            "bytes",
            "B",
            Some(ours.bytes as f64),
            baseline,
            Some(base.bytes as f64),
        );
        if big {
            row = row.target("≤ 2 KB", Target::AtMost(2_048.0));
        }
        s.row(row);
        let mut row = Row::new(
            &subject,
            "time",
            "ms",
            Some(ms(ours.time)),
            baseline,
            Some(ms(base.time)),
        );
        if big {
            row = row.target("≤ 50 ms", Target::AtMost(50.0));
        }
        s.row(row);
        match plan.node_sync(n) {
            Ok(node) => {
                let subject = format!("peerdoc node, N={n}");
                s.row(Row::new(
                    &subject,
                    "messages",
                    "",
                    Some(node.reconnect.messages as f64),
                    baseline,
                    Some(base.messages as f64),
                ));
                let mut row = Row::new(
                    &subject,
                    "bytes",
                    "B",
                    Some(node.reconnect.bytes as f64),
                    baseline,
                    Some(base.bytes as f64),
                );
                if big {
                    row = row.target("≤ 2 KB", Target::AtMost(2_048.0));
                }
                s.row(row);
                let mut row = Row::new(
                    &subject,
                    "time",
                    "ms",
                    Some(ms(node.reconnect.time)),
                    baseline,
                    Some(ms(base.time)),
                );
                if big {
                    row = row.target("≤ 50 ms", Target::AtMost(50.0));
                }
                s.row(row);
            }
            Err(error) => s.note(format!("peerdoc node, N={n}: failed: {error:#}")),
        }
        if kinds.iter().any(|k| k == "sync") {
            s.note(format!(
                "N={n}: the engine sent sync messages for unchanged documents"
            ));
        }
    }
    s.note("peerdoc: two engines over peerdoc-sim's in-memory Cluster (no network, in-memory storage), same documents, never connected before; messages and bytes are whole wire frames both ways, the join/peer handshake included; a round trip is two one-way turns of the exchange.");
    s.note("peerdoc node: two peerdoc_node::Node daemons in this process (sled, libp2p on 127.0.0.1, mDNS off); after the cold sync of item 2 the receiver is shut down and restarted on its data directory and dials again; messages and bytes are the engine's counters for that connection (frames, both ways; libp2p's own handshake not included); time is from dial until the last frame counted (the connection then stayed quiet for 300 ms).");
    s.note("Baseline: per document, automerge sync messages between two in-process copies whose sync states were synced, persisted (State::encode) and reloaded; bytes are the bare sync messages without the automerge-repo envelope (message type, sender and target peer ids, document id) that every peerdoc frame counted here carries. All documents run in parallel, so its round trips are the slowest document's.");
    Ok(())
}

fn cold_sync(plan: &Plan, s: &mut Section) -> anyhow::Result<()> {
    for &n in &plan.sizes.cold_sync {
        let (ours, received) = engine::cold_sync(n);
        anyhow::ensure!(
            received == n,
            "the empty peer got {received} of {n} documents"
        );
        let mut pairs: Vec<_> = (0..n)
            .map(|i| plain::Pair::cold(plain::small_doc(i)))
            .collect();
        let base = plain::sync_all(&mut pairs)?;
        let ours_rate = engine::docs_per_second(n, ours.time);
        let base_rate = engine::docs_per_second(n, base.time);
        s.row(
            Row::new(
                format!("peerdoc engine, N={n}"),
                "documents/s",
                "docs/s",
                Some(ours_rate),
                "plain automerge sync",
                Some(base_rate),
            )
            .target("≥ 5,000 docs/s", Target::AtLeast(5_000.0)),
        );
        s.row(Row::new(
            format!("peerdoc engine, N={n}"),
            "bytes",
            "B",
            Some(ours.bytes as f64),
            "plain automerge sync",
            Some(base.bytes as f64),
        ));
        s.row(Row::new(
            format!("peerdoc engine, N={n}"),
            "messages",
            "",
            Some(ours.messages as f64),
            "plain automerge sync",
            Some(base.messages as f64),
        ));
        match plan.node_sync(n) {
            Ok(node) => {
                let rate = engine::docs_per_second(n, node.cold.time);
                s.row(
                    Row::new(
                        format!("peerdoc node, N={n}"),
                        "documents/s",
                        "docs/s",
                        Some(rate),
                        "plain automerge sync",
                        Some(base_rate),
                    )
                    .target("≥ 5,000 docs/s", Target::AtLeast(5_000.0)),
                );
                s.row(Row::new(
                    format!("peerdoc node, N={n}"),
                    "bytes",
                    "B",
                    Some(node.cold.bytes as f64),
                    "plain automerge sync",
                    Some(base.bytes as f64),
                ));
            }
            Err(error) => s.note(format!("peerdoc node, N={n}: failed: {error:#}")),
        }
        if let Some(&(_, budget)) = plan.sizes.samod.iter().find(|(sn, _)| *sn == n) {
            match samod_sync::cold_sync(n, budget) {
                Ok(samod) => {
                    let p = samod.progress;
                    let rate = (p.sync_ms > 0.0).then(|| p.received as f64 / (p.sync_ms / 1e3));
                    s.row(Row::new(
                        format!("peerdoc engine, N={n}"),
                        "documents/s",
                        "docs/s",
                        Some(ours_rate),
                        format!(
                            "samod 0.16 ({} of {n} docs in {:.1} s)",
                            p.received,
                            p.sync_ms / 1e3
                        ),
                        rate,
                    ));
                    if samod.cut {
                        s.note(format!("samod, N={n}: stopped at the {} s budget (setup included): {} of {n} documents created in {:.1} s, {} received in {:.1} s of sync; its rate is over what it did by then.", budget.as_secs(), p.created, p.setup_ms / 1e3, p.received, p.sync_ms / 1e3));
                    } else {
                        s.note(format!(
                            "samod, N={n}: creating the documents took {:.1} s (not counted).",
                            p.setup_ms / 1e3
                        ));
                    }
                }
                Err(error) => s.note(format!("samod, N={n}: failed: {error:#}")),
            }
        } else {
            s.note(format!("samod not run at N={n} (not in this run's sizes)."));
        }
    }
    s.note("peerdoc node: two daemons (sled, libp2p on 127.0.0.1, mDNS off), documents created through the API first; time from dial until the empty node's catalog held every document (polled every 1 ms); bytes counted until the connection went quiet.");
    s.note("peerdoc: in-memory Cluster, time from connect until the link is quiet and the empty peer holds every document (in-memory storage writes included). Plain automerge: per-document sync loops of two in-process docs, no envelope. samod: two samod repos (tokio, in-memory storage) over samod's own in-memory ChannelDialer, time from dial until `find` returned every document on the empty repo.");
    Ok(())
}

fn trace_section(plan: &Plan, s: &mut Section) -> anyhow::Result<()> {
    let path = plan.data.join(trace::TRACE_FILE);
    let built = trace::build(&path, plan.sizes.trace_txns)?;
    if let Some(false) = built.matches_end {
        s.note("WARNING: the replayed text differs from the trace's endContent");
    }
    let load = trace::load_time(&built.saved, 3)?;
    let replication = trace::replicate(&built.saved)?;
    anyhow::ensure!(
        replication.converged,
        "the empty peer did not reach the same heads"
    );
    let subject = format!("peerdoc engine, {} changes", built.changes);
    s.row(
        Row::new(
            &subject,
            "bytes on the link",
            "B",
            Some(replication.bytes as f64),
            "save() size",
            Some(built.saved.len() as f64),
        )
        .target("≤ 1.2x save()", Target::RatioAtMost(1.2)),
    );
    s.row(
        Row::new(
            &subject,
            "time to replicate",
            "ms",
            Some(ms(replication.time)),
            "load() time (median of 3)",
            Some(ms(load)),
        )
        .target("≤ 1.5x load()", Target::RatioAtMost(1.5)),
    );
    s.row(Row::new(
        &subject,
        "messages",
        "",
        Some(replication.messages as f64),
        "",
        None,
    ));
    s.note(format!(
        "Document: {} (one change per transaction{}); endContent check: {}.",
        path.display(),
        plan.sizes
            .trace_txns
            .map_or(String::new(), |t| format!(", first {t} transactions")),
        match built.matches_end {
            Some(true) => "matches",
            Some(false) => "DIFFERS",
            None => "not checked (partial replay)",
        }
    ));
    s.note("Replication: imported on one engine, then an empty engine connects (in-memory Cluster); time is from connect until the link is quiet, including the receiver's storage write.");
    Ok(())
}

fn latency_section(plan: &Plan, s: &mut Section) -> anyhow::Result<()> {
    let rt = runtime()?;
    let dir = tempfile::tempdir_in(&plan.work_dir)?;
    let (rtt, fsync) = rt.block_on(async {
        let rtt = latency::loopback_rtt(1_000).await?;
        let fsync = latency::raw_fdatasync(dir.path(), 200, 256)?;
        Ok::<_, anyhow::Error>((rtt, fsync))
    })?;
    let base50 = latency::sum_ms(&rtt, &fsync, 50.0);
    let base99 = latency::sum_ms(&rtt, &fsync, 99.0);
    for &changes in &plan.sizes.history {
        let saved = latency::history_doc(changes);
        for &daemons in &plan.sizes.daemons {
            let result = rt.block_on(latency::edit_latency(
                dir.path(),
                daemons,
                &saved,
                plan.sizes.edits,
            ))?;
            let subject = format!("{daemons} daemons, {changes} changes");
            let small = changes <= 10_000;
            let mut p50 = Row::new(
                &subject,
                "visible+durable p50",
                "ms",
                result.durable.percentile_ms(50.0),
                "RTT + fdatasync p50",
                base50,
            );
            let mut p99 = Row::new(
                &subject,
                "visible+durable p99",
                "ms",
                result.durable.percentile_ms(99.0),
                "RTT + fdatasync p99",
                base99,
            );
            if small {
                p50 = p50.target("≤ 5 ms", Target::AtMost(5.0));
                p99 = p99.target("≤ 20 ms", Target::AtMost(20.0));
            }
            s.row(p50);
            s.row(p99);
            s.row(Row::new(
                &subject,
                "visible p50",
                "ms",
                result.visible.percentile_ms(50.0),
                "RTT p50",
                rtt.percentile_ms(50.0),
            ));
            s.row(Row::new(
                &subject,
                "visible p99",
                "ms",
                result.visible.percentile_ms(99.0),
                "RTT p99",
                rtt.percentile_ms(99.0),
            ));
            s.row(Row::new(
                &subject,
                "local edit() p50",
                "ms",
                result.local.percentile_ms(50.0),
                "fdatasync p50",
                fsync.percentile_ms(50.0),
            ));
        }
    }
    s.note(format!("{} edits per configuration, one at a time, each a one-field set on the first daemon; daemons are peerdoc_node::Node in this process on 127.0.0.1 (mDNS off) in a full mesh. Visible = the last other daemon published DocumentChanged with the new heads; durable = after that, its status() showed no storage operation in flight (the node API has no per-change durability signal for remote changes, so this includes one status() round trip). Baselines in the same run: 1,000 loopback TCP round trips of 64 B and 200 appends of 256 B + fdatasync in the same directory.", plan.sizes.edits));
    s.note("peerdoc's store is durable through sled's flush (sync_file_range, not fdatasync; docs/storage.md), so its durability is cheaper and weaker than the baseline's.");
    Ok(())
}

fn durable_section(plan: &Plan, s: &mut Section) -> anyhow::Result<()> {
    let dir = tempfile::tempdir_in(&plan.work_dir)?;
    let chunks = durable::generate(plan.sizes.writes, 50);
    let mut raw = Vec::new();
    for writers in [1, 8] {
        raw.push(durable::raw(
            &dir.path().join(format!("raw-{writers}.log")),
            &chunks,
            writers,
        )?);
    }
    let rt = runtime()?;
    for (i, writers) in [1usize, 8].into_iter().enumerate() {
        let base = &raw[i];
        let store = durable::sled(
            &dir.path().join(format!("sled-{writers}")),
            &chunks,
            writers,
        )?;
        let node = rt.block_on(durable::node_edits(
            dir.path(),
            plan.sizes.node_writes,
            50,
            writers,
        ))?;
        for (name, m) in [("SledStorage::write", &store), ("node edit()", &node)] {
            let subject = format!(
                "{name}, {writers} writer{}",
                if writers == 1 { "" } else { "s" }
            );
            let baseline = format!("append+fdatasync, {writers}w");
            s.row(Row::new(
                &subject,
                "p50",
                "ms",
                m.latencies.percentile_ms(50.0),
                &baseline,
                base.latencies.percentile_ms(50.0),
            ));
            s.row(
                Row::new(
                    &subject,
                    "p99",
                    "ms",
                    m.latencies.percentile_ms(99.0),
                    &baseline,
                    base.latencies.percentile_ms(99.0),
                )
                .target("≤ 2x raw", Target::RatioAtMost(2.0)),
            );
            let mut row = Row::new(
                &subject,
                "commits/s",
                "/s",
                Some(m.per_second()),
                &baseline,
                Some(base.per_second()),
            );
            if writers == 8 {
                row = row.target("≥ 10,000/s", Target::AtLeast(10_000.0));
            }
            s.row(row);
        }
    }
    s.note(format!("SledStorage::write and the baseline: {} automerge changes (the same bytes) over 50 documents, one write each, as in crates/peerdoc-store/benches/durable_writes.rs. node edit(): {} one-field edits over 50 documents through a node's API (each returns once durable), writers = concurrent tasks.", plan.sizes.writes, plan.sizes.node_writes));
    s.note("sled's durable write is a sync_file_range flush, not an fdatasync: it survives a process crash, not necessarily a power cut (docs/storage.md).");
    Ok(())
}

pub(crate) fn populated(
    plan: &Plan,
    docs: usize,
) -> anyhow::Result<(tempfile::TempDir, child::ChildReport)> {
    let dir = tempfile::tempdir_in(&plan.work_dir)?;
    let report = child::spawn(&[
        "populate".into(),
        "--dir".into(),
        dir.path().display().to_string(),
        "--docs".into(),
        docs.to_string(),
    ])?;
    anyhow::ensure!(
        report.documents == docs,
        "populated {} of {docs} documents",
        report.documents
    );
    Ok((dir, report))
}

fn startup_child(dir: &std::path::Path) -> anyhow::Result<child::ChildReport> {
    child::spawn(&["startup".into(), "--dir".into(), dir.display().to_string()])
}

fn startup_section(plan: &Plan, s: &mut Section) -> anyhow::Result<()> {
    let n = plan.sizes.startup_docs;
    let empty = tempfile::tempdir_in(&plan.work_dir)?;
    // First start creates the identity and the store; the measured one reopens them.
    startup_child(empty.path())?;
    let base = startup_child(empty.path())?;
    let (dir, populate) = populated(plan, n)?;
    let ours = startup_child(dir.path())?;
    let subject = format!("node with {n} documents");
    s.row(
        Row::new(
            &subject,
            "time to ready",
            "ms",
            Some(ours.ms),
            "node with 0 documents",
            Some(base.ms),
        )
        .target("≤ 1 s", Target::AtMost(1_000.0)),
    );
    s.row(
        Row::new(
            &subject,
            "RSS when ready",
            "MiB",
            Some(ours.rss_ready_kib as f64 / 1024.0),
            "node with 0 documents",
            Some(base.rss_ready_kib as f64 / 1024.0),
        )
        .target("≤ 50 MB", Target::AtMost(50e6 / 1_048_576.0)),
    );
    s.row(Row::new(
        &subject,
        "peak RSS",
        "MiB",
        Some(ours.rss_peak_kib as f64 / 1024.0),
        "node with 0 documents",
        Some(base.rss_peak_kib as f64 / 1024.0),
    ));
    s.note(format!("Each start runs in its own child process (this executable, `child startup`), default NodeConfig on loopback; time is Node::start until it returns (catalog loaded, listening: ready to sync). The {n} documents were created through the node API first ({:.1} s, {:.0} creates/s; not part of the figures).", populate.ms / 1e3, per_second(n, Duration::from_secs_f64(populate.ms / 1e3))));
    Ok(())
}

fn memory_section(plan: &Plan, s: &mut Section) -> anyhow::Result<()> {
    let cache_bytes: u64 = 16 * 1024 * 1024;
    let max_docs = 1_000;
    let empty = tempfile::tempdir_in(&plan.work_dir)?;
    startup_child(empty.path())?;
    let memory_args = |dir: &std::path::Path| -> Vec<String> {
        vec![
            "memory".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--cache-bytes".into(),
            cache_bytes.to_string(),
            "--max-docs".into(),
            max_docs.to_string(),
        ]
    };
    let base = child::spawn(&memory_args(empty.path()))?;
    let mut first: Option<f64> = None;
    for &n in &plan.sizes.memory_docs {
        let (dir, _) = populated(plan, n)?;
        let ours = child::spawn(&memory_args(dir.path()))?;
        let subject = format!("{n} documents, all read once");
        let end_mib = ours.rss_end_kib as f64 / 1024.0;
        s.row(Row::new(
            &subject,
            "RSS when ready, before reading",
            "MiB",
            Some(ours.rss_ready_kib as f64 / 1024.0),
            "same node, 0 documents",
            Some(base.rss_ready_kib as f64 / 1024.0),
        ));
        s.row(Row::new(
            &subject,
            "RSS after reading all",
            "MiB",
            Some(end_mib),
            "same node, 0 documents",
            Some(base.rss_end_kib as f64 / 1024.0),
        ));
        s.row(Row::new(
            &subject,
            "peak RSS",
            "MiB",
            Some(ours.rss_peak_kib as f64 / 1024.0),
            "same node, 0 documents",
            Some(base.rss_peak_kib as f64 / 1024.0),
        ));
        s.row(Row::new(
            &subject,
            "documents in memory at the end",
            "",
            Some(ours.loaded as f64),
            "max_docs_in_memory",
            Some(max_docs as f64),
        ));
        match first {
            None => first = Some(end_mib),
            Some(smallest) => s.row(
                Row::new(
                    &subject,
                    "RSS vs the smallest N",
                    "MiB",
                    Some(end_mib),
                    format!("RSS at N={}", plan.sizes.memory_docs[0]),
                    Some(smallest),
                )
                .target("flat (≤ 1.5x)", Target::RatioAtMost(1.5)),
            ),
        }
        s.note(format!(
            "N={n}: reading every document took {:.1} s.",
            ours.ms / 1e3
        ));
    }
    s.note(format!("Child process per measurement; NodeConfig::loopback with store_cache_bytes = {} MiB and max_docs_in_memory = {max_docs}; the node lists every document and reads each once (forcing loads and evictions), then reports VmRSS and VmHWM from /proc/self/status.", cache_bytes / 1024 / 1024));
    Ok(())
}
