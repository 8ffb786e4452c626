//! The one error type of [`crate::model`].

use automerge::{AutomergeError, ChangeHash};

/// Why a model helper refused or failed.
///
/// Paths are RFC 6901 JSON pointers as the caller wrote them, cut at the segment where the
/// failure was found (so `PathNotFound { path: "/vendors/florist" }` for
/// `/vendors/florist/phone` means `florist` is missing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The pointer is not a valid RFC 6901 pointer, or a segment cannot address the
    /// container it lands on (a non-number segment into a list, `-` where an existing element
    /// is required).
    #[error("invalid JSON pointer {path:?}: {reason}")]
    InvalidPointer {
        /// The offending pointer (or its prefix up to the bad segment).
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A map key along the path does not exist.
    #[error("nothing at {path:?}")]
    PathNotFound {
        /// The pointer up to and including the missing key.
        path: String,
    },
    /// The path goes through a scalar or a text object, which have no children.
    #[error("{path:?} is not a map or list, so it has no children")]
    NotAContainer {
        /// The pointer to the scalar or text.
        path: String,
    },
    /// The operation needs another kind of object at this path.
    #[error("{path:?} is a {found}, expected a {expected}")]
    WrongType {
        /// The pointer to the object.
        path: String,
        /// What the operation needs (`"list"`, `"map or list"`, ...).
        expected: &'static str,
        /// What the document holds there.
        found: &'static str,
    },
    /// A list or text index (or index + count) past the end.
    #[error("index {index} is out of bounds at {path:?} (length {len})")]
    IndexOutOfBounds {
        /// The pointer to the element or the sequence.
        path: String,
        /// The offending index (for a range, the last index it would touch).
        index: usize,
        /// The length of the sequence.
        len: usize,
    },
    /// A text splice addressed something that is not a text object.
    #[error("{path:?} is not a text object")]
    NotAText {
        /// The pointer to the value.
        path: String,
    },
    /// An increment addressed something that is not a counter.
    #[error("{path:?} is not a counter")]
    NotACounter {
        /// The pointer to the value.
        path: String,
    },
    /// An increment (or a new value) would take the counter beyond ±(2^53 − 1)
    /// ([`MAX_COUNTER`](crate::model::MAX_COUNTER)), where concurrent increments could
    /// overflow when devices merge.
    #[error(
        "the counter at {path:?} would go beyond ±9007199254740991 (2^53 - 1), the range in \
         which every device and JavaScript app can add to it without overflowing"
    )]
    CounterOverflow {
        /// The pointer to the counter.
        path: String,
    },
    /// The document root is a map, so a whole-document value must be a JSON object.
    #[error("the document root must be a JSON object")]
    RootNotObject,
    /// A reserved one-key object (`{"$counter": ..}`, `{"$timestamp": ..}`, `{"$bytes": ..}`,
    /// `{"$str": ..}`) whose payload has the wrong shape.
    #[error("invalid tagged value at {path:?}: {reason}")]
    InvalidTaggedValue {
        /// The pointer to the tagged object (relative to the written value when the write
        /// has no pointer of its own, as with [`crate::model::put_json`]).
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Some of the requested heads are not changes of this document.
    #[error("unknown heads: {heads:?}")]
    UnknownHeads {
        /// The heads that the document does not contain.
        heads: Vec<ChangeHash>,
    },
    /// The document nests objects deeper than the model walks.
    #[error("the document nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// automerge refused an operation.
    #[error(transparent)]
    Automerge(#[from] AutomergeError),
}
