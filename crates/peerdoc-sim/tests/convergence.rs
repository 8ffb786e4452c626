//! The convergence property over many seeds (see the crate docs).
//!
//! `SEED=n` replays one seed; `SIM_SEEDS=n` changes how many run (default 2,000).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Seeds that once failed (each fixed in its own commit; see docs/simulation.md), run on
/// every CI run on top of the 0..SIM_SEEDS range.
const REGRESSION_SEEDS: &[u64] = &[10, 17, 198, 435, 599, 629, 860, 2640, 7743, 62800];
/// Seeds that once failed with a cloud among the peers (run as drawn).
const CLOUD_REGRESSION_SEEDS: &[u64] = &[12, 276];

#[test]
fn seeds_that_once_failed_still_pass() {
    for &seed in REGRESSION_SEEDS {
        // As they were found: without a cloud.
        let config = peerdoc_sim::SimConfig {
            cloud: None,
            ..peerdoc_sim::SimConfig::from_seed(seed)
        };
        if let Err(failure) = peerdoc_sim::run(&config) {
            panic!("{failure}");
        }
    }
    for &seed in CLOUD_REGRESSION_SEEDS {
        let config = peerdoc_sim::SimConfig::from_seed(seed);
        assert!(
            config.cloud.is_some(),
            "seed {seed} no longer draws a cloud"
        );
        if let Err(failure) = peerdoc_sim::run(&config) {
            panic!("{failure}");
        }
    }
}

#[test]
fn converges_under_partitions_resets_and_crashes() {
    if let Ok(seed) = std::env::var("SEED") {
        let seed: u64 = seed.parse().expect("SEED must be a number");
        let config = peerdoc_sim::SimConfig::from_seed(seed);
        match peerdoc_sim::run(&config) {
            Ok(report) => println!("{report:?}"),
            Err(failure) => panic!("{failure}"),
        }
        return;
    }
    let count: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let totals = Arc::new(Mutex::new(peerdoc_sim::SimReport::default()));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (next, failures, totals) = (next.clone(), failures.clone(), totals.clone());
            std::thread::spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= count {
                        break;
                    }
                    match peerdoc_sim::run(&peerdoc_sim::SimConfig::from_seed(seed)) {
                        Ok(r) => {
                            let mut t = totals.lock().unwrap();
                            t.acked_changes += r.acked_changes;
                            t.crashes += r.crashes;
                            t.resets += r.resets;
                            t.partitions += r.partitions;
                            t.stale_frames += r.stale_frames;
                            t.conflicts += r.conflicts;
                            t.deletes += r.deletes;
                            t.evictions += r.evictions;
                            t.docs_created += r.docs_created;
                            t.receipts += r.receipts;
                            t.finds += r.finds;
                        }
                        Err(failure) => failures.lock().unwrap().push(failure.to_string()),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("simulation thread panicked");
    }
    let totals = totals.lock().unwrap();
    println!("{count} seeds: {totals:?}");
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {count} seeds failed; first:\n{}",
        failures.len(),
        failures[0]
    );
    // The schedules must actually exercise the faults they claim to.
    assert!(totals.crashes > 0 && totals.resets > 0 && totals.partitions > 0);
    assert!(totals.stale_frames > 0 && totals.deletes > 0 && totals.evictions > 0);
    assert!(totals.conflicts > 0);
    assert!(totals.receipts > 0 && totals.finds > 0);
}

#[test]
fn storage_faults_lose_nothing_acknowledged_and_the_engine_recovers() {
    let seeds: Vec<u64> = match std::env::var("SEED") {
        Ok(seed) => {
            if std::env::var_os("SIM_LOG").is_some() {
                let _ = tracing_subscriber::fmt()
                    .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
                    .with_ansi(false)
                    .with_test_writer()
                    .try_init();
            }
            vec![seed.parse().expect("SEED must be a number")]
        }
        Err(_) => {
            let number = |var: &str, default: u64| {
                std::env::var(var)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(default)
            };
            // A long sweep splits into ranges run side by side (one per core).
            let start = number("SIM_FAULT_SEED_START", 0);
            (start..start + number("SIM_FAULT_SEEDS", 400)).collect()
        }
    };
    let mut failures = Vec::new();
    let mut injected = 0;
    for seed in seeds {
        let config = peerdoc_sim::SimConfig::with_storage_faults(seed);
        match peerdoc_sim::run(&config) {
            Ok(report) => injected += report.storage_failures,
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    for failure in &failures {
        eprintln!("{failure}");
    }
    assert!(failures.is_empty(), "{} seeds failed", failures.len());
    assert!(injected > 0);
}
