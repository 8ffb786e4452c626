//! [`ItemSet`]: the (document id → heads digest) items one peer offers, with each item's
//! hash cached so that range fingerprints cost additions, not hashing.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound as RangeEnd;

use sha2::{Digest, Sha256};

use super::wire::Bound;
use crate::ids::{DocumentId, HeadsDigest};

/// Domain separation for item hashes, so they can never be confused with another SHA-256
/// use in peerdoc (heads digests, document id checksums).
const ITEM_HASH_DOMAIN: &[u8] = b"peerdoc/reconcile/item/v1";

/// The fingerprint of the items in one range: the wrapping sum of their 128-bit item
/// hashes, and how many there are.
///
/// Sums, not XOR: a sum is just as cheap to update on insert and remove, but XOR is linear
/// over GF(2), so any 129 items already contain a subset whose XOR collides with any
/// chosen value (found by Gaussian elimination), and two equal hashes cancel out. A
/// modular sum has no such structure for honest inputs. The count is compared too, so two
/// ranges of different sizes never match by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// Wrapping sum of the item hashes in the range.
    pub sum: u128,
    /// Number of items in the range.
    pub count: u64,
}

impl Fingerprint {
    fn add(&mut self, item_hash: u128) {
        self.sum = self.sum.wrapping_add(item_hash);
        self.count = self.count.wrapping_add(1);
    }

    fn sub(&mut self, item_hash: u128) {
        self.sum = self.sum.wrapping_sub(item_hash);
        self.count = self.count.wrapping_sub(1);
    }
}

/// The hash of one item: the first 16 bytes of SHA-256(domain ‖ id ‖ digest), read as a
/// little-endian `u128`.
pub(crate) fn item_hash(id: &DocumentId, digest: &HeadsDigest) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(ITEM_HASH_DOMAIN);
    hasher.update(id.as_bytes());
    hasher.update(digest.0);
    let full = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&full[..16]);
    u128::from_le_bytes(first)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) digest: HeadsDigest,
    pub(crate) hash: u128,
}

/// The items one peer offers: doc id → digest, with cached item hashes.
///
/// Kept sorted by document id, which is the order range-based reconciliation works in.
/// The fingerprint of the whole set is maintained incrementally, so starting a run (and
/// answering a peer whose set is identical) costs O(1) whatever the number of documents.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ItemSet {
    entries: BTreeMap<DocumentId, Entry>,
    total: Fingerprint,
}

impl ItemSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an item, replacing any digest already held for `id`.
    pub fn insert(&mut self, id: DocumentId, digest: HeadsDigest) {
        let hash = item_hash(&id, &digest);
        if let Some(old) = self.entries.insert(id, Entry { digest, hash }) {
            self.total.sub(old.hash);
        }
        self.total.add(hash);
    }

    /// Removes the item for `id`, if any.
    pub fn remove(&mut self, id: &DocumentId) {
        if let Some(old) = self.entries.remove(id) {
            self.total.sub(old.hash);
        }
    }

    /// The digest held for `id`.
    pub fn get(&self, id: &DocumentId) -> Option<HeadsDigest> {
        self.entries.get(id).map(|entry| entry.digest)
    }

    /// How many items the set holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set holds no items.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The items in document id order.
    pub fn iter(&self) -> impl Iterator<Item = (DocumentId, HeadsDigest)> + '_ {
        self.entries.iter().map(|(id, entry)| (*id, entry.digest))
    }

    /// The fingerprint of the whole set, in O(1).
    pub fn fingerprint(&self) -> Fingerprint {
        self.total
    }

    /// The items with `lower <= id < upper`, with their cached hashes.
    pub(crate) fn range(
        &self,
        lower: DocumentId,
        upper: Bound,
    ) -> impl Iterator<Item = (&DocumentId, &Entry)> + '_ {
        // An empty or inverted range must not reach `BTreeMap::range`, which panics on
        // `start > end`; the decoder already rejects such ranges, this is the backstop.
        let bounds = match upper {
            Bound::Id(id) if id <= lower => None,
            Bound::Id(id) => Some((RangeEnd::Included(lower), RangeEnd::Excluded(id))),
            Bound::Infinity => Some((RangeEnd::Included(lower), RangeEnd::Unbounded)),
        };
        bounds
            .into_iter()
            .flat_map(move |bounds| self.entries.range(bounds))
    }

    /// The fingerprint of the items with `lower <= id < upper`.
    pub(crate) fn range_fingerprint(&self, lower: DocumentId, upper: Bound) -> Fingerprint {
        if lower == DocumentId::from_bytes([0; 16]) && upper == Bound::Infinity {
            return self.total;
        }
        let mut fingerprint = Fingerprint::default();
        for (_, entry) in self.range(lower, upper) {
            fingerprint.add(entry.hash);
        }
        fingerprint
    }
}

impl fmt::Debug for ItemSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ten thousand items are no use in a log line; the size and fingerprint are.
        f.debug_struct("ItemSet")
            .field("len", &self.entries.len())
            .field("fingerprint", &format_args!("{:032x}", self.total.sum))
            .finish()
    }
}

impl FromIterator<(DocumentId, HeadsDigest)> for ItemSet {
    fn from_iter<T: IntoIterator<Item = (DocumentId, HeadsDigest)>>(iter: T) -> Self {
        let mut set = Self::new();
        set.extend(iter);
        set
    }
}

impl Extend<(DocumentId, HeadsDigest)> for ItemSet {
    fn extend<T: IntoIterator<Item = (DocumentId, HeadsDigest)>>(&mut self, iter: T) {
        for (id, digest) in iter {
            self.insert(id, digest);
        }
    }
}
