//! Why a client command failed: the daemon's answer, or the user's input.

use std::io;

use peerdoc_core::DocumentIdError;

use crate::client::ClientError;

/// A client command's failure; its message is printed as `peerdoc: <message>`.
#[derive(Debug, thiserror::Error)]
pub(super) enum CliError {
    /// The daemon (or reaching it) failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// An argument is not a document id.
    #[error("{0}; expected an id like 4NMNnkMhL8jXrdJ9jamS58PAVdXu or an automerge: URL")]
    BadDocumentId(#[source] DocumentIdError),
    /// A path argument is not a JSON pointer.
    #[error("{0:?} is not a JSON pointer; it must start with '/', e.g. /title or /guests/0")]
    BadPointer(String),
    /// The JSON pointer names nothing in the document.
    #[error("no value at {path} in document {id}")]
    NoSuchPath {
        /// The document.
        id: String,
        /// The pointer.
        path: String,
    },
    /// No document with this id here.
    #[error("no document {id} on this device (see `peerdoc doc list`)")]
    NoSuchDocument {
        /// The document.
        id: String,
    },
    /// `doc set`'s value looks like JSON but is not.
    #[error(
        "invalid JSON value: {0}; a bare word is taken as a string, other text must be \
         JSON (quote a string: '\"two words\"')"
    )]
    InvalidValue(#[source] serde_json::Error),
    /// `doc new`'s content is not JSON.
    #[error("invalid JSON content: {0}")]
    InvalidContent(#[source] serde_json::Error),
    /// `doc new`'s content is JSON, but not an object.
    #[error("the content must be a JSON object, not {0}")]
    ContentNotObject(&'static str),
    /// An input file (or stdin) cannot be read.
    #[error("cannot read {what}: {source}")]
    ReadInput {
        /// The file, or `stdin`.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An output file cannot be written.
    #[error("cannot write {what}: {source}")]
    WriteOutput {
        /// The file.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The daemon's bytes stopped coming before the end.
    #[error("the download from the daemon failed: {0}")]
    Download(#[source] io::Error),
    /// `doc export` would print binary bytes on a terminal.
    #[error("not writing automerge bytes to a terminal; pass --output FILE or redirect stdout")]
    BinaryToTerminal,
    /// A duration argument (`--expires`) is not like 30m, 24h or 7d.
    #[error("{0:?} is not a duration; use a number with s, m, h or d, e.g. 30m, 24h or 7d")]
    BadDuration(String),
    /// A command that works on the data directory itself failed (`store encrypt`).
    #[error("{0}")]
    Local(String),
    /// `config show`'s configuration could not be assembled.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Writing to stdout failed (a closed pipe ends the command quietly).
    #[error("cannot write to stdout: {0}")]
    Stdout(#[from] io::Error),
}
