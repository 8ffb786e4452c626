//! peerdoc's benchmark program. Every figure is printed next to a baseline measured in
//! the same run, and the ratio; the whole run also goes to a JSON file.
//!
//! ```sh
//! cargo run --release -p peerdoc-bench                # the full run
//! cargo run --release -p peerdoc-bench -- --quick     # every N shrunk: a smoke test
//! ```
//!
//! Everything runs in this process (or in a child process of it) on 127.0.0.1 with
//! mDNS off: nothing is sent to any other host.

mod big_doc;
mod child;
mod cloud;
mod durable;
mod engine;
mod idle;
mod latency;
mod node_sync;
mod nodes;
mod plain;
mod report;
mod samod_sync;
mod sections;
mod stats;
mod trace;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Runs peerdoc's benchmarks and prints a table of every figure next to its baseline.
#[derive(Debug, Parser)]
#[command(name = "peerdoc-bench")]
struct Args {
    /// Shrink every N so the run takes well under a minute (a smoke test for CI).
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/peerdoc-bench.json")]
    json: PathBuf,
    /// Directory for data directories and fsync files (must be on the disk being
    /// measured, not a tmpfs).
    #[arg(long, default_value = "target/peerdoc-bench-work")]
    work_dir: PathBuf,
    /// Directory holding `editing-traces/` (the project's shared data).
    #[arg(long, env = "PEERDOC_DATA")]
    data: Option<PathBuf>,
    /// Run only these sections (comma-separated ids: reconnect, cold_sync, trace,
    /// latency, durable_writes, startup, memory, idle, big_doc, cloud).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip the samod baseline (it takes up to three minutes in the full run).
    #[arg(long)]
    no_samod: bool,
    #[command(subcommand)]
    child: Option<Child>,
}

#[derive(Debug, Subcommand)]
enum Child {
    /// Internal: one measured node in its own process.
    #[command(hide = true)]
    Child {
        #[command(subcommand)]
        task: child::ChildTask,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Child::Child { task }) = args.child {
        return child::run_child(task);
    }
    let data = args.data.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&args.work_dir)?;
    let plan = sections::Plan {
        sizes: {
            let mut sizes = if args.quick {
                sections::Sizes::quick()
            } else {
                sections::Sizes::full()
            };
            if args.no_samod {
                sizes.samod.clear();
            }
            sizes
        },
        work_dir: args.work_dir.clone(),
        data,
        only: args.only,
        node_sync: Default::default(),
    };
    let report = sections::run_all(&plan, args.quick)?;
    if let Some(parent) = args.json.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    println!("JSON written to {}", args.json.display());
    Ok(())
}

/// `shared/data` beside the repository (a clone's `../shared`), or beside the
/// directory holding it (a worktree under `wt/`).
fn default_data_dir() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [repo.join("../shared/data"), repo.join("../../shared/data")];
    candidates
        .iter()
        .find(|c| c.is_dir())
        .unwrap_or(&candidates[0])
        .clone()
}
