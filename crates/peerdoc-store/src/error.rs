//! The store's error type.

use std::path::PathBuf;

use peerdoc_core::StorageError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another handle in this one) has the store open: sled takes an
    /// exclusive `flock` on `<path>/db`.
    #[error("store at {path} is held by another process: {detail}")]
    HeldByAnotherProcess {
        /// The store directory.
        path: PathBuf,
        /// sled's message.
        detail: String,
    },
    /// sled panicked while opening: its files are damaged beyond what its recovery handles.
    #[error("store at {path} is damaged: sled panicked while opening it: {panic}")]
    DamagedStore {
        /// The store directory.
        path: PathBuf,
        /// The panic message.
        panic: String,
    },
    /// The directory holds sled files but not the marker every store is created with:
    /// sled could not parse its log and would have shown an empty store.
    #[error(
        "store at {path} lost its contents: sled's log is unreadable (damaged or truncated); \
         restore it from a backup or a peer, or move it aside to start empty"
    )]
    LostContents {
        /// The store directory.
        path: PathBuf,
    },
    /// Creating a new store directory failed.
    #[error("could not create store at {path}: {source}")]
    Create {
        /// The store directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// sled reported an error while opening.
    #[error("could not open store at {path}: {source}")]
    Open {
        /// The store directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// sled reported an error on a read, write or flush.
    #[error("sled failed: {0}")]
    Sled(#[from] sled::Error),
    /// A sled call panicked after opening (a sled bug or damaged files).
    #[error("sled panicked during {operation}: {panic}")]
    SledPanicked {
        /// What was being done.
        operation: &'static str,
        /// The panic message.
        panic: String,
    },
    /// This batch was committed in one sled batch with other writers' batches, and that
    /// commit failed; none of them were applied or none are known to be durable.
    #[error("the group commit holding this batch failed: {detail}")]
    GroupCommitFailed {
        /// The leader's error.
        detail: String,
    },
    /// Reading the store directory's size failed.
    #[error("could not measure {path}: {source}")]
    Measure {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key violates the storage contract.
    #[error(transparent)]
    InvalidKey(StorageError),
    /// The store is encrypted and no secret was given.
    #[error(
        "store at {path} is encrypted: give its passphrase or key file (storage.encryption, \
         docs/security.md \"Encryption at rest\")"
    )]
    SecretNeeded {
        /// The store directory.
        path: PathBuf,
    },
    /// The secret given does not open the store; nothing was read or changed.
    #[error("store at {path} is encrypted and {detail}")]
    WrongSecret {
        /// The store directory.
        path: PathBuf,
        /// What is wrong with the secret.
        detail: String,
    },
    /// A secret was given for a store created without encryption.
    #[error(
        "store at {path} was created without encryption; to encrypt it, stop the daemon and \
         run `peerdoc store encrypt`"
    )]
    NotEncrypted {
        /// The store directory.
        path: PathBuf,
    },
    /// The store's encryption record is unreadable.
    #[error("store at {path}: its encryption record is unreadable ({detail})")]
    BadEncryptionRecord {
        /// The store directory.
        path: PathBuf,
        /// What could not be read.
        detail: String,
    },
    /// A copy into another store did not read back whole.
    #[error(
        "the copy holds {} values ({} bytes) where {} values ({} bytes) were written",
        held.0, held.1, copied.0, copied.1
    )]
    CopyMismatch {
        /// Values and bytes written.
        copied: (u64, u64),
        /// Values and bytes read back.
        held: (u64, u64),
    },
    /// [`copy_store`](crate::copy_store)'s destination holds entries that no interrupted
    /// copy left there; nothing was written.
    #[error(
        "the destination is not empty (it holds {first_key}, and more): a copy only goes \
         into an empty store, so nothing was written"
    )]
    DestinationNotEmpty {
        /// Its first key.
        first_key: String,
    },
    /// [`copy_store`](crate::copy_store)'s source is itself an unfinished copy.
    #[error(
        "the source holds an unfinished copy ({marker}): finish that copy first (run it \
         again), then copy from where it went"
    )]
    SourceUnfinished {
        /// What the copy's marker says.
        marker: String,
    },
    /// Reading the source of a copy failed.
    #[error("reading the source: {0}")]
    CopySource(StorageError),
    /// Writing to or reading back from the destination of a copy failed.
    #[error("the destination: {0}")]
    CopyDestination(StorageError),
    /// The destination of a copy does not read back what was written; its marker stays,
    /// so no daemon starts on it.
    #[error(
        "verification failed: {} values ({} bytes, digest {}) were copied but the \
         destination holds {} values ({} bytes, digest {}); run the copy again",
        copied.entries, copied.bytes, copied.digest_hex(),
        held.entries, held.bytes, held.digest_hex()
    )]
    CopyVerifyFailed {
        /// What was written.
        copied: crate::store_copy::Tally,
        /// What was read back.
        held: crate::store_copy::Tally,
    },
    /// The commit ledger (`peerdoc.ledger`) or, for `power` durability, a sync of the
    /// store's files failed.
    #[error("store at {path}: the commit ledger or a file sync failed: {source}")]
    Ledger {
        /// The store directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<StoreError> for StorageError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InvalidKey(inner) => inner,
            other => StorageError::Io(other.to_string()),
        }
    }
}

impl crate::group_commit::GroupError for StoreError {
    fn from_group(detail: String) -> Self {
        StoreError::GroupCommitFailed { detail }
    }
    fn from_panic(panic: String) -> Self {
        StoreError::SledPanicked {
            operation: "group commit",
            panic,
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
