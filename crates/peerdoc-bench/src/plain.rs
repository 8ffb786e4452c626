//! The baseline every sync figure is compared with: plain per-document
//! `automerge::sync`, in the same process, with no envelope, no storage and no network —
//! what an automerge-repo style repo does for each document on connect.

use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, AutomergeError, ROOT};

/// What one exchange cost.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Exchange {
    /// Sync messages sent, both directions.
    pub(crate) messages: u64,
    /// Their encoded bytes.
    pub(crate) bytes: u64,
    /// Round trips of the slowest document (all documents run in parallel).
    pub(crate) round_trips: u64,
    /// Wall time.
    pub(crate) time: Duration,
}

/// A small document like the engine benchmarks create: `{"i": i, "title": ...}`.
pub(crate) fn small_doc(i: usize) -> Automerge {
    let mut doc = Automerge::new();
    let result = doc.transact::<_, _, AutomergeError>(|tx| {
        tx.put(ROOT, "i", i as i64)?;
        tx.put(ROOT, "title", format!("run of show {i}"))?;
        Ok(())
    });
    debug_assert!(result.is_ok());
    doc
}

/// One document pair and the two sides' sync states.
#[derive(Debug)]
pub(crate) struct Pair {
    a: Automerge,
    b: Automerge,
    a_state: sync::State,
    b_state: sync::State,
}

impl Pair {
    /// `a` holds `doc`, `b` is empty; fresh sync states.
    pub(crate) fn cold(doc: Automerge) -> Self {
        Self {
            a: doc,
            b: Automerge::new(),
            a_state: sync::State::new(),
            b_state: sync::State::new(),
        }
    }

    /// Both hold `doc` and synced before; their sync states were persisted and
    /// reloaded, as after a restart (`State::encode` keeps only the shared heads).
    pub(crate) fn reconnecting(doc: Automerge) -> anyhow::Result<Self> {
        let mut pair = Self::cold(doc);
        pair.b = pair.a.fork();
        pair.exchange()?;
        pair.a_state = sync::State::decode(&pair.a_state.encode())?;
        pair.b_state = sync::State::decode(&pair.b_state.encode())?;
        Ok(pair)
    }

    /// Runs the sync protocol until neither side has anything to send; returns
    /// (messages, bytes, legs) where a leg is one direction's turn.
    pub(crate) fn exchange(&mut self) -> anyhow::Result<(u64, u64, u64)> {
        let (mut messages, mut bytes, mut legs) = (0u64, 0u64, 0u64);
        loop {
            let mut sent = false;
            if let Some(msg) = self.a.generate_sync_message(&mut self.a_state) {
                let encoded = msg.encode();
                messages += 1;
                bytes += encoded.len() as u64;
                legs += 1;
                sent = true;
                self.b
                    .receive_sync_message(&mut self.b_state, sync::Message::decode(&encoded)?)?;
            }
            if let Some(msg) = self.b.generate_sync_message(&mut self.b_state) {
                let encoded = msg.encode();
                messages += 1;
                bytes += encoded.len() as u64;
                legs += 1;
                sent = true;
                self.a
                    .receive_sync_message(&mut self.a_state, sync::Message::decode(&encoded)?)?;
            }
            if !sent {
                return Ok((messages, bytes, legs));
            }
        }
    }

    /// Whether both sides hold the same heads.
    pub(crate) fn converged(&self) -> bool {
        self.a.get_heads() == self.b.get_heads()
    }
}

/// Syncs every pair (one document each), as a repo would on connect.
pub(crate) fn sync_all(pairs: &mut [Pair]) -> anyhow::Result<Exchange> {
    let start = Instant::now();
    let mut total = Exchange::default();
    let mut max_legs = 0;
    for pair in pairs.iter_mut() {
        let (messages, bytes, legs) = pair.exchange()?;
        total.messages += messages;
        total.bytes += bytes;
        max_legs = max_legs.max(legs);
    }
    total.time = start.elapsed();
    total.round_trips = max_legs.div_ceil(2);
    anyhow::ensure!(
        pairs.iter().all(Pair::converged),
        "plain automerge sync did not converge"
    );
    Ok(total)
}
