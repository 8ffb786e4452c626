//! "Idle is idle": the CPU a node with many documents uses while nothing happens, from
//! `/proc/self/stat` over a window, against a process that only sleeps and a node with
//! no documents, each in a child process of its own.

use std::path::Path;
use std::time::Duration;

use peerdoc_node::Node;

use crate::child::{self, ChildReport};
use crate::report::{Row, Section, Target};
use crate::sections::Plan;

/// CPU time this process has used (user + system, every thread), in seconds, with
/// `ticks_per_second` from [`clock_ticks_per_second`].
fn cpu_seconds(ticks_per_second: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces):
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / ticks_per_second
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Percent of one core used over `secs` seconds of sleeping on this task.
async fn measure(secs: u64) -> f64 {
    // Asked before the window: `getconf` is a child process of its own.
    let hz = clock_ticks_per_second();
    let before = cpu_seconds(hz);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (cpu_seconds(hz) - before) / secs as f64 * 100.0
}

/// Child: a node on `dir` (every document read once, so the memory budget's worth is
/// loaded), then `secs` seconds of nothing, measured. `dir = None`: no node at all.
pub(crate) async fn child(dir: Option<&Path>, secs: u64) -> anyhow::Result<ChildReport> {
    let Some(dir) = dir else {
        return Ok(ChildReport {
            cpu_percent: measure(secs).await,
            ..ChildReport::default()
        });
    };
    let node = Node::start(crate::nodes::loopback_config(dir)?).await?;
    for summary in node.list().await? {
        node.read(summary.id).await?;
    }
    // Let writes the reads caused (sync states, nothing else) settle first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_percent = measure(secs).await;
    let status = node.status().await?;
    node.shutdown().await;
    Ok(ChildReport {
        cpu_percent,
        documents: status.documents,
        loaded: status.loaded,
        ..ChildReport::default()
    })
}

fn spawn(dir: Option<&Path>, secs: u64) -> anyhow::Result<ChildReport> {
    let mut args = vec!["idle".to_string(), "--secs".into(), secs.to_string()];
    if let Some(dir) = dir {
        args.extend(["--dir".into(), dir.display().to_string()]);
    }
    child::spawn(&args)
}

pub(crate) fn section(plan: &Plan, s: &mut Section) -> anyhow::Result<()> {
    let (n, secs) = (plan.sizes.idle_docs, plan.sizes.idle_secs);
    let sleeper = spawn(None, secs)?;
    let empty = tempfile::tempdir_in(&plan.work_dir)?;
    let bare = spawn(Some(empty.path()), secs)?;
    let (dir, _) = crate::sections::populated(plan, n)?;
    let ours = spawn(Some(dir.path()), secs)?;
    let subject = format!("node with {n} documents ({} in memory)", ours.loaded);
    s.row(
        Row::new(
            &subject,
            "idle CPU",
            "% of a core",
            Some(ours.cpu_percent),
            "a process that sleeps",
            Some(sleeper.cpu_percent),
        )
        .target("≤ 1%", Target::AtMost(1.0)),
    );
    s.row(Row::new(
        &subject,
        "idle CPU",
        "% of a core",
        Some(ours.cpu_percent),
        "node with 0 documents",
        Some(bare.cpu_percent),
    ));
    s.note(format!("Each in its own child process: a node on loopback (default NodeConfig, mDNS off, no peers) reads every document once, waits 2 s, then sleeps {secs} s; CPU is utime + stime of every thread from /proc/self/stat over those {secs} s (clock-tick resolution)."));
    Ok(())
}
