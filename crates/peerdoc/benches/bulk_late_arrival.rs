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

fn peerdoc_run(dir: &Path, work: &Path, count: usize) -> Result<Value, String> {
    let a = Daemon::start(&work.join("a"), &[]);
    let b = Daemon::start(&work.join("b"), &["--peer", &a.dial_addr()]);
    b.wait_for_peer();
    a.wait_for_peer();
    bulk(dir, &a.sync_url(), &b.sync_url(), count)
}

fn stock_run(dir: &Path, work: &Path, count: usize) -> Result<Value, String> {
    let storage = work.join("server-storage");
    std::fs::create_dir_all(&storage).map_err(|e| e.to_string())?;
    let server = SyncServer::start(dir, &storage);
    bulk(dir, &server.url(), &server.url(), count)
}

fn show(outcome: &Result<Value, String>) -> String {
    match outcome {
        Ok(o) => format!(
            "{:>8.0} docs/s  ({} found, {} late, {} ms)",
            docs_per_second(o),
            o["found"],
            o["late"],
            o["ms"]
        ),
        Err(why) => format!("failed: {why}"),
    }
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
    for count in counts {
        let work = tempfile::tempdir().expect("tempdir");
        let stock = stock_run(&dir, &work.path().join("stock"), count);
        let peerdoc = peerdoc_run(&dir, &work.path().join("peerdoc"), count);
        println!("N = {count}");
        println!("  peerdoc (A -> B):  {}", show(&peerdoc));
        println!("  stock sync server: {}", show(&stock));
        if let (Ok(p), Ok(s)) = (&peerdoc, &stock) {
            println!(
                "  ratio peerdoc / stock: {:.2}x",
                docs_per_second(p) / docs_per_second(s)
            );
        }
    }
}
