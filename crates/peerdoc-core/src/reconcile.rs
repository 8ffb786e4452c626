//! Whole-repo set reconciliation: two peers learn exactly which documents differ.
//!
//! Each peer offers an [`ItemSet`] of (document id → heads digest) items. On every
//! (re)connection the two run range-based set reconciliation over them (the idea of
//! Aljoscha Meyer's range-based set reconciliation, as in the "negentropy" protocol; this
//! is our own implementation and encoding). Identical sets cost two small messages
//! whatever their size; differing sets cost O(log n) rounds and bytes proportional to the
//! differences. The per-document sync protocol then runs only for the documents found.
//!
//! The state machine does no IO: [`Reconciliation::receive`] takes a payload and returns
//! the payload to send back, as opaque bytes for the wire layer.
//!
//! ```
//! use peerdoc_core::reconcile::{ItemSet, ReconcileConfig, Reconciliation};
//! use peerdoc_core::{DocumentId, HeadsDigest};
//!
//! let mut ours = ItemSet::new();
//! let mut theirs = ItemSet::new();
//! for n in 0..100u8 {
//!     let id = DocumentId::from_bytes([n; 16]);
//!     ours.insert(id, HeadsDigest([1; 16]));
//!     theirs.insert(id, HeadsDigest([if n == 42 { 2 } else { 1 }; 16]));
//! }
//! let config = ReconcileConfig::default();
//! let (mut initiator, first) = Reconciliation::initiate(&ours, &config);
//! let mut responder = Reconciliation::respond(&config);
//! let mut in_flight = Some(first);
//! let mut responder_turn = true;
//! while let Some(payload) = in_flight {
//!     in_flight = if responder_turn {
//!         responder.receive(&theirs, &payload)?
//!     } else {
//!         initiator.receive(&ours, &payload)?
//!     };
//!     responder_turn = !responder_turn;
//! }
//! assert!(initiator.is_done() && responder.is_done());
//! let found = initiator.take_differences();
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].document_id, DocumentId::from_bytes([42; 16]));
//! assert_eq!(found[0].theirs, Some(HeadsDigest([2; 16])));
//! assert_eq!(responder.take_differences().len(), 1);
//! # Ok::<(), peerdoc_core::reconcile::ReconcileError>(())
//! ```
//!
//! # Sets that change during a run
//!
//! Every payload is answered against the set as it is at that moment, so local edits
//! between rounds are allowed. The differences reported are then a best-effort snapshot:
//! a document edited mid-run may be reported with a digest that is already stale, or
//! (if it was edited in a range that had already matched) not reported at all. The
//! announcement path and the next reconnection catch those up; nothing is lost.

mod item_set;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub use item_set::{Fingerprint, ItemSet};
pub use wire::{Bound, Message, Range, RangeBody};

use crate::ids::{DocumentId, HeadsDigest};
use wire::{ITEM_LEN, MIN_ID, separator, varint_len};

/// The smallest `max_payload` honoured: room for a full split of the widest allowed
/// branching, so every round makes progress.
pub const MIN_PAYLOAD: usize = 4096;
/// The widest split honoured.
pub const MAX_BRANCHING: usize = 64;
/// Bytes kept free at the end of a budgeted payload for the fingerprint that stands in
/// for whatever did not fit: a one-byte bound, a tag, 16 bytes of sum, a varint count.
const REST_RESERVE: usize = 1 + 1 + 16 + 10;
/// Version byte and a range count varint of up to five bytes.
const HEADER_RESERVE: usize = 1 + 5;

/// What reconciliation found about one document: the two sides hold different digests
/// for it, or only one side holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Difference {
    /// The document.
    pub document_id: DocumentId,
    /// Our digest, if we hold the document.
    pub ours: Option<HeadsDigest>,
    /// The peer's digest, if it holds the document.
    pub theirs: Option<HeadsDigest>,
}

/// Tuning and bounds for a run. Both peers should use the same `max_payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// Into how many sub-ranges a mismatched range is split (clamped to 2..=64).
    pub branching: usize,
    /// A mismatched range holding at most this many of our items is answered with the
    /// items themselves instead of a split.
    pub items_threshold: usize,
    /// The largest payload sent or accepted, in bytes (at least [`MIN_PAYLOAD`]). What
    /// does not fit is deferred to a later round, never dropped.
    pub max_payload: usize,
    /// The most payloads one side accepts in a run before giving up.
    pub max_rounds: u32,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            branching: 16,
            items_threshold: 16,
            max_payload: 512 * 1024,
            max_rounds: 256,
        }
    }
}

impl ReconcileConfig {
    /// The configuration with every field brought into its sane range.
    fn clamped(&self) -> Self {
        Self {
            branching: self.branching.clamp(2, MAX_BRANCHING),
            items_threshold: self.items_threshold,
            max_payload: self.max_payload.max(MIN_PAYLOAD),
            max_rounds: self.max_rounds.max(1),
        }
    }
}

/// Why a reconciliation run failed. Every variant means the peer (or the link) broke the
/// protocol; the caller should end the run, and may disconnect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    /// The payload is not a valid reconciliation message.
    #[error("malformed reconciliation payload: {0}")]
    Malformed(String),
    /// The payload starts with a version byte we do not speak.
    #[error("unsupported reconciliation payload version {version}")]
    UnsupportedVersion {
        /// The version byte received.
        version: u8,
    },
    /// The payload is larger than the configured maximum.
    #[error("reconciliation payload of {size} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The peer kept the run going past the configured number of rounds.
    #[error("reconciliation exceeded {max} rounds")]
    TooManyRounds {
        /// The configured maximum.
        max: u32,
    },
    /// A payload arrived although we were not waiting for one.
    #[error("unexpected reconciliation payload: the run is over on our side")]
    UnexpectedPayload,
}

/// One side's state for one reconciliation run with one peer.
#[derive(Debug)]
pub struct Reconciliation {
    config: ReconcileConfig,
    awaiting_reply: bool,
    rounds: u32,
    found: Vec<Difference>,
    /// Ids already reported, so a range examined twice (after a deferred payload) does
    /// not report them again. Bounded by the number of differing documents.
    reported: BTreeSet<DocumentId>,
}

impl Reconciliation {
    /// Starts a run as the initiator: returns the state and the first payload to send.
    ///
    /// The first payload is one fingerprint of the whole set, which costs O(1) to compute.
    pub fn initiate(set: &ItemSet, config: &ReconcileConfig) -> (Self, Vec<u8>) {
        let fingerprint = set.fingerprint();
        let message = Message {
            ranges: vec![Range {
                upper: Bound::Infinity,
                body: RangeBody::Fingerprint {
                    fp: fingerprint.sum,
                    count: fingerprint.count,
                },
            }],
        };
        let state = Self {
            config: config.clamped(),
            awaiting_reply: true,
            rounds: 0,
            found: Vec::new(),
            reported: BTreeSet::new(),
        };
        (state, message.encode())
    }

    /// The responder's state before the first payload arrives.
    pub fn respond(config: &ReconcileConfig) -> Self {
        Self {
            config: config.clamped(),
            awaiting_reply: true,
            rounds: 0,
            found: Vec::new(),
            reported: BTreeSet::new(),
        }
    }

    /// Handles a payload from the peer against our current set; returns what to send
    /// back.
    ///
    /// `None` means the peer expects no answer. The run is over on our side once we
    /// return `None`, or return a payload that asks for nothing back (see
    /// [`Reconciliation::is_done`]). A payload that asked for an answer always gets one,
    /// even if it only says "everything matched", so the peer knows it is done too.
    pub fn receive(
        &mut self,
        set: &ItemSet,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, ReconcileError> {
        if !self.awaiting_reply {
            return Err(ReconcileError::UnexpectedPayload);
        }
        if payload.len() > self.config.max_payload {
            return Err(ReconcileError::PayloadTooLarge {
                size: payload.len(),
                max: self.config.max_payload,
            });
        }
        if self.rounds >= self.config.max_rounds {
            return Err(ReconcileError::TooManyRounds {
                max: self.config.max_rounds,
            });
        }
        self.rounds += 1;
        let message = Message::decode(payload)?;
        let needs_reply = message.needs_reply();

        let mut planned = Planned::default();
        let mut lower = MIN_ID;
        for range in message.ranges {
            let upper = range.upper;
            self.answer_range(set, lower, range, &mut planned);
            if let Bound::Id(id) = upper {
                lower = id;
            }
        }
        tracing::debug!(
            round = self.rounds,
            received_bytes = payload.len(),
            differences = self.found.len(),
            "reconciliation payload handled"
        );
        if !needs_reply {
            self.awaiting_reply = false;
            return Ok(None);
        }
        let reply = self.fit_to_budget(set, planned.ranges);
        self.awaiting_reply = reply.needs_reply();
        Ok(Some(reply.encode()))
    }

    /// Differences learned so far, drained: each document is reported once per run.
    pub fn take_differences(&mut self) -> Vec<Difference> {
        std::mem::take(&mut self.found)
    }

    /// Whether the run is over on our side: we are waiting for nothing more.
    pub fn is_done(&self) -> bool {
        !self.awaiting_reply
    }

    /// How many payloads we have received.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Plans our answer to one range `[lower, range.upper)` of the peer's message.
    fn answer_range(
        &mut self,
        set: &ItemSet,
        lower: DocumentId,
        range: Range,
        planned: &mut Planned,
    ) {
        let upper = range.upper;
        match range.body {
            RangeBody::Skip => planned.push(upper, RangeBody::Skip),
            RangeBody::Fingerprint { fp, count } => {
                let ours = set.range_fingerprint(lower, upper);
                if ours.sum == fp && ours.count == count {
                    planned.push(upper, RangeBody::Skip);
                } else if count == 0 {
                    // The peer holds nothing here: it lacks every one of ours, which we
                    // know now (and report first) rather than after more rounds. Our
                    // items go in one range; it answers with whatever it gained since.
                    let items: Vec<(DocumentId, HeadsDigest)> = set
                        .range(lower, upper)
                        .map(|(id, e)| (*id, e.digest))
                        .collect();
                    self.record_differences(&items, &[]);
                    planned.push(
                        upper,
                        RangeBody::Items {
                            items,
                            reply_wanted: true,
                        },
                    );
                } else if ours.count <= self.config.items_threshold as u64 {
                    let items = set.range(lower, upper).map(|(id, e)| (*id, e.digest));
                    planned.push(
                        upper,
                        RangeBody::Items {
                            items: items.collect(),
                            reply_wanted: true,
                        },
                    );
                } else {
                    self.split(set, lower, upper, planned);
                }
            }
            RangeBody::Items {
                items: theirs,
                reply_wanted,
            } => {
                let ours: Vec<(DocumentId, HeadsDigest)> = set
                    .range(lower, upper)
                    .map(|(id, entry)| (*id, entry.digest))
                    .collect();
                self.record_differences(&ours, &theirs);
                if reply_wanted {
                    planned.push(
                        upper,
                        RangeBody::Items {
                            items: ours,
                            reply_wanted: false,
                        },
                    );
                } else {
                    planned.push(upper, RangeBody::Skip);
                }
            }
        }
    }

    /// Splits `[lower, upper)` into `branching` sub-ranges holding about as many of our
    /// items each, and plans their fingerprints.
    fn split(&self, set: &ItemSet, lower: DocumentId, upper: Bound, planned: &mut Planned) {
        let items: Vec<(DocumentId, u128)> = set
            .range(lower, upper)
            .map(|(id, e)| (*id, e.hash))
            .collect();
        let parts = self.config.branching.min(items.len()).max(1);
        let mut start = 0;
        for part in 0..parts {
            let end = (part + 1) * items.len() / parts;
            let mut fingerprint = Fingerprint::default();
            for (_, hash) in &items[start..end] {
                fingerprint.sum = fingerprint.sum.wrapping_add(*hash);
                fingerprint.count += 1;
            }
            let part_upper = match items.get(end) {
                Some((next, _)) if part + 1 < parts => {
                    // `end > start` here, since `end - start >= len / parts >= 1`.
                    let last_inside = items[end - 1].0;
                    Bound::Id(separator(&last_inside, next))
                }
                _ => upper,
            };
            planned.push(
                part_upper,
                RangeBody::Fingerprint {
                    fp: fingerprint.sum,
                    count: fingerprint.count,
                },
            );
            start = end;
        }
    }

    /// Compares our items and theirs over one range (both sorted by id) and records
    /// every id whose digest differs or that only one side holds.
    fn record_differences(
        &mut self,
        ours: &[(DocumentId, HeadsDigest)],
        theirs: &[(DocumentId, HeadsDigest)],
    ) {
        let (mut i, mut j) = (0, 0);
        loop {
            let difference = match (ours.get(i), theirs.get(j)) {
                (None, None) => break,
                (Some(&(id, digest)), None) => {
                    i += 1;
                    Some((id, Some(digest), None))
                }
                (None, Some(&(id, digest))) => {
                    j += 1;
                    Some((id, None, Some(digest)))
                }
                (Some(&(our_id, ours)), Some(&(their_id, theirs))) => {
                    if our_id < their_id {
                        i += 1;
                        Some((our_id, Some(ours), None))
                    } else if their_id < our_id {
                        j += 1;
                        Some((their_id, None, Some(theirs)))
                    } else {
                        i += 1;
                        j += 1;
                        (ours != theirs).then_some((our_id, Some(ours), Some(theirs)))
                    }
                }
            };
            if let Some((document_id, ours, theirs)) = difference
                && self.reported.insert(document_id)
            {
                self.found.push(Difference {
                    document_id,
                    ours,
                    theirs,
                });
            }
        }
    }

    /// Turns the planned answer into a message of at most `max_payload` bytes. Ranges
    /// that do not fit are replaced by one fingerprint of everything from the cut to
    /// infinity, which the peer examines afresh next round; an item list that does not
    /// fit is cut between two items, so each round makes progress.
    fn fit_to_budget(&self, set: &ItemSet, planned: Vec<Range>) -> Message {
        let max = self.config.max_payload;
        let mut used = HEADER_RESERVE;
        let mut ranges = Vec::with_capacity(planned.len());
        let mut lower = MIN_ID;
        for range in planned {
            let len = range.encoded_len();
            let room = if range.upper == Bound::Infinity {
                max.saturating_sub(used)
            } else {
                max.saturating_sub(used + REST_RESERVE)
            };
            if len <= room {
                used += len;
                if let Bound::Id(id) = range.upper {
                    lower = id;
                }
                ranges.push(range);
                continue;
            }
            if let RangeBody::Items {
                items,
                reply_wanted,
            } = range.body
            {
                let room = max.saturating_sub(used + REST_RESERVE);
                // A 17-byte bound, the tag, a count varint.
                let overhead = 17 + 1 + varint_len(items.len() as u64);
                let fit = room.saturating_sub(overhead) / ITEM_LEN;
                if fit > 0 && fit < items.len() {
                    let cut = Bound::Id(separator(&items[fit - 1].0, &items[fit].0));
                    if let Bound::Id(id) = cut {
                        lower = id;
                    }
                    let mut items = items;
                    items.truncate(fit);
                    ranges.push(Range {
                        upper: cut,
                        body: RangeBody::Items {
                            items,
                            reply_wanted,
                        },
                    });
                }
            }
            let rest = set.range_fingerprint(lower, Bound::Infinity);
            tracing::debug!(
                deferred_from = %lower,
                "reconciliation payload full; deferring the rest to a later round"
            );
            ranges.push(Range {
                upper: Bound::Infinity,
                body: RangeBody::Fingerprint {
                    fp: rest.sum,
                    count: rest.count,
                },
            });
            break;
        }
        Message { ranges }
    }
}

/// Our answer as it is being planned, with neighbouring skips merged into one.
#[derive(Default)]
struct Planned {
    ranges: Vec<Range>,
}

impl Planned {
    fn push(&mut self, upper: Bound, body: RangeBody) {
        if body == RangeBody::Skip
            && let Some(last) = self.ranges.last_mut()
            && last.body == RangeBody::Skip
        {
            last.upper = upper;
            return;
        }
        self.ranges.push(Range { upper, body });
    }
}
