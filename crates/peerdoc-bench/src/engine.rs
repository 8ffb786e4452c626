//! Items 1 and 2 on peerdoc's engine: reconnect with N unchanged documents and cold sync
//! of N small documents, over `peerdoc-sim`'s in-memory [`Cluster`] (engines, in-memory
//! storage, FIFO delivery; no network), against plain per-document automerge sync.

use std::time::{Duration, Instant};

use peerdoc_sim::Cluster;
use serde_json::json;

use crate::plain::Exchange;

/// Two engines that hold the same `n` documents and never talked to each other.
pub(crate) fn twin_cluster(n: usize, seed: u64) -> Cluster {
    let mut template = Cluster::new(1, seed, |_| {});
    for i in 0..n {
        template.create(0, json!({"i": i, "title": format!("run of show {i}")}), 0);
    }
    let stores = vec![template.clone_store(0), template.clone_store(0)];
    Cluster::with_stores(stores, seed + 1, |_| {})
}

/// One-way turns in the frames sent so far: consecutive frames from the same sender are
/// one leg. With FIFO delivery this counts the exchange's sequential steps.
fn legs(cluster: &Cluster) -> u64 {
    let mut legs = 0;
    let mut last = None;
    for frame in &cluster.frames {
        if last != Some(frame.from) {
            legs += 1;
            last = Some(frame.from);
        }
    }
    legs
}

/// Connects node 1 to node 0 and delivers until quiet; the exchange's cost. The
/// handshake (join/peer) counts as one of the round trips.
pub(crate) fn connect_and_run(cluster: &mut Cluster) -> Exchange {
    let start = Instant::now();
    let link = cluster.connect(1, 0);
    cluster.run();
    let time = start.elapsed();
    let traffic = cluster.traffic(link);
    let legs_cluster = legs(cluster);
    Exchange {
        messages: traffic.messages,
        bytes: traffic.bytes,
        round_trips: legs_cluster.div_ceil(2),
        time,
    }
}

/// Reconnect with `n` unchanged documents: (exchange, frame kinds seen).
pub(crate) fn reconnect(n: usize) -> (Exchange, Vec<String>) {
    let mut cluster = twin_cluster(n, 40 + n as u64);
    let exchange = connect_and_run(&mut cluster);
    let kinds = cluster.frames.iter().map(|f| f.kind.clone()).collect();
    (exchange, kinds)
}

/// Cold sync of `n` small documents from node 0 to an empty node 1. Returns the
/// exchange and how many documents node 1 then knows.
pub(crate) fn cold_sync(n: usize) -> (Exchange, usize) {
    let mut cluster = Cluster::new(2, 70 + n as u64, |_| {});
    for i in 0..n {
        cluster.create(0, json!({"i": i, "title": format!("run of show {i}")}), 0);
    }
    let exchange = connect_and_run(&mut cluster);
    let received = cluster.nodes[1].repo.stats().documents;
    (exchange, received)
}

/// Documents per second.
pub(crate) fn docs_per_second(n: usize, time: Duration) -> f64 {
    crate::stats::per_second(n, time)
}
