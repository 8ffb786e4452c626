//! Replays the fuzz targets' committed corpora under plain `cargo test`, so that CI
//! exercises every check in `fuzz/checks/` without cargo-fuzz or a nightly toolchain.
//!
//! Included (`#[path]`) by each crate's `tests/fuzz_corpus.rs`, next to the checks for
//! the decoders of that crate. Each test runs a check on every file in
//! `fuzz/corpus/<target>/` (failing when the directory is missing or empty, so that it
//! cannot pass by checking nothing), then on seeded mutants of those files: a small,
//! deterministic stand-in for the fuzzer that needs no instrumentation.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Mutants each test runs per target: 30,000 took at most 0.17 s per crate's test on the
/// 2-vCPU VM (debug profile), so this keeps every test well under a second.
pub(crate) const MUTANTS: usize = 20_000;

/// `fuzz/corpus/<target>`, from the including crate's directory (`crates/<crate>`).
pub(crate) fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// The corpus files of `target`, sorted by name; panics when there are none.
pub(crate) fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()));
    let mut seeds: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let bytes =
                fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                bytes,
            )
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "corpus {} is empty", dir.display());
    seeds
}

/// Runs `check` on every seed of `target`; returns how many there were.
pub(crate) fn check_corpus(target: &str, check: fn(&[u8])) -> usize {
    let seeds = seeds(target);
    for (name, bytes) in &seeds {
        run(check, bytes, || format!("{target}: corpus file {name}"));
    }
    seeds.len()
}

/// Runs `check` on `count` mutants of `target`'s seeds, each from a fixed seed so that a
/// failure names the mutant that replays it.
pub(crate) fn check_mutants(target: &str, check: fn(&[u8]), count: usize) {
    let seeds = seeds(target);
    let mut rng = SplitMix64(fnv1a(target.as_bytes()));
    for index in 0..count {
        let mut input = seeds[rng.below(seeds.len())].1.clone();
        for _ in 0..=rng.below(4) {
            let donor = &seeds[rng.below(seeds.len())].1;
            mutate(&mut input, donor, &mut rng);
        }
        run(check, &input, || {
            format!("{target}: mutant {index} (hex {})", hex(&input))
        });
    }
}

/// Writes generated seeds into `fuzz/corpus/<target>/`, replacing files of the same
/// name and leaving any other (such as inputs a fuzzer found and someone committed).
pub(crate) fn write_seeds(target: &str, seeds: &[(&str, Vec<u8>)]) {
    let dir = corpus_dir(target);
    fs::create_dir_all(&dir).expect("create the corpus directory");
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).expect("write a seed");
    }
}

fn run(check: fn(&[u8]), input: &[u8], describe: impl Fn() -> String) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(input))) {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        panic!("{} failed: {why}", describe());
    }
}

/// One of libFuzzer's simpler mutations, chosen at random.
fn mutate(input: &mut Vec<u8>, donor: &[u8], rng: &mut SplitMix64) {
    const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, b'"', b'0', b'-'];
    match rng.below(7) {
        // Flip a bit.
        0 if !input.is_empty() => {
            let at = rng.below(input.len());
            input[at] ^= 1 << rng.below(8);
        }
        // Overwrite a byte with a random or a boundary value.
        1 if !input.is_empty() => {
            let at = rng.below(input.len());
            input[at] = if rng.below(2) == 0 {
                rng.next() as u8
            } else {
                INTERESTING[rng.below(INTERESTING.len())]
            };
        }
        // Insert a byte.
        2 => {
            let at = rng.below(input.len() + 1);
            input.insert(at, INTERESTING[rng.below(INTERESTING.len())]);
        }
        // Delete a run of bytes.
        3 if !input.is_empty() => {
            let at = rng.below(input.len());
            let len = 1 + rng.below((input.len() - at).min(16));
            input.drain(at..at + len);
        }
        // Truncate.
        4 => {
            let keep = rng.below(input.len() + 1);
            input.truncate(keep);
        }
        // Splice in a run of another seed.
        5 if !donor.is_empty() => {
            let from = rng.below(donor.len());
            let len = 1 + rng.below((donor.len() - from).min(64));
            let at = rng.below(input.len() + 1);
            input.splice(at..at, donor[from..from + len].iter().copied());
        }
        // Duplicate a run in place.
        _ if !input.is_empty() => {
            let from = rng.below(input.len());
            let len = 1 + rng.below((input.len() - from).min(32));
            let run: Vec<u8> = input[from..from + len].to_vec();
            input.splice(from..from, run);
        }
        _ => input.push(rng.next() as u8),
    }
}

/// A tiny, well-known generator: deterministic and needs no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
