//! `peerdoc store copy`: moves the documents between the data directory's sled store
//! and a PostgreSQL database, with the daemon stopped (issue 16: a sled cloud into
//! PostgreSQL, and back).
//!
//! The data directory's lock is held throughout, so a daemon on it is named, not raced.
//! The copy itself is `peerdoc_store::copy_store`: the destination must be empty or an
//! unfinished copy (started over), a marker is written first and deleted last, every
//! page is one atomic batch, and the destination is read back and compared (count,
//! bytes, SHA-256) before the marker goes. A daemon refuses a store with the marker.
//! The source is never written to (a damaged sled value is quarantined, as any read
//! does). Only the documents' store moves: the identity, token and team files stay in
//! the data directory, which the daemon on the database keeps using.

use std::time::{Duration, Instant};

use peerdoc_store::{
    CopyLimits, CopyStage, CopySummary, Durability, ScanStorage, SledConfig, SledStorage, Tally,
};
use peerdoc_store_postgres::PostgresStorage;

use super::DaemonError;
use super::datadir::DataDirLock;
use crate::cli::args::{CopyArgs, GlobalArgs};
use crate::config::{DaemonConfig, SecretSources, postgres_config};

const STORE: &str = "store";

/// Which way the documents go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Data directory into the database.
    ToDatabase,
    /// Database into the data directory.
    FromDatabase,
}

/// Runs the copy `args` describes; returns the summary to print. `progress` is told
/// what is happening after every page (for a spinner on a terminal).
pub fn copy_store(
    global: &GlobalArgs,
    args: &CopyArgs,
    progress: &mut dyn FnMut(&str),
) -> Result<String, DaemonError> {
    let fail = |message: String| DaemonError::StoreCopy(message);
    let (direction, given) = match (&args.to, &args.from) {
        (Some(to), None) => (Direction::ToDatabase, to),
        (None, Some(from)) => (Direction::FromDatabase, from),
        _ => return Err(fail("give either --to or --from".into())),
    };
    let flag = match direction {
        Direction::ToDatabase => "--to",
        Direction::FromDatabase => "--from",
    };
    let url = match (given.as_str(), &args.run.store) {
        ("", Some(env)) => env.clone(),
        ("", None) => {
            return Err(fail(format!(
                "{flag} needs the database: give its connection string, or set PEERDOC_STORE \
                 (which keeps a password out of 'ps') and give {flag} alone"
            )));
        }
        (given, Some(env)) if given != env => {
            return Err(fail(format!(
                "{flag} and PEERDOC_STORE (or --store) name different databases; give one \
                 (e.g. {flag} alone, to use PEERDOC_STORE)"
            )));
        }
        (given, _) => given.to_owned(),
    };
    // The data directory's settings, without --store: it names the copy's other end,
    // and storage.encryption belongs to the data directory's store.
    let mut run = args.run.clone();
    run.store = None;
    let resolved = DaemonConfig::load(global, &run)?;
    let pg_config = postgres_config(flag, &url, &resolved.config.storage)?;
    let secret = resolved.store_secret(&SecretSources::process())?;
    let data_dir = &resolved.data_dir;
    let store_path = data_dir.join(STORE);
    if direction == Direction::ToDatabase && !store_path.exists() {
        return Err(fail(format!(
            "no store in {}: nothing to copy (is --data-dir right?)",
            data_dir.display()
        )));
    }
    super::datadir::private_umask();
    std::fs::create_dir_all(data_dir).map_err(|source| DaemonError::File {
        path: data_dir.clone(),
        source,
    })?;
    let _lock = DataDirLock::take(data_dir)?;
    super::encrypt::recover_interrupted(data_dir)?;

    let database = PostgresStorage::open(pg_config)
        .map_err(|e| fail(format!("cannot open the database: {e}")))?;
    let where_db = format!(
        "PostgreSQL at {}, schema {}",
        database.target(),
        database.schema()
    );
    let sled_config = SledConfig::default()
        .secret(secret)
        .durability(Durability::Power);
    let sled = SledStorage::open(&store_path, sled_config)
        .map_err(|e| fail(format!("cannot open the store: {e}")))?;
    let where_sled = format!("the store in {}", store_path.display());
    let quarantined_before = sled.quarantined().map(|q| q.len()).unwrap_or(0);

    let started = Instant::now();
    let (summary, verify_time) = match direction {
        Direction::ToDatabase => run_copy(
            &sled,
            &database,
            &where_sled,
            &where_db,
            "Name another database (createdb), or drop the schema if what it holds is not \
             needed.",
            progress,
        )?,
        Direction::FromDatabase => run_copy(
            &database,
            &sled,
            &where_db,
            &where_sled,
            "Give an empty or new --data-dir.",
            progress,
        )?,
    };
    let elapsed = started.elapsed();
    let quarantined = sled
        .quarantined()
        .map(|q| q.len())
        .unwrap_or(0)
        .saturating_sub(quarantined_before);
    drop(sled);

    let (from, to) = match direction {
        Direction::ToDatabase => (&where_sled, &where_db),
        Direction::FromDatabase => (&where_db, &where_sled),
    };
    let mut text = format!(
        "copied {from}\n    into {to}\n\n{}",
        summary_lines(&summary, elapsed, verify_time)
    );
    if quarantined > 0 {
        text.push_str(&format!(
            "\n\n{quarantined} damaged values in the data directory's store failed their \
             checks and were not copied (they are in its quarantine; peers send those \
             documents again)."
        ));
    }
    text.push_str("\n\n");
    text.push_str(&match direction {
        Direction::ToDatabase => format!(
            "Next: start the daemon on the database, with this data directory (its identity \
             and team stay here) and without storage.encryption:\n    \
             PEERDOC_STORE='…' peerdoc run --data-dir {}\n\
             {} is left as it was; move it aside once the daemon serves the documents.",
            data_dir.display(),
            store_path.display()
        ),
        Direction::FromDatabase => format!(
            "Next: start the daemon without --store or PEERDOC_STORE:\n    \
             peerdoc run --data-dir {}\n\
             The database is left as it was.",
            data_dir.display()
        ),
    });
    Ok(text)
}

/// Copies `source` into `dest`; returns the summary and the time the read-back took.
fn run_copy(
    source: &(impl ScanStorage + ?Sized),
    dest: &(impl ScanStorage + ?Sized),
    from: &str,
    to: &str,
    full_destination: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(CopySummary, Duration), DaemonError> {
    let fail = |message: String| DaemonError::StoreCopy(message);
    let empty = source
        .scan_page(None, 1, usize::MAX)
        .map_err(|e| fail(format!("reading {from}: {e}")))?
        .is_empty();
    if empty {
        return Err(fail(format!(
            "{from} is empty: nothing to copy, and nothing was written (is it the right \
             one?)"
        )));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let marker = format!(
        "peerdoc store copy from {from} to {to}, started {} UTC by pid {}",
        crate::cli::output::utc(now_ms),
        std::process::id()
    );
    // The read-back starts when the last page is written.
    let mut last_page_written = Instant::now();
    let summary = peerdoc_store::copy_store(
        source,
        dest,
        &marker,
        CopyLimits::default(),
        &mut |stage: CopyStage, tally: &Tally| {
            let doing = match stage {
                CopyStage::Clearing => "deleting what an interrupted copy left",
                CopyStage::Copying => {
                    last_page_written = Instant::now();
                    "copying"
                }
                CopyStage::Verifying => "verifying",
            };
            progress(&format!(
                "{doing}: {} values, {}",
                tally.entries,
                indicatif::HumanBytes(tally.bytes)
            ));
        },
    )
    .map_err(|e| match e {
        peerdoc_store::StoreError::DestinationNotEmpty { first_key } => fail(format!(
            "{to} is not empty (it holds {first_key}, and maybe more): a copy only goes \
             into an empty store, so nothing was written. {full_destination}"
        )),
        other => fail(format!("copying {from} into {to}: {other}")),
    })?;
    Ok((summary, last_page_written.elapsed()))
}

/// The summary table: one fact a line.
fn summary_lines(summary: &CopySummary, elapsed: Duration, verify_time: Duration) -> String {
    let copied = &summary.copied;
    let mut lines = vec![
        format!("  documents  {}", copied.documents),
        format!(
            "  values     {} in {} atomic batches",
            copied.entries, summary.batches
        ),
        format!(
            "  bytes      {} ({} bytes)",
            indicatif::HumanBytes(copied.bytes),
            copied.bytes
        ),
        format!(
            "  verified   read back identical: sha256 {}",
            copied.digest_hex()
        ),
        format!(
            "  time       {} ({} of it reading back)",
            seconds(elapsed),
            seconds(verify_time)
        ),
    ];
    if summary.cleared > 0 {
        lines.push(format!(
            "  restarted  an interrupted copy had left {} values; they were deleted first",
            summary.cleared
        ));
    }
    lines.join("\n")
}

/// "850 ms" below a second, "12.4 s" above.
fn seconds(time: Duration) -> String {
    if time < Duration::from_secs(1) {
        format!("{} ms", time.as_millis())
    } else {
        format!("{:.1} s", time.as_secs_f64())
    }
}
