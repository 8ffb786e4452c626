//! Pure helpers over automerge documents: a JSON view, JSON-pointer edit operations,
//! conflict reports, history and revert.
//!
//! Nothing here does IO or reads a clock: change times come from the caller through
//! `CommitOptions::with_time`. Every writer takes a transaction (`&mut impl Transactable`)
//! so the sync engine keeps control of patch logging, commit metadata and rollback.
//!
//! # Value mapping
//!
//! | automerge | JSON out ([`to_json`]) | JSON in ([`put_json`], [`EditOp::Set`]) |
//! |---|---|---|
//! | map | object (keys in order) | object |
//! | list | array | array |
//! | text object | string | string |
//! | immutable string | string | `{"$str": "..."}` |
//! | counter | `{"$counter": n}` | the same |
//! | timestamp | `{"$timestamp": ms}` | the same |
//! | bytes | `{"$bytes": "<lowercase hex>"}` | the same |
//! | int / uint / f64 | number (non-finite f64 → `null`) | number (i64, else u64, else f64) |
//! | null / bool | null / bool | null / bool |
//!
//! Strings are written as collaborative text objects, as `@automerge/automerge` 2+ does for
//! plain JS strings. A JSON object with exactly one key among `$str`, `$counter`,
//! `$timestamp`, `$bytes` is read as a tag, not a map.
//!
//! # Errors and rollback
//!
//! A failing operation returns a [`ModelError`] and may leave earlier operations of the
//! same batch in the transaction: the caller **must roll the transaction back** (drop it,
//! or call `rollback`) on error, which leaves the document unchanged.
//!
//! # Example
//!
//! ```
//! use automerge::{Automerge, transaction::CommitOptions};
//! use peerdoc_core::model::{self, EditOp};
//! use serde_json::json;
//!
//! let mut doc = Automerge::new();
//! let mut tx = doc.transaction();
//! model::init_from_json(&mut tx, &json!({"title": "Barn wedding", "timeline": []}))?;
//! let ops: Vec<EditOp> = serde_json::from_value(json!([
//!     {"op": "insert", "path": "/timeline/-", "values": [{"at": "15:00", "what": "Ceremony"}]},
//!     {"op": "splice", "path": "/title", "index": 0, "delete": 0, "insert": "The "},
//!     {"op": "set", "path": "/photos", "value": {"$counter": 0}},
//!     {"op": "increment", "path": "/photos", "by": 3},
//! ]))?;
//! model::apply_ops(&mut tx, &ops)?;
//! tx.commit_with(CommitOptions::default().with_time(1_700_000_000_000).with_message("plan"));
//!
//! assert_eq!(
//!     model::to_json(&doc),
//!     json!({
//!         "title": "The Barn wedding",
//!         "timeline": [{"at": "15:00", "what": "Ceremony"}],
//!         "photos": {"$counter": 3},
//!     })
//! );
//! assert_eq!(model::history(&doc)[0].message.as_deref(), Some("plan"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod conflicts;
mod depth;
mod error;
mod history;
mod json;
mod ops;
mod pointer;
mod reconcile;
mod tree;

pub use conflicts::{Conflict, ConflictValue, conflicts, conflicts_from_patches, resolve};
pub use depth::{MAX_NESTING_DEPTH, nests_deeper_than};
pub use error::ModelError;
pub use history::{HistoryEntry, history, revert_in, revert_to};
pub use json::{init_from_json, put_json, to_json, to_json_at, try_to_json_at};
pub use ops::{EditOp, apply_ops};
pub use reconcile::reconcile_to_json;
pub use tree::{BYTES_TAG, COUNTER_TAG, STR_TAG, TIMESTAMP_TAG, UNKNOWN_TAG};

/// The largest counter value this device writes, either sign: 2^53 − 1, the largest
/// integer a JavaScript app holds exactly.
///
/// automerge adds a counter's concurrent increments up in an i64 when it reads it, and
/// that addition wraps (or, with overflow checks, panics) past i64's range. Two devices
/// each adding 1 to a counter at i64::MAX − 1 while apart would find i64::MIN after
/// syncing. Keeping every value a device writes within ±2^53 leaves room for 1,024
/// devices' concurrent maximal increments before i64 is reached, so a merge never
/// wraps; a merge may still take a counter past 2^53 (by the sum of what devices added
/// while apart), and such a counter can then only be moved back towards the range.
pub const MAX_COUNTER: i64 = (1 << 53) - 1;

/// Whether a device may write counter value `next` where the counter holds `current`:
/// inside ±[`MAX_COUNTER`], or closer to it than before.
pub(crate) fn counter_allowed(current: i64, next: i64) -> bool {
    next.unsigned_abs() <= MAX_COUNTER.unsigned_abs()
        || next.unsigned_abs() < current.unsigned_abs()
}
