//! The bulk late-arrival scenario of issue 12, timed: one stock automerge-repo app
//! creates N documents through `/v1/sync` on daemon A while a second app, on daemon B
//! (A and B connected over libp2p on loopback), opens each one as soon as its link
//! exists. Most opens happen before the document reached B: B answers
//! `doc-unavailable` and must deliver the document when it arrives.
//!
//! The baseline, measured in the same run: the same two apps (`interop/bulk.mjs`, the
//! same program) through one stock sync server (`interop/sync-server.mjs`). Prints
//! docs/s for both and the ratio.
//!
//! ```sh
//! CARGO_TARGET_DIR=target cargo bench -p peerdoc --bench bulk_late_arrival            # N = 4000
//! CARGO_TARGET_DIR=target cargo bench -p peerdoc --bench bulk_late_arrival -- 1000 4000
//! ```
//!
//! A benchmark, not a test (`harness = false`): `cargo test` does not run it. Everything
//! listens on 127.0.0.1; mDNS is off; daemons run in open mode.

#[path = "../tests/support/http.rs"]
mod http;
#[path = "../tests/support/interop.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{Daemon, SyncServer, interop};

/// Longest one run may take before it counts as failed (a hang guard).
const RUN_GUARD_MS: u64 = 900_000;

fn bulk(dir: &Path, creator: &str, finder: &str, count: usize) -> Result<Value, String> {
    let output = Command::new("node")
        .arg("bulk.mjs")
        .args([
            creator,
            finder,
            &count.to_string(),
            &RUN_GUARD_MS.to_string(),
        ])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("node: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let outcome: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| {
            format!(
                "bulk.mjs printed {stdout:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    if output.status.success() {
        Ok(outcome)
    } else {
        Err(format!("incomplete: {outcome}"))
    }
}

fn docs_per_second(outcome: &Value) -> f64 {
    let count = outcome["count"].as_f64().unwrap_or(0.0);
    let ms = outcome["ms"].as_f64().unwrap_or(f64::INFINITY);
    count / (ms / 1000.0)
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces, in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A run's outcome and the CPU seconds its server side used during it.
type Run = Result<(Value, f64), String>;

fn peerdoc_run(dir: &Path, work: &Path, count: usize) -> Run {
    let a = Daemon::start(&work.join("a"), &[]);
    let b = Daemon::start(&work.join("b"), &["--peer", &a.dial_addr()]);
    b.wait_for_peer();
    a.wait_for_peer();
    let pids = [a.child.0.id(), b.child.0.id()];
    let before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let outcome = bulk(dir, &a.sync_url(), &b.sync_url(), count)?;
    let after: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    Ok((outcome, after - before))
}

fn stock_run(dir: &Path, work: &Path, count: usize) -> Run {
    let storage = work.join("server-storage");
    std::fs::create_dir_all(&storage).map_err(|e| e.to_string())?;
    let server = SyncServer::start(dir, &storage);
    let pid = server.child.0.id();
    let before = cpu_seconds(pid);
    let outcome = bulk(dir, &server.url(), &server.url(), count)?;
    Ok((outcome, cpu_seconds(pid) - before))
}

fn show(run: &Run) -> String {
    match run {
        Ok((o, cpu)) => format!(
            "{:>6.0} docs/s  ({} found, {} late, {} ms); server CPU {:.2} s = {:.2} ms/doc",
            docs_per_second(o),
            o["found"],
            o["late"],
            o["ms"],
            cpu,
            cpu_ms_per_doc(o, *cpu)
        ),
        Err(why) => format!("failed: {why}"),
    }
}

fn cpu_ms_per_doc(outcome: &Value, cpu: f64) -> f64 {
    1000.0 * cpu / outcome["count"].as_f64().unwrap_or(1.0).max(1.0)
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![4000]
    } else {
        counts
    };
    let Some(dir) = interop() else { return };
    println!("bulk late arrival: app 1 creates N docs on daemon A, app 2 opens each on daemon B");
    println!("baseline: the same two apps through one stock automerge-repo 2.5.6 sync server");
    println!("server CPU: daemons A + B together, or the stock server, during the run");
    for count in counts {
        let work = tempfile::tempdir().expect("tempdir");
        let stock = stock_run(&dir, &work.path().join("stock"), count);
        let peerdoc = peerdoc_run(&dir, &work.path().join("peerdoc"), count);
        println!("N = {count}");
        println!("  peerdoc (A -> B):  {}", show(&peerdoc));
        println!("  stock sync server: {}", show(&stock));
        if let (Ok((p, p_cpu)), Ok((s, s_cpu))) = (&peerdoc, &stock) {
            println!(
                "  ratio peerdoc / stock: {:.2}x docs/s end to end (the two apps share one \
                 Node.js process), {:.1}x less server CPU per document",
                docs_per_second(p) / docs_per_second(s),
                cpu_ms_per_doc(s, *s_cpu) / cpu_ms_per_doc(p, *p_cpu).max(1e-9)
            );
        }
    }
}
