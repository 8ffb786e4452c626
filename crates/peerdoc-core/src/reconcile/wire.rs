//! The reconciliation payload: our own compact binary encoding (see
//! `docs/reconciliation.md` for the byte-by-byte layout).
//!
//! ```text
//! payload = version:u8 (=1) · range_count:varint · range*
//! range   = upper:bound · tag:u8 · body
//! bound   = len:u8 (0..=16) · id prefix (len bytes, the rest of the 16 are zero)
//!         | 0xff                                   (infinity: the last range)
//! tag 0   Skip         (no body)
//! tag 1   Fingerprint  sum:16 bytes little-endian · count:varint
//! tag 2   Items        n:varint · n × (id:16 · digest:16), reply not wanted
//! tag 3   Items        the same, reply wanted
//! ```
//!
//! Ranges are half-open, `[lower, upper)`: the first starts at the all-zero id, each next
//! one at the previous upper bound, and the last ends at infinity. Varints are unsigned
//! LEB128 of at most ten bytes.
//!
//! Decoding is on peer-controlled input: every length is checked against the bytes that
//! remain before anything is allocated, bounds must strictly increase and end at
//! infinity, items must be sorted, distinct and inside their range, and trailing bytes
//! are rejected. Decoding never panics.

use super::ReconcileError;
use crate::ids::{DocumentId, HeadsDigest};

/// The version byte that starts every payload.
pub const WIRE_VERSION: u8 = 1;

const BOUND_INFINITY: u8 = 0xff;
const TAG_SKIP: u8 = 0;
const TAG_FINGERPRINT: u8 = 1;
const TAG_ITEMS: u8 = 2;
const TAG_ITEMS_REPLY_WANTED: u8 = 3;
/// One encoded item: a 16-byte id and a 16-byte digest.
pub(crate) const ITEM_LEN: usize = 32;
/// The smallest possible encoded range: a one-byte bound and a tag.
const MIN_RANGE_LEN: usize = 2;
/// The longest varint we write or accept.
const MAX_VARINT_LEN: usize = 10;

/// The exclusive upper end of a range.
///
/// The derived order puts every id before [`Bound::Infinity`], which is what the range
/// checks rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bound {
    /// The range ends just before this id.
    Id(DocumentId),
    /// The range runs to the end of the id space.
    Infinity,
}

/// What a range says about the items in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeBody {
    /// The sender has nothing to say about this range: it already matched.
    Skip,
    /// The sender's fingerprint of its items in the range.
    Fingerprint {
        /// Wrapping sum of the 128-bit item hashes.
        fp: u128,
        /// Number of items.
        count: u64,
    },
    /// The sender's items in the range, in id order.
    Items {
        /// Every (id, digest) the sender holds in the range.
        items: Vec<(DocumentId, HeadsDigest)>,
        /// Whether the receiver should answer with its own items for the range.
        reply_wanted: bool,
    },
}

/// One range of a message: everything from the previous range's upper bound (or the
/// all-zero id) up to, not including, `upper`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The exclusive upper end.
    pub upper: Bound,
    /// What the sender says about the range.
    pub body: RangeBody,
}

/// One reconciliation payload: consecutive ranges that cover the whole id space.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The ranges, in increasing order; the last one ends at infinity.
    pub ranges: Vec<Range>,
}

/// The lowest document id, where the first range starts.
pub(crate) const MIN_ID: DocumentId = DocumentId::from_bytes([0; 16]);

impl Message {
    /// Whether the receiver has to answer: some range carries a fingerprint or asks for
    /// items back.
    pub fn needs_reply(&self) -> bool {
        self.ranges.iter().any(|range| match range.body {
            RangeBody::Skip => false,
            RangeBody::Fingerprint { .. } => true,
            RangeBody::Items { reply_wanted, .. } => reply_wanted,
        })
    }

    /// The encoded payload.
    pub fn encode(&self) -> Vec<u8> {
        let body_len: usize = self.ranges.iter().map(Range::encoded_len).sum();
        let mut out = Vec::with_capacity(1 + MAX_VARINT_LEN + body_len);
        out.push(WIRE_VERSION);
        write_varint(&mut out, self.ranges.len() as u64);
        for range in &self.ranges {
            range.encode_into(&mut out);
        }
        out
    }

    /// Decodes and validates a payload from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReconcileError> {
        let mut reader = Reader { bytes, pos: 0 };
        let version = reader.byte()?;
        if version != WIRE_VERSION {
            return Err(ReconcileError::UnsupportedVersion { version });
        }
        let range_count = reader.varint()?;
        // Cap the allocation by what the remaining bytes can hold, so a claimed count of
        // 2^60 costs nothing.
        if range_count > (reader.remaining() / MIN_RANGE_LEN) as u64 {
            return Err(malformed(format!(
                "{range_count} ranges cannot fit in {} bytes",
                reader.remaining()
            )));
        }
        if range_count == 0 {
            return Err(malformed("no ranges: a payload must cover the id space"));
        }
        let mut ranges = Vec::with_capacity(range_count as usize);
        let mut lower = Bound::Id(MIN_ID);
        for _ in 0..range_count {
            if lower == Bound::Infinity {
                return Err(malformed("a range follows the one ending at infinity"));
            }
            let upper = reader.bound()?;
            if upper <= lower {
                return Err(malformed("range bounds do not increase"));
            }
            let body = match reader.byte()? {
                TAG_SKIP => RangeBody::Skip,
                TAG_FINGERPRINT => {
                    let fp = u128::from_le_bytes(reader.array::<16>()?);
                    let count = reader.varint()?;
                    RangeBody::Fingerprint { fp, count }
                }
                tag @ (TAG_ITEMS | TAG_ITEMS_REPLY_WANTED) => {
                    let items = reader.items(lower, upper)?;
                    RangeBody::Items {
                        items,
                        reply_wanted: tag == TAG_ITEMS_REPLY_WANTED,
                    }
                }
                tag => return Err(malformed(format!("unknown range tag {tag}"))),
            };
            ranges.push(Range { upper, body });
            lower = upper;
        }
        if lower != Bound::Infinity {
            return Err(malformed("the last range does not end at infinity"));
        }
        if reader.remaining() != 0 {
            return Err(malformed(format!(
                "{} trailing bytes after the last range",
                reader.remaining()
            )));
        }
        Ok(Self { ranges })
    }
}

impl Range {
    /// How many bytes this range takes on the wire.
    pub fn encoded_len(&self) -> usize {
        bound_len(&self.upper)
            + 1
            + match &self.body {
                RangeBody::Skip => 0,
                RangeBody::Fingerprint { count, .. } => 16 + varint_len(*count),
                RangeBody::Items { items, .. } => {
                    varint_len(items.len() as u64) + items.len() * ITEM_LEN
                }
            }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        write_bound(out, &self.upper);
        match &self.body {
            RangeBody::Skip => out.push(TAG_SKIP),
            RangeBody::Fingerprint { fp, count } => {
                out.push(TAG_FINGERPRINT);
                out.extend_from_slice(&fp.to_le_bytes());
                write_varint(out, *count);
            }
            RangeBody::Items {
                items,
                reply_wanted,
            } => {
                out.push(if *reply_wanted {
                    TAG_ITEMS_REPLY_WANTED
                } else {
                    TAG_ITEMS
                });
                write_varint(out, items.len() as u64);
                for (id, digest) in items {
                    out.extend_from_slice(id.as_bytes());
                    out.extend_from_slice(&digest.0);
                }
            }
        }
    }
}

/// The shortest id that is greater than `below` and at most `at_or_above`: a prefix of
/// `at_or_above` one byte longer than what the two share, padded with zeros. Used as a
/// range boundary between two neighbouring items, it encodes in a few bytes instead of
/// seventeen. Requires `below < at_or_above`.
pub(crate) fn separator(below: &DocumentId, at_or_above: &DocumentId) -> DocumentId {
    let low = below.as_bytes();
    let high = at_or_above.as_bytes();
    let shared = low.iter().zip(high).take_while(|(a, b)| a == b).count();
    let mut out = [0u8; 16];
    let keep = (shared + 1).min(16);
    out[..keep].copy_from_slice(&high[..keep]);
    DocumentId::from_bytes(out)
}

fn significant_len(id: &DocumentId) -> usize {
    16 - id.as_bytes().iter().rev().take_while(|b| **b == 0).count()
}

/// Encoded size of a bound.
pub(crate) fn bound_len(bound: &Bound) -> usize {
    match bound {
        Bound::Id(id) => 1 + significant_len(id),
        Bound::Infinity => 1,
    }
}

fn write_bound(out: &mut Vec<u8>, bound: &Bound) {
    match bound {
        Bound::Id(id) => {
            let len = significant_len(id);
            out.push(len as u8);
            out.extend_from_slice(&id.as_bytes()[..len]);
        }
        Bound::Infinity => out.push(BOUND_INFINITY),
    }
}

/// Encoded size of a varint.
pub(crate) fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn malformed(why: impl Into<String>) -> ReconcileError {
    ReconcileError::Malformed(why.into())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, len: usize) -> Result<&[u8], ReconcileError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| malformed(format!("truncated: needed {len} more bytes")))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, ReconcileError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReconcileError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, ReconcileError> {
        let mut value: u64 = 0;
        for index in 0..MAX_VARINT_LEN {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            let shift = 7 * index as u32;
            // The tenth byte may only carry the top bit of a u64.
            if index == MAX_VARINT_LEN - 1 && bits > 1 {
                return Err(malformed("varint overflows 64 bits"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint longer than ten bytes"))
    }

    fn bound(&mut self) -> Result<Bound, ReconcileError> {
        let len = self.byte()?;
        if len == BOUND_INFINITY {
            return Ok(Bound::Infinity);
        }
        let len = usize::from(len);
        if len > 16 {
            return Err(malformed(format!("bound length {len} exceeds 16")));
        }
        let mut id = [0u8; 16];
        id[..len].copy_from_slice(self.take(len)?);
        Ok(Bound::Id(DocumentId::from_bytes(id)))
    }

    fn items(
        &mut self,
        lower: Bound,
        upper: Bound,
    ) -> Result<Vec<(DocumentId, HeadsDigest)>, ReconcileError> {
        let count = self.varint()?;
        if count > (self.remaining() / ITEM_LEN) as u64 {
            return Err(malformed(format!(
                "{count} items cannot fit in {} bytes",
                self.remaining()
            )));
        }
        let mut items = Vec::with_capacity(count as usize);
        let mut previous: Option<DocumentId> = None;
        for _ in 0..count {
            let id = DocumentId::from_bytes(self.array::<16>()?);
            let digest = HeadsDigest(self.array::<16>()?);
            let position = Bound::Id(id);
            if position < lower || position >= upper {
                return Err(malformed(format!("item {id} lies outside its range")));
            }
            if previous.is_some_and(|previous| previous >= id) {
                return Err(malformed("items are not sorted and distinct"));
            }
            previous = Some(id);
            items.push((id, digest));
        }
        Ok(items)
    }
}
