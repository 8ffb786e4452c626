//! Process-crash durability: a child process writes and acknowledges document changes
//! (with frequent compaction) as fast as it can; the parent SIGKILLs it at random moments
//! and checks after every kill that each acknowledged change is still there.
//!
//! The child is this test binary re-invoked with `PEERDOC_CRASH_CHILD_DIR` set, running
//! `crash_writer_child`. `SEED=<n>` replays a kill schedule (thread scheduling still
//! varies); `CRASH_CYCLES=<n>` changes the number of kills (default 60).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use automerge::{ActorId, AutoCommit, ChangeHash, ROOT, transaction::Transactable};
use peerdoc_core::{DocumentId, Storage, StorageKey, WriteBatch};
use peerdoc_store::{SledConfig, SledStorage, StoreError, StoreSecret};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

const CHILD_DIR_ENV: &str = "PEERDOC_CRASH_CHILD_DIR";
const CHILD_SEED_ENV: &str = "PEERDOC_CRASH_CHILD_SEED";
/// Set (to anything) when the store is encrypted: odd seeds run encrypted.
const CHILD_ENCRYPTED_ENV: &str = "PEERDOC_CRASH_CHILD_ENCRYPTED";

/// The store's configuration: encrypted with a fixed key for odd seeds, so the sealed
/// path is killed mid-write as often as the plain one.
fn store_config(encrypted: bool) -> SledConfig {
    let secret = encrypted.then(|| StoreSecret::key([0x42; 32]));
    SledConfig::default().secret(secret)
}
const DOCS: usize = 5;
/// A document is compacted once it has this many incremental chunks.
const COMPACT_AFTER: usize = 4;

fn doc_ids() -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    (0..DOCS)
        .map(|_| DocumentId::random(&mut rng).to_string())
        .collect()
}

fn key(parts: &[&str]) -> StorageKey {
    StorageKey::new(parts.iter().copied())
}

fn heads_hash(heads: &[ChangeHash]) -> String {
    let mut sorted = heads.to_vec();
    sorted.sort();
    let mut hasher = Sha256::new();
    for head in &sorted {
        hasher.update(head.as_ref());
    }
    hex::encode(hasher.finalize())
}

/// A document as stored: its chunks loaded in key order (automerge queues a change until
/// its dependencies are loaded, so the order does not matter), plus the keys, so a writer
/// can compact them.
struct Stored {
    doc: AutoCommit,
    snapshots: Vec<StorageKey>,
    incrementals: Vec<StorageKey>,
}

fn load(store: &SledStorage, doc_id: &str) -> Result<Stored, String> {
    let mut doc = AutoCommit::new();
    let (mut snapshots, mut incrementals) = (Vec::new(), Vec::new());
    let entries = store
        .range(&[doc_id.to_string()])
        .map_err(|e| e.to_string())?;
    for (k, chunk) in entries {
        doc.load_incremental(&chunk)
            .map_err(|e| format!("{doc_id}: chunk {k} does not load: {e}"))?;
        match k.components().get(1).map(String::as_str) {
            Some("snapshot") => snapshots.push(k),
            Some("incremental") => incrementals.push(k),
            _ => {}
        }
    }
    Ok(Stored {
        doc,
        snapshots,
        incrementals,
    })
}

/// The child: opens the store, loads every document, then writes forever.
fn run_child(dir: &str, seed: u64) -> Result<(), String> {
    let encrypted = std::env::var_os(CHILD_ENCRYPTED_ENV).is_some();
    let store = SledStorage::open(dir, store_config(encrypted)).map_err(|e| e.to_string())?;
    let ids = doc_ids();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut docs = Vec::new();
    for id in &ids {
        let mut stored = load(&store, id)?;
        let mut actor = [0u8; 16];
        rng.fill_bytes(&mut actor);
        stored.doc.set_actor(ActorId::from(actor));
        docs.push(stored);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut say = |line: String| -> Result<(), String> {
        // One write call per line: a SIGKILL cannot leave half of an ack in the pipe
        // that the parent would then read as whole.
        out.write_all(format!("{line}\n").as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())
    };
    say("READY".into())?;
    loop {
        // One batch: a change to each of one to three documents.
        let touched: BTreeSet<usize> = (0..rng.random_range(1..=3))
            .map(|_| rng.random_range(0..DOCS))
            .collect();
        let mut batch = WriteBatch::new();
        let mut acks = Vec::new();
        for &d in &touched {
            let stored = &mut docs[d];
            let field = format!("slot{}", rng.random_range(0..12));
            let text = format!(
                "{:02}:{:02} vendor {} confirmed, table {}",
                rng.random_range(8..23),
                rng.random_range(0..60),
                rng.random_range(0..1000),
                rng.random_range(0..40)
            );
            stored
                .doc
                .put(ROOT, field, text)
                .map_err(|e| e.to_string())?;
            stored.doc.commit();
            let change = stored
                .doc
                .get_last_local_change()
                .ok_or("no local change after commit")?;
            let k = key(&[&ids[d], "incremental", &change.hash().to_string()]);
            batch.put(k.clone(), change.raw_bytes().to_vec());
            stored.incrementals.push(k);
            acks.push(format!("ACK {} {}", ids[d], change.hash()));
        }
        store.write(batch).map_err(|e| e.to_string())?;
        for ack in acks {
            say(ack)?;
        }
        for &d in &touched {
            let stored = &mut docs[d];
            if stored.incrementals.len() < COMPACT_AFTER {
                continue;
            }
            // Compaction: one atomic batch replaces the incrementals and the old
            // snapshot with a snapshot of everything.
            say(format!("COMPACTING {}", ids[d]))?;
            let snapshot_key = key(&[&ids[d], "snapshot", &heads_hash(&stored.doc.get_heads())]);
            let mut batch = WriteBatch::new();
            batch.put(snapshot_key.clone(), stored.doc.save());
            for old in stored
                .snapshots
                .drain(..)
                .chain(stored.incrementals.drain(..))
            {
                if old != snapshot_key {
                    batch.delete(old);
                }
            }
            store.write(batch).map_err(|e| e.to_string())?;
            stored.snapshots.push(snapshot_key);
            say(format!("COMPACTED {}", ids[d]))?;
        }
    }
}

#[test]
fn crash_writer_child() {
    // Only does something when the parent test re-invokes this binary.
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let seed = std::env::var(CHILD_SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if let Err(e) = run_child(&dir, seed) {
        eprintln!("crash writer failed: {e}");
        std::process::exit(2);
    }
}

fn spawn_child(dir: &std::path::Path, seed: u64, encrypted: bool, stderr: std::fs::File) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    if encrypted {
        command.env(CHILD_ENCRYPTED_ENV, "1");
    }
    command
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_SEED_ENV, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .unwrap()
}

/// Forwards complete stdout lines; a trailing partial line (cut by the kill) is dropped.
fn read_lines(child: &mut Child) -> (mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.ends_with('\n') => {
                    if tx.send(line.trim_end().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => return,
            }
        }
    });
    (rx, handle)
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_DIR_ENV).is_ok() {
        return;
    }
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(1);
            u64::from(nanos) ^ u64::from(std::process::id())
        });
    let cycles: usize = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let encrypted = seed % 2 == 1;
    println!(
        "crash test seed = {seed} (replay with SEED={seed}), {cycles} cycles, {}",
        if encrypted { "encrypted" } else { "plain" }
    );

    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let stderr_path = dir.path().join("child-stderr.log");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ids = doc_ids();
    let mut acked: BTreeMap<String, Vec<ChangeHash>> = BTreeMap::new();
    let (mut kills_in_compaction, mut kills_before_ready, mut total_acks) = (0, 0, 0);

    for cycle in 0..cycles {
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = spawn_child(&store_dir, rng.next_u64(), encrypted, stderr);
        let (lines, reader) = read_lines(&mut child);
        let early_kill = cycle % 8 == 7;
        let mut seen = Vec::new();
        if early_kill {
            // Kill while the child may still be opening/recovering the store.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..30)));
            kills_before_ready += 1;
        } else {
            // The test harness prints its own text first, on the same line as READY.
            match lines
                .iter()
                .find(|line| line.ends_with("READY"))
                .ok_or("stdout closed")
            {
                Ok(_) => {}
                other => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "cycle {cycle} (SEED={seed}): child not ready: {other:?}; stderr: {}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
            }
            if cycle == 0 {
                // A second process on the same directory is refused clearly.
                match SledStorage::open(&store_dir, store_config(encrypted).lock_wait_ms(0)) {
                    Err(StoreError::HeldByAnotherProcess { .. }) => {}
                    other => panic!("expected HeldByAnotherProcess, got {other:?}"),
                }
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(20..200)));
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "cycle {cycle} (SEED={seed}): child exited on its own ({status}); stderr: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();
        reader.join().unwrap();
        seen.extend(lines.try_iter());
        for line in &seen {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (doc, hash) = rest.split_once(' ').unwrap();
                acked
                    .entry(doc.to_string())
                    .or_default()
                    .push(hash.parse().unwrap());
                total_acks += 1;
            }
        }
        if seen.last().is_some_and(|l| l.starts_with("COMPACTING")) {
            kills_in_compaction += 1;
        }

        // After every kill: the store opens, every document loads, every ack is there.
        let store = SledStorage::open(&store_dir, store_config(encrypted))
            .unwrap_or_else(|e| panic!("cycle {cycle} (SEED={seed}): store does not open: {e}"));
        assert_eq!(
            store.rollback(),
            None,
            "cycle {cycle} (SEED={seed}): a kill, which loses nothing, was taken for a rollback"
        );
        for id in &ids {
            let mut stored =
                load(&store, id).unwrap_or_else(|e| panic!("cycle {cycle} (SEED={seed}): {e}"));
            assert!(
                stored.snapshots.len() <= 1,
                "cycle {cycle} (SEED={seed}): {id} has {} snapshots: compaction was not atomic",
                stored.snapshots.len()
            );
            assert!(
                stored.doc.get_missing_deps(&[]).is_empty(),
                "cycle {cycle} (SEED={seed}): {id} has changes with missing dependencies"
            );
            // `get_missing_deps(hashes)` lists the given hashes the document lacks.
            let doc_acks = acked.get(id).map(Vec::as_slice).unwrap_or_default();
            let lost = stored.doc.get_missing_deps(doc_acks);
            assert!(
                lost.is_empty(),
                "cycle {cycle} (SEED={seed}): {} acknowledged changes of {id} are lost, e.g. {:?}",
                lost.len(),
                &lost[..lost.len().min(3)]
            );
        }
        assert_eq!(
            store.quarantined().unwrap(),
            vec![],
            "cycle {cycle} (SEED={seed}): a crash left values that fail their checksum"
        );
    }
    println!(
        "{cycles} kills ({kills_before_ready} possibly during open, {kills_in_compaction} during \
         compaction), {total_acks} acknowledged changes, all present"
    );
    assert!(total_acks > 0, "the child never acknowledged a write");
    assert!(
        kills_in_compaction > 0,
        "no kill landed during a compaction (SEED={seed})"
    );
}
