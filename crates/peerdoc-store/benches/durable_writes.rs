//! Durable write latency and throughput of `SledStorage::write`, with each
//! `storage.durability` (`process`: sled's flush; `power`: an `fsync` too), against raw
//! append + `fdatasync` on a file in the same directory, measured in the same run, and
//! the store's disk bytes against the documents' `save()` sizes.
//!
//! Run: `cargo bench -p peerdoc-store --bench durable_writes [-- --writes N --docs D]`.
//! Files go under `CARGO_TARGET_TMPDIR` (on the same filesystem as `target/`), or under
//! `PEERDOC_BENCH_DIR` when set. Only ratios within one run are meant to be compared.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::{AutoCommit, ROOT, transaction::Transactable};
use peerdoc_core::{Storage, StorageKey, WriteBatch};
use peerdoc_store::{Durability, SledConfig, SledStorage, StoreSecret};

struct Args {
    writes: usize,
    docs: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        writes: 4000,
        docs: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = |it: &mut dyn Iterator<Item = String>| {
            it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{flag} needs a number");
                std::process::exit(2)
            })
        };
        match flag.as_str() {
            "--writes" => args.writes = value(&mut it),
            "--docs" => args.docs = value(&mut it),
            // cargo bench passes `--bench`; ignore it and anything unknown.
            _ => {}
        }
    }
    args
}

/// One realistic incremental chunk: an automerge change to one of the documents.
struct Chunk {
    key: StorageKey,
    bytes: Vec<u8>,
}

fn generate(writes: usize, docs: usize) -> (Vec<Chunk>, Vec<AutoCommit>, Vec<String>) {
    let ids: Vec<String> = (0..docs).map(|d| format!("bench-doc-{d:04}")).collect();
    let mut documents: Vec<AutoCommit> = (0..docs).map(|_| AutoCommit::new()).collect();
    let mut chunks = Vec::with_capacity(writes);
    for i in 0..writes {
        let d = i % docs;
        let doc = &mut documents[d];
        let note = format!(
            "{:02}:{:02} florist confirmed delivery to the barn, contact +1 555 01{:02}, \
             table {} gets the peonies; photographer needs the list by {}:00 ({i})",
            8 + i % 12,
            i % 60,
            i % 100,
            i % 40,
            9 + i % 9
        );
        doc.put(ROOT, format!("slot{}", i % 20), note).expect("put");
        doc.commit();
        let change = doc.get_last_local_change().expect("change");
        chunks.push(Chunk {
            key: StorageKey::new([ids[d].as_str(), "incremental", &change.hash().to_string()]),
            bytes: change.raw_bytes().to_vec(),
        });
    }
    (chunks, documents, ids)
}

struct Measured {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Measured {
    fn percentile(&self, p: usize) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
    }
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `op` over `items` split round-robin across `writers` threads, timing each call.
fn run<T: Sync>(items: &[T], writers: usize, op: impl Fn(&T) + Sync) -> Measured {
    let latencies = Mutex::new(Vec::with_capacity(items.len()));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for w in 0..writers {
            let (op, latencies) = (&op, &latencies);
            scope.spawn(move || {
                let mut mine = Vec::new();
                for item in items.iter().skip(w).step_by(writers) {
                    let t = Instant::now();
                    op(item);
                    mine.push(t.elapsed());
                }
                latencies.lock().expect("latency lock").extend(mine);
            });
        }
    });
    let wall = start.elapsed();
    Measured {
        latencies: latencies.into_inner().expect("latency lock"),
        wall,
    }
}

fn sled_writes(
    dir: &Path,
    chunks: &[Chunk],
    writers: usize,
    durability: Durability,
    secret: Option<StoreSecret>,
) -> (Measured, SledStorage) {
    let config = SledConfig::default().durability(durability).secret(secret);
    let store = SledStorage::open(dir, config).expect("open store");
    let measured = run(chunks, writers, |chunk| {
        let mut batch = WriteBatch::new();
        batch.put(chunk.key.clone(), chunk.bytes.clone());
        store.write(batch).expect("write");
    });
    (measured, store)
}

fn raw_writes(path: &Path, chunks: &[Chunk], writers: usize) -> Measured {
    let file = Arc::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open raw file"),
    );
    run(chunks, writers, |chunk| {
        let mut f: &File = &file;
        f.write_all(&chunk.bytes).expect("append");
        f.sync_data().expect("fdatasync");
    })
}

/// Bytes actually allocated (`du -B1`) under `dir`; apparent size where unknown.
fn allocated_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("read_dir").flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt;
                    total += meta.blocks() * 512;
                }
                #[cfg(not(unix))]
                {
                    total += meta.len();
                }
            }
        }
    }
    total
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let args = parse_args();
    let base = std::env::var_os("PEERDOC_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf());
    std::fs::create_dir_all(&base).expect("bench dir");
    let work = tempfile::tempdir_in(&base).expect("tempdir");
    let (chunks, documents, ids) = generate(args.writes, args.docs);
    let mean_value = chunks.iter().map(|c| c.bytes.len()).sum::<usize>() / chunks.len().max(1);
    println!(
        "durable_writes: {} writes of automerge changes (mean {} B) over {} docs, in {}",
        chunks.len(),
        mean_value,
        args.docs,
        base.display()
    );

    let raw1 = raw_writes(&work.path().join("raw-1.log"), &chunks, 1);
    let raw8 = raw_writes(&work.path().join("raw-8.log"), &chunks, 8);
    let process = Durability::Process;
    let (sled1, store1) = sled_writes(&work.path().join("sled-1"), &chunks, 1, process, None);
    let (sled8, store8) = sled_writes(&work.path().join("sled-8"), &chunks, 8, process, None);
    let stats8 = store8.commit_stats();
    drop(store8);
    let power = Durability::Power;
    let (power1, _) = sled_writes(&work.path().join("power-1"), &chunks, 1, power, None);
    let (power8, power_store8) = sled_writes(&work.path().join("power-8"), &chunks, 8, power, None);
    let key = || Some(StoreSecret::key([7; 32]));
    let (sealed1, sealed_store1) =
        sled_writes(&work.path().join("sealed-1"), &chunks, 1, process, key());
    let (sealed8, _) = sled_writes(&work.path().join("sealed-8"), &chunks, 8, process, key());
    let power_stats8 = power_store8.commit_stats();
    drop(power_store8);

    println!();
    println!(
        "| writes through | writers | p50 µs | p99 µs | commits/s | p50 vs raw | p99 vs raw | commits/s vs raw |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, writers, m, raw) in [
        ("append + fdatasync (baseline)", 1, &raw1, &raw1),
        ("append + fdatasync (baseline)", 8, &raw8, &raw8),
        ("SledStorage::write, process", 1, &sled1, &raw1),
        ("SledStorage::write, process", 8, &sled8, &raw8),
        ("SledStorage::write, power", 1, &power1, &raw1),
        ("SledStorage::write, power", 8, &power8, &raw8),
        ("SledStorage::write, process, encrypted", 1, &sealed1, &raw1),
        ("SledStorage::write, process, encrypted", 8, &sealed8, &raw8),
    ] {
        println!(
            "| {name} | {writers} | {:.0} | {:.0} | {:.0} | {:.2}x | {:.2}x | {:.2}x |",
            micros(m.percentile(50)),
            micros(m.percentile(99)),
            m.per_second(),
            micros(m.percentile(50)) / micros(raw.percentile(50)),
            micros(m.percentile(99)) / micros(raw.percentile(99)),
            m.per_second() / raw.per_second(),
        );
    }
    println!(
        "\ngroup commit, 8 writers: {} batches, {} flushes ({:.2} batches per flush)",
        stats8.batches_written,
        stats8.flushes_performed,
        stats8.batches_written as f64 / stats8.flushes_performed.max(1) as f64
    );
    println!(
        "group commit, 8 writers, power: {} batches, {} flushes ({:.2} batches per flush)",
        power_stats8.batches_written,
        power_stats8.flushes_performed,
        power_stats8.batches_written as f64 / power_stats8.flushes_performed.max(1) as f64
    );

    // Reading every document back, as loading does: plain against encrypted.
    let read_all = |store: &SledStorage| {
        let start = Instant::now();
        let mut bytes = 0;
        for id in &ids {
            for (_, value) in store.range(std::slice::from_ref(id)).expect("range") {
                bytes += value.len();
            }
        }
        (start.elapsed(), bytes)
    };
    let (plain_read, plain_bytes) = read_all(&store1);
    let (sealed_read, sealed_bytes) = read_all(&sealed_store1);
    assert_eq!(plain_bytes, sealed_bytes);
    println!(
        "\nread every document back ({plain_bytes} B): plain {:.1} ms, encrypted {:.1} ms \
         ({:.2}x); encrypted writes, 8 writers: {:.2}x the commits/s of plain",
        plain_read.as_secs_f64() * 1e3,
        sealed_read.as_secs_f64() * 1e3,
        sealed_read.as_secs_f64() / plain_read.as_secs_f64(),
        sealed8.per_second() / sled8.per_second()
    );
    drop(sealed_store1);

    // Disk: the store holding every change as an incremental chunk, then compacted to
    // one snapshot per document, against the documents' own save() sizes.
    let saved: u64 = documents
        .iter()
        .map(|d| d.clone().save().len() as u64)
        .sum();
    let before = store1.usage().expect("usage");
    let before_allocated = allocated_bytes(store1.path());
    for (doc, id) in documents.iter().zip(&ids) {
        let mut doc = doc.clone();
        let mut batch = WriteBatch::new();
        batch.put(
            StorageKey::new([id.as_str(), "snapshot", "compacted"]),
            doc.save(),
        );
        for (key, _) in store1
            .range(&[id.clone(), "incremental".to_string()])
            .expect("range")
        {
            batch.delete(key);
        }
        store1.write(batch).expect("compact");
    }
    let after = store1.usage().expect("usage");
    let after_allocated = allocated_bytes(store1.path());
    println!();
    println!(
        "| store state | disk bytes (apparent) | allocated | live bytes | reclaimable | disk vs sum of save() | live vs sum of save() |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| sum of save() of the {} docs (baseline) | {saved} | | | | 1.00x | 1.00x |",
        args.docs
    );
    for (name, u, allocated) in [
        (
            "every change as an incremental chunk",
            &before,
            before_allocated,
        ),
        ("compacted to one snapshot per doc", &after, after_allocated),
    ] {
        println!(
            "| {name} | {} | {allocated} | {} | {} | {:.2}x | {:.2}x |",
            u.total_disk_bytes,
            u.live_bytes,
            u.reclaimable_bytes,
            u.total_disk_bytes as f64 / saved as f64,
            u.live_bytes as f64 / saved as f64
        );
    }
}
