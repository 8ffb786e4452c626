//! Runs many simulation seeds in parallel and reports the first failure.
//!
//! ```text
//! cargo run -p peerdoc-sim --release -- --seeds 100000 [--start 0] [--threads 2]
//! SEED=1234 cargo run -p peerdoc-sim --release     # replay one seed
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn arg(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .ok_or(format!("{name} needs a value"))?
            .parse()
            .map_err(|e| format!("{name}: {e}")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parsed = (|| -> Result<(u64, u64, u64), String> {
        if let Ok(seed) = std::env::var("SEED") {
            let seed = seed.parse().map_err(|e| format!("SEED: {e}"))?;
            return Ok((seed, 1, 1));
        }
        Ok((
            arg(&args, "--start", 0)?,
            arg(&args, "--seeds", 1000)?,
            arg(&args, "--threads", 2)?,
        ))
    })();
    let (start, count, threads) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("peerdoc-sim: {e}\nusage: peerdoc-sim [--seeds N] [--start S] [--threads T]");
            std::process::exit(2);
        }
    };
    let next = Arc::new(AtomicU64::new(start));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let began = Instant::now();
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (next, done, failures) = (next.clone(), done.clone(), failures.clone());
            std::thread::spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= start + count {
                        break;
                    }
                    if let Err(failure) = peerdoc_sim::run(&peerdoc_sim::SimConfig::from_seed(seed))
                    {
                        eprintln!("{failure}");
                        if let Ok(mut f) = failures.lock() {
                            f.push(seed);
                        }
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 1000 == 0 {
                        eprintln!("{n} seeds, {:.0} s", began.elapsed().as_secs_f64());
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    println!(
        "{} passed, {} failed ({} seeds from {start} in {:.1} s)",
        count as usize - failures.len(),
        failures.len(),
        count,
        began.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        println!("failing seeds: {failures:?}");
        std::process::exit(1);
    }
}
