//! Benchmark on a 5-host namespace LAN (root only; skips otherwise): how long a
//! daemon takes from its start to its first completed sync with existing peers, and
//! how long an edit takes to become visible on the other hosts.
//!
//! ```text
//! cargo bench -p peerdoc --bench netns
//! ```
//!
//! Visibility is observed by polling `peerdoc doc get` inside each namespace, so every
//! figure includes up to one poll's cost; the table prints that cost next to them.
//!
//! "returning device → synced": a host is cut from the LAN for 60 s while another edits
//! (a ~4 KB change a second); from the heal until the returning host has every edit.
//! The returning host is alternately the one with the highest and the lowest peer id.
//!
//! "through the hub": a LAN of its own where hosts 2–5 are isolated from each other
//! (Wi-Fi client isolation) and host 1 runs `--hub`; edits from the isolated hosts in
//! turn, until visible on the 4 others (the hub and the 3 it forwards to).
//!
//! "team join CODE → first synced document": on a 2-host LAN of its own, a newcomer with
//! multicast blocked joins by invite code; from `peerdoc team join` until it reads the
//! team's document.

mod daemon;
mod lan;

use std::time::{Duration, Instant};

use daemon::{Daemon, DaemonOptions, eventually, payload};
use lan::Lan;
use serde_json::json;

const GUARD: Duration = Duration::from_secs(120);
const JOIN_ROUNDS: usize = 5;
const EDITS: usize = 30;
/// Rounds of "a device leaves for a minute and returns".
const RETURN_ROUNDS: usize = 4;
const AWAY_SECS: u64 = 60;

fn main() {
    if lan::skip_unless_supported() {
        return;
    }
    let mut by_code_ms = join_by_code();
    let mut hub_ms = through_hub();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let key = tmp.path().join("team.key");
    std::fs::write(&key, "42".repeat(32)).expect("write the team key");
    let options = DaemonOptions {
        team_key_file: Some(key),
        ..DaemonOptions::default()
    };
    let lan = Lan::new(5).expect("build the LAN");
    let start = |i: usize, dir: &str| {
        Daemon::start(lan.host(i), &tmp.path().join(dir), &options)
            .unwrap_or_else(|e| panic!("{e}"))
    };

    // Four hosts already running and sharing a document.
    let mut daemons: Vec<Daemon> = (1..=4).map(|i| start(i, &format!("host{i}"))).collect();
    for d in &daemons {
        eventually("4 hosts to see each other", GUARD, || {
            (d.connected_peers() == 3).then_some(())
        });
    }
    let id = daemons[0]
        .create(&json!({"title": "bench", "counter": -1}))
        .unwrap_or_else(|e| panic!("{e}"));
    for d in &daemons {
        eventually("the document on every host", GUARD, || d.doc(&id));
    }

    // A fifth device joins: process start, mDNS discovery, connection, sync.
    let mut join_ms = Vec::new();
    for round in 0..JOIN_ROUNDS {
        let t0 = Instant::now();
        let newcomer = start(5, &format!("newcomer{round}"));
        eventually("the newcomer's first sync", GUARD, || newcomer.doc(&id));
        join_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        drop(newcomer);
    }
    daemons.push(start(5, "host5"));
    for d in &daemons {
        eventually("5 hosts to see each other", GUARD, || {
            (d.connected_peers() == 4).then_some(())
        });
    }
    eventually("host 5 to have the document", GUARD, || daemons[4].doc(&id));

    // Cost of one poll, to read the latencies against.
    let mut poll_ms: Vec<f64> = (0..20)
        .map(|_| {
            let t0 = Instant::now();
            let _ = daemons[1].doc(&id);
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();

    // Edits from every host in turn; each of the other four polls until it sees it.
    let mut per_host_ms = Vec::new();
    let mut all_ms = Vec::new();
    for k in 0..EDITS {
        let writer = k % daemons.len();
        let t0 = Instant::now();
        daemons[writer]
            .set(&id, "/counter", &json!(k))
            .unwrap_or_else(|e| panic!("{e}"));
        let seen = visible_after(&daemons, writer, &id, k, t0);
        all_ms.push(seen.iter().copied().fold(0.0, f64::max));
        per_host_ms.extend(seen);
    }

    // A device leaves for a minute while another keeps editing, then returns.
    let mut by_id: Vec<(String, usize)> = daemons
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let id: peerdoc_net::PeerId = d
                .peer_id()
                .unwrap_or_else(|e| panic!("{e}"))
                .parse()
                .expect("a peer id");
            (id.to_base58(), i)
        })
        .collect();
    by_id.sort_by_key(|(id, _)| id.parse::<peerdoc_net::PeerId>().expect("a peer id"));
    let (lowest, highest) = (by_id[0].1, by_id[by_id.len() - 1].1);
    let editor = (0..daemons.len())
        .find(|i| *i != lowest && *i != highest)
        .expect("a third host");
    let mut return_ms = Vec::new();
    let mut dead_ms = Vec::new();
    for round in 0..RETURN_ROUNDS {
        let returning = if round % 2 == 0 { highest } else { lowest };
        let cut = Instant::now();
        lan.cut(returning + 1).expect("cut");
        let mut last = String::new();
        std::thread::scope(|s| {
            // Meanwhile: when does the editor stop counting the departed host?
            let watcher = s.spawn(|| {
                eventually("the editor to drop the departed host", GUARD, || {
                    (daemons[editor].connected_peers() == 3)
                        .then(|| cut.elapsed().as_secs_f64() * 1e3)
                })
            });
            for k in 0..AWAY_SECS {
                let tick = Instant::now();
                last = format!("away{round}x{k}");
                daemons[editor]
                    .set(&id, &format!("/{last}"), &json!(payload(k, 4096)))
                    .unwrap_or_else(|e| panic!("{e}"));
                std::thread::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed()));
            }
            dead_ms.push(watcher.join().expect("watcher"));
        });
        let healed = Instant::now();
        lan.heal(returning + 1).expect("heal");
        let first = format!("away{round}x0");
        loop {
            let doc = daemons[returning].doc(&id);
            if doc.is_some_and(|d| d.get(&last).is_some() && d.get(&first).is_some()) {
                break;
            }
            assert!(
                healed.elapsed() < GUARD,
                "the returning host never caught up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let ms = healed.elapsed().as_secs_f64() * 1e3;
        println!(
            "returning device (the {} peer id) synced {ms:.0} ms after the heal",
            if returning == highest {
                "highest"
            } else {
                "lowest"
            }
        );
        return_ms.push(ms);
        for d in &daemons {
            eventually("5 hosts to see each other again", GUARD, || {
                (d.connected_peers() == 4).then_some(())
            });
        }
    }
    drop(daemons);
    drop(lan);

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("peerdoc netns bench: 5 hosts, one bridge, team key, mDNS discovery ({cpus} CPUs)");
    println!("| measurement | n | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    row("start → first sync (5th host joins 4)", &mut join_ms);
    row(
        "team join CODE → first synced document, multicast blocked",
        &mut by_code_ms,
    );
    row("edit → visible on one other host", &mut per_host_ms);
    row(
        "edit → visible on all 4 others, 4 isolated hosts + a --hub laptop",
        &mut hub_ms,
    );
    row("edit → visible on all 4 other hosts", &mut all_ms);
    row("one read poll (included above)", &mut poll_ms);
    row(
        "cut → departed device dropped by an editing peer",
        &mut dead_ms,
    );
    row(
        "returning device → synced (60 s away, 4 KB edit/s)",
        &mut return_ms,
    );
}

/// A newcomer with multicast blocked joins by invite code: from `peerdoc team join`
/// (daemon already running) until it reads the team's document. Two hosts of their own
/// LAN; a fresh newcomer and a fresh code each round.
fn join_by_code() -> Vec<f64> {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let lan = Lan::new(2).expect("build the LAN");
    lan.nomcast(2).expect("block multicast on host 2");
    let options = DaemonOptions::default();
    let admin = Daemon::start(lan.host(1), &tmp.path().join("admin"), &options)
        .unwrap_or_else(|e| panic!("{e}"));
    admin
        .cli(&["team", "create", "--name", "Bench crew"])
        .unwrap_or_else(|e| panic!("{e}"));
    let id = admin
        .create(&json!({"title": "run of show"}))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut samples = Vec::new();
    for round in 0..JOIN_ROUNDS {
        let newcomer = Daemon::start(
            lan.host(2),
            &tmp.path().join(format!("new{round}")),
            &options,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let invite = admin
            .cli(&["team", "invite", "--name", &format!("tablet {round}")])
            .unwrap_or_else(|e| panic!("{e}"));
        let code = invite["code"].as_str().expect("code").to_owned();
        let t0 = Instant::now();
        newcomer
            .cli(&["team", "join", &code])
            .unwrap_or_else(|e| panic!("{e}"));
        eventually("the newcomer's first document", GUARD, || newcomer.doc(&id));
        samples.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    samples
}

fn row(name: &str, samples: &mut [f64]) {
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} |",
        samples.len(),
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
}

/// Four isolated hosts and a `--hub` laptop: from an edit on an isolated host until
/// all 4 others (the hub, and the 3 it forwards to) show it.
fn through_hub() -> Vec<f64> {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let lan = Lan::new(5).expect("build the LAN");
    for i in 2..=5 {
        lan.isolate(i).expect("isolate");
    }
    let hosts: Vec<Daemon> = (1..=5)
        .map(|i| {
            let options = DaemonOptions {
                settings: if i == 1 {
                    vec!["team.hub=true".into()]
                } else {
                    Vec::new()
                },
                ..DaemonOptions::default()
            };
            Daemon::start(lan.host(i), &tmp.path().join(format!("host{i}")), &options)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    hosts[0]
        .cli(&["team", "create", "--name", "Bench crew"])
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, d) in hosts.iter().enumerate().skip(1) {
        let invite = hosts[0]
            .cli(&["team", "invite", "--name", &format!("host{}", i + 1)])
            .unwrap_or_else(|e| panic!("{e}"));
        let code = invite["code"].as_str().expect("code").to_owned();
        d.cli(&["team", "join", &code])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let id = hosts[0]
        .create(&json!({"counter": -1}))
        .unwrap_or_else(|e| panic!("{e}"));
    for d in &hosts {
        eventually("the document on every host", GUARD, || d.doc(&id));
    }
    let mut samples = Vec::new();
    for k in 0..EDITS {
        let writer = 1 + k % 4;
        let t0 = Instant::now();
        hosts[writer]
            .set(&id, "/counter", &json!(k))
            .unwrap_or_else(|e| panic!("{e}"));
        let seen = visible_after(&hosts, writer, &id, k, t0);
        samples.push(seen.iter().copied().fold(0.0, f64::max));
    }
    samples
}

/// Milliseconds from `t0` until each daemon but `writer` reads `/counter == k` in `id`
/// (each polled from a thread of its own).
fn visible_after(daemons: &[Daemon], writer: usize, id: &str, k: usize, t0: Instant) -> Vec<f64> {
    std::thread::scope(|s| {
        let watchers: Vec<_> = daemons
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != writer)
            .map(|(_, d)| {
                s.spawn(move || {
                    eventually("an edit to become visible", GUARD, || {
                        let doc = d.doc(id)?;
                        (doc["counter"] == k).then(|| t0.elapsed().as_secs_f64() * 1e3)
                    })
                })
            })
            .collect();
        watchers
            .into_iter()
            .map(|w| w.join().expect("watcher"))
            .collect()
    })
}
