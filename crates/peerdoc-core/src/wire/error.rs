//! Why bytes from a peer are not a message we accept.

use crate::ids::DocumentIdError;

/// Why [`Message::decode`](super::Message::decode) refused its input.
///
/// Every variant except [`WireError::UnknownType`] means the peer is broken or hostile;
/// an unknown type is most likely a newer peer and is safe to ignore.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input is longer than the caller allows; nothing of it was read.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The input's length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not well-formed CBOR, or not the CBOR shape a message has.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The input ends with bytes after the message.
    #[error("{count} trailing bytes after the message")]
    TrailingBytes {
        /// How many bytes follow the message.
        count: usize,
    },
    /// Arrays, maps or tags nest deeper than [`MAX_NESTING_DEPTH`](super::MAX_NESTING_DEPTH).
    #[error("values nest deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// A well-formed message of a type this build does not know.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A field the message type requires is absent (or `null`/`undefined`).
    #[error("{message_type} message lacks the {field} field")]
    MissingField {
        /// The message's `type` (empty if the `type` itself is missing).
        message_type: String,
        /// The missing key, as spelled on the wire.
        field: &'static str,
    },
    /// A field holds a value of the wrong CBOR type.
    #[error("{message_type} message field {field} should be {expected}")]
    WrongType {
        /// The message's `type`.
        message_type: String,
        /// The key, as spelled on the wire.
        field: &'static str,
        /// What the field should hold.
        expected: &'static str,
    },
    /// The same key appears twice in one map, so the message means two things.
    #[error("key {0:?} appears more than once")]
    DuplicateKey(String),
    /// A `documentId` is not a valid automerge-repo document id.
    #[error("invalid document id: {0}")]
    InvalidDocumentId(#[from] DocumentIdError),
}
