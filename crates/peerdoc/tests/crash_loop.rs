//! kill -9 in a loop, through the real daemon: a child `peerdoc run` (127.0.0.1, mDNS
//! off), 1–4 concurrent API writers creating documents and editing them, SIGKILL at a
//! random moment, restart, and every write the API acknowledged must be there, with no
//! rollback reported (a kill loses nothing, so the commit ledger must not cry wolf).
//!
//! `SEED=<n>` replays a schedule (writer count and kill moments; thread timing still
//! varies). `CRASH_CYCLES=<n>` sets the number of kills: 20 by default (CI, about 10 s), and
//!
//! ```sh
//! CRASH_CYCLES=1000 cargo test -p peerdoc --release --test crash_loop -- --nocapture
//! ```
//!
//! for the long run (`docs/storage.md`, "Durability modes").

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daemon::Daemon;
use http::Client;
use serde_json::{Value, json};

/// What the API acknowledged: per document, how many of its edits `e0..` were answered
/// 200 (the creating POST counts as the document itself).
type Acknowledged = Arc<Mutex<BTreeMap<String, usize>>>;

/// xorshift64*: the schedule's randomness, from the seed alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Creates a document, then edits it until the daemon stops answering; a new
/// document every 20 edits, so creates race the kill too.
fn writer(client: Client, writer: usize, acknowledged: Acknowledged) {
    loop {
        let body = json!({"content": {"writer": writer}}).to_string();
        let Ok(created) = client.try_call(
            "POST",
            "/v1/docs",
            Some("application/json"),
            Some(body.into()),
        ) else {
            return;
        };
        if created.status != 201 {
            return;
        }
        let id = created.json()["id"].as_str().expect("id").to_owned();
        acknowledged.lock().expect("acks").insert(id.clone(), 0);
        for i in 0..20 {
            let edit = json!({"ops": [{"op": "set", "path": format!("/e{i}"), "value": i}]});
            let answer = client.try_call(
                "PATCH",
                &format!("/v1/docs/{id}"),
                Some("application/json"),
                Some(edit.to_string().into_bytes()),
            );
            match answer {
                Ok(a) if a.status == 200 => {
                    acknowledged.lock().expect("acks").insert(id.clone(), i + 1);
                }
                _ => return,
            }
        }
    }
}

/// Every acknowledged document and edit is on `daemon`.
fn check(daemon: &Daemon, acknowledged: &BTreeMap<String, usize>, cycle: usize, seed: u64) {
    for (id, edits) in acknowledged {
        let answer = daemon.client.get(&format!("/v1/docs/{id}"));
        assert_eq!(
            answer.status, 200,
            "cycle {cycle} (SEED={seed}): acknowledged document {id} is gone"
        );
        let content: Value = answer.json()["content"].clone();
        for i in 0..*edits {
            assert_eq!(
                content[format!("e{i}")],
                json!(i),
                "cycle {cycle} (SEED={seed}): acknowledged edit e{i} of {id} is lost: {content}"
            );
        }
    }
    let status = daemon.status();
    assert_eq!(
        status["store_rollback"],
        Value::Null,
        "cycle {cycle} (SEED={seed}): a kill was reported as a rollback"
    );
}

#[test]
fn kill_9_in_a_loop_under_concurrent_writers_loses_no_acknowledged_write() {
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let cycles: usize = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("crash loop: SEED={seed} CRASH_CYCLES={cycles}");
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("a");
    let acknowledged: Acknowledged = Arc::default();
    let mut total_writes = 0;
    for cycle in 0..cycles {
        let mut daemon = Daemon::start("A", &data, "/ip4/127.0.0.1/tcp/0", &[]);
        check(&daemon, &acknowledged.lock().expect("acks"), cycle, seed);
        let writers: Vec<_> = (0..1 + rng.below(4) as usize)
            .map(|w| {
                let (client, acknowledged) = (daemon.client.clone(), acknowledged.clone());
                std::thread::spawn(move || writer(client, w, acknowledged))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
        daemon.child.kill().expect("kill -9");
        let status = daemon.wait();
        assert!(
            !status.success(),
            "cycle {cycle}: the daemon outlived SIGKILL"
        );
        for w in writers {
            w.join().expect("writer");
        }
        total_writes = acknowledged
            .lock()
            .expect("acks")
            .values()
            .map(|edits| edits + 1)
            .sum();
        if cycle % 50 == 49 {
            println!(
                "crash loop: {} kills, {total_writes} acknowledged writes",
                cycle + 1
            );
        }
    }
    let daemon = Daemon::start("A", &data, "/ip4/127.0.0.1/tcp/0", &[]);
    check(&daemon, &acknowledged.lock().expect("acks"), cycles, seed);
    println!(
        "crash loop: {cycles} kills, {total_writes} acknowledged writes, none lost (SEED={seed})"
    );
    assert!(total_writes > cycles, "too few writes to mean anything");
}
