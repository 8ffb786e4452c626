//! [`SledStorage`]: the sled-backed [`Storage`].

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::fmt;
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use peerdoc_core::storage::validate_key;
use peerdoc_core::{Storage, StorageError, StorageKey, WriteBatch, WriteOp};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionResult, TransactionError};

use crate::config::{Durability, SledConfig, SpaceMode};
use crate::crypt::{Cipher, CryptError, EncryptionRecord, StoreSecret};
use crate::error::{StoreError, panic_message};
use crate::frame::{CorruptionKind, frame, unframe};
use crate::group_commit::{CommitStats, GroupCommit};
use crate::key::{decode_key, encode_key, encode_prefix};
use crate::ledger::{Ledger, RollbackReport};
use crate::quarantine::{QuarantinedChunk, decode_record, encode_record, record_key, sequence_of};
use crate::usage::{KeyClass, StorageUsage, classify, directory_bytes};

const DATA_TREE: &str = "peerdoc/data/v1";
const QUARANTINE_TREE: &str = "peerdoc/quarantine/v1";
const META_TREE: &str = "peerdoc/meta/v1";
/// Written once when a store is created (see [`create_marked`]).
const MARKER_KEY: &[u8] = b"store-format";
const MARKER_VALUE: &[u8] = b"peerdoc-store v1";
/// An encrypted store's [`EncryptionRecord`] (absent: the store is not encrypted).
const ENCRYPTION_KEY: &[u8] = b"encryption";
/// The last rollback found on open (see [`RecordedRollback`]).
const ROLLBACK_KEY: &[u8] = b"last-rollback";
/// The data tree's record of the last group commit, written in the same batch as the
/// commit's values. No [`StorageKey`] encodes to it (an encoded key never starts with
/// 0xFF), so reads skip it.
pub(crate) const COMMIT_SEQ_KEY: &[u8] = b"\xffpeerdoc-commit-seq";
/// Values at least this large may go to sled's blob files (sled 0.34 moves values over
/// about a quarter of its 512 KiB segments there), which `power` durability syncs too.
const BLOB_CANDIDATE_BYTES: usize = 64 * 1024;
/// How often a read retries after quarantining a value that a writer may have replaced.
const READ_ATTEMPTS: usize = 3;

/// An encoded key and its framed value (`None` deletes).
type EncodedOp = (Vec<u8>, Option<Vec<u8>>);

/// One writer's batch, encoded, with the documents it writes (for the ledger).
struct Staged {
    ops: Vec<EncodedOp>,
    documents: BTreeSet<String>,
}

/// A rollback as recorded in the store when it was found, so that it is still known
/// after the restarts that follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRollback {
    /// What went back.
    pub report: RollbackReport,
    /// When the store found it, ms since the Unix epoch.
    pub detected_ms: u64,
}

/// A [`Storage`] on sled 0.34 with checksummed values, quarantine of damaged values and
/// group commit. See the crate docs and `docs/storage.md`.
pub struct SledStorage {
    path: PathBuf,
    db: sled::Db,
    pub(crate) data: sled::Tree,
    quarantine: sled::Tree,
    meta: sled::Tree,
    commit: GroupCommit<Staged>,
    next_quarantine_seq: AtomicU64,
    /// The sequence number of the next group commit.
    next_commit: AtomicU64,
    ledger: Mutex<Ledger>,
    durability: Durability,
    /// sled's log file, for `fsync` under [`Durability::Power`].
    log_file: Option<File>,
    /// Blob files already synced under [`Durability::Power`].
    synced_blobs: Mutex<BTreeSet<std::ffi::OsString>>,
    rollback: Option<RollbackReport>,
    /// Seals and opens values in an encrypted store.
    cipher: Option<Cipher>,
    /// `passphrase` or `key` for an encrypted store.
    encryption: Option<&'static str>,
}

impl fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStorage")
            .field("path", &self.path)
            .field("commit", &self.commit.stats())
            .field("durability", &self.durability)
            .field("encryption", &self.encryption)
            .finish_non_exhaustive()
    }
}

impl SledStorage {
    /// Opens the store in directory `path`, creating it when `path` is missing or an
    /// empty directory.
    ///
    /// Never panics: a sled panic on damaged files becomes [`StoreError::DamagedStore`],
    /// a directory another process holds gives [`StoreError::HeldByAnotherProcess`], and
    /// a store whose log sled could not parse gives [`StoreError::LostContents`] instead
    /// of sled's silent empty store. A new store is built in a staging directory beside
    /// `path` (`.<name>.creating-<pid>`) and renamed into place.
    ///
    /// A store that lost acknowledged writes (sled dropped the end of a damaged log) opens,
    /// with the documents that went back in [`SledStorage::rollback`], a log line at
    /// ERROR, and a record kept in the store ([`SledStorage::last_rollback`]).
    ///
    /// An encrypted store needs [`SledConfig::secret`]: without it the error is
    /// [`StoreError::SecretNeeded`], with a wrong one [`StoreError::WrongSecret`], and a
    /// secret for a store created without encryption gives [`StoreError::NotEncrypted`].
    /// Nothing in the store is read or changed before the secret is proven.
    pub fn open(path: impl AsRef<Path>, config: SledConfig) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut created = None;
        if is_fresh(&path) {
            created = create_marked(&path, &config)?;
        }
        let (db, data, quarantine, meta) = open_sled_waiting(&path, &config)?;
        if meta.get(MARKER_KEY)?.is_none() {
            // Every store is created with the marker before it appears at `path`, so a
            // store without it lost its log: sled 0.34 opens a log it cannot parse as
            // an empty store rather than failing.
            return Err(StoreError::LostContents { path });
        }
        let (cipher, encryption) = open_encryption(&path, &meta, config.secret.as_ref(), created)?;
        let mut next_seq = 0;
        for entry in quarantine.iter().keys() {
            next_seq = next_seq.max(sequence_of(&entry?) + 1);
        }
        let ledger_error = |source| StoreError::Ledger {
            path: path.clone(),
            source,
        };
        let recovered = match data.get(COMMIT_SEQ_KEY)? {
            Some(bytes) => u64::from_le_bytes(bytes.as_ref().try_into().unwrap_or([0; 8])),
            None => 0,
        };
        let mut contents = Ledger::read(&path).map_err(ledger_error)?;
        if contents.torn {
            tracing::warn!(
                path = %path.display(),
                "the commit ledger ends in a damaged record; it is rewritten from what is readable"
            );
        }
        let rollback = contents.rollback_since(recovered);
        let next_commit = contents.last_commit().max(recovered) + 1;
        if let Some(report) = &rollback {
            tracing::error!(
                path = %path.display(),
                documents = ?report.documents,
                "{report}; peers that hold them will send the lost changes again"
            );
            let recorded = RecordedRollback {
                report: report.clone(),
                detected_ms: now_ms(),
            };
            meta.insert(ROLLBACK_KEY, encode_rollback(&recorded))?;
            db.flush()?;
            // From now on the store's older state is what it acknowledges.
            for seq in contents.latest.values_mut() {
                *seq = (*seq).min(recovered);
            }
        }
        let sync = config.durability == Durability::Power;
        let ledger = Ledger::create(&path, &contents.latest, sync).map_err(ledger_error)?;
        let log_file = match config.durability {
            Durability::Power => Some(File::open(path.join("db")).map_err(ledger_error)?),
            Durability::Process => None,
        };
        Ok(Self {
            path,
            db,
            data,
            quarantine,
            meta,
            commit: GroupCommit::default(),
            next_quarantine_seq: AtomicU64::new(next_seq),
            next_commit: AtomicU64::new(next_commit),
            ledger: Mutex::new(ledger),
            durability: config.durability,
            log_file,
            synced_blobs: Mutex::new(BTreeSet::new()),
            rollback,
            cipher,
            encryption,
        })
    }

    /// How the store is encrypted: `Some("passphrase")` or `Some("key")`, or `None` for
    /// a store created without encryption.
    pub fn encryption(&self) -> Option<&'static str> {
        self.encryption
    }

    /// The acknowledged writes this store found lost when it was opened, if any: the
    /// documents are back at an older version (or gone) until peers send the changes.
    pub fn rollback(&self) -> Option<&RollbackReport> {
        self.rollback.as_ref()
    }

    /// The last rollback the store found, on this open or an earlier one.
    pub fn last_rollback(&self) -> Result<Option<RecordedRollback>, StoreError> {
        Ok(self
            .meta
            .get(ROLLBACK_KEY)?
            .and_then(|bytes| decode_rollback(&bytes)))
    }

    /// What an acknowledged write survives in this store.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many batches were acknowledged and how many flushes they took.
    pub fn commit_stats(&self) -> CommitStats {
        self.commit.stats()
    }

    /// Every value quarantined so far, in key order.
    pub fn quarantined(&self) -> Result<Vec<QuarantinedChunk>, StoreError> {
        self.quarantine
            .iter()
            .map(|entry| {
                let (k, v) = entry?;
                Ok(decode_record(&k, &v))
            })
            .collect()
    }

    /// Reads and verifies every stored value, quarantining the ones that fail; returns
    /// how many were quarantined. Useful after an unclean stop.
    pub fn verify_all(&self) -> Result<usize, StoreError> {
        let before = self.quarantine.len();
        self.range_verified(&[])?;
        Ok(self.quarantine.len().saturating_sub(before))
    }

    /// Measures disk usage; see `docs/storage.md` for how each figure is computed.
    pub fn usage(&self) -> Result<StorageUsage, StoreError> {
        let mut usage = StorageUsage::default();
        for entry in self.data.iter() {
            let (k, v) = entry?;
            if k == COMMIT_SEQ_KEY {
                continue;
            }
            usage.add(decode_key(&k).ok().as_ref(), (k.len() + v.len()) as u64);
        }
        for entry in self.quarantine.iter() {
            let (k, v) = entry?;
            let bytes = (k.len() + v.len()) as u64;
            usage.live_bytes += bytes;
            usage.quarantined_bytes += bytes;
        }
        usage.finish(directory_bytes(&self.path)?);
        Ok(usage)
    }

    /// The raw sled tree holding framed values, for corruption tests.
    #[doc(hidden)]
    pub fn raw_data_tree(&self) -> &sled::Tree {
        &self.data
    }

    /// Flushes sled's buffers (as `write` does), for tests that edit the raw tree.
    #[doc(hidden)]
    pub fn raw_flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn get_verified(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StoreError> {
        validate_key(key).map_err(StoreError::InvalidKey)?;
        let encoded = encode_key(key);
        match self.data.get(&encoded)? {
            Some(stored) => self.verify(&encoded, key, stored),
            None => Ok(None),
        }
    }

    /// Checks a stored value; on failure quarantines it and re-reads (a writer may have
    /// replaced it meanwhile).
    pub(crate) fn verify(
        &self,
        encoded: &[u8],
        key: &StorageKey,
        mut stored: sled::IVec,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        for _ in 0..READ_ATTEMPTS {
            match self.unframe_value(encoded, &stored) {
                Ok(payload) => return Ok(Some(payload)),
                Err(reason) => {
                    self.quarantine_value(encoded, &key.to_string(), &stored, reason)?;
                    match self.data.get(encoded)? {
                        Some(next) => stored = next,
                        None => return Ok(None),
                    }
                }
            }
        }
        Ok(None)
    }

    /// Frames (or seals, in an encrypted store) a value for storage under `encoded`.
    fn frame_value(&self, encoded: &[u8], payload: &[u8]) -> Vec<u8> {
        match &self.cipher {
            Some(cipher) => cipher.seal(encoded, payload),
            None => frame(encoded, payload),
        }
    }

    /// Checks (or opens, in an encrypted store) a stored value.
    fn unframe_value(&self, encoded: &[u8], stored: &[u8]) -> Result<Vec<u8>, CorruptionKind> {
        match &self.cipher {
            Some(cipher) => cipher.unseal(encoded, stored),
            None => unframe(encoded, stored).map(<[u8]>::to_vec),
        }
    }

    fn range_verified(&self, prefix: &[String]) -> Result<Vec<(StorageKey, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.data.scan_prefix(encode_prefix(prefix)) {
            let (raw_key, stored) = entry?;
            if raw_key == COMMIT_SEQ_KEY {
                continue;
            }
            let Ok(key) = decode_key(&raw_key) else {
                let shown = String::from_utf8_lossy(&raw_key).into_owned();
                self.quarantine_value(&raw_key, &shown, &stored, CorruptionKind::UndecodableKey)?;
                continue;
            };
            if let Some(value) = self.verify(&raw_key, &key, stored)? {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// Moves `stored` from the data tree to the quarantine tree in one transaction, if
    /// it is still the value under `encoded`.
    pub(crate) fn quarantine_value(
        &self,
        encoded: &[u8],
        shown_key: &str,
        stored: &[u8],
        reason: CorruptionKind,
    ) -> Result<(), StoreError> {
        let seq = self.next_quarantine_seq.fetch_add(1, Ordering::Relaxed);
        let record_key = record_key(encoded, seq);
        let record = encode_record(reason, stored);
        let moved = (&self.data, &self.quarantine)
            .transaction(
                |(data, quarantine)| -> ConflictableTransactionResult<bool, Infallible> {
                    if data.get(encoded)?.as_deref() != Some(stored) {
                        return Ok(false);
                    }
                    data.remove(encoded)?;
                    quarantine.insert(record_key.as_slice(), record.as_slice())?;
                    Ok(true)
                },
            )
            .map_err(|e| match e {
                TransactionError::Storage(source) => StoreError::Sled(source),
                TransactionError::Abort(never) => match never {},
            })?;
        if !moved {
            tracing::debug!(
                path = %self.path.display(),
                key = %shown_key,
                "a value that failed verification was replaced before it could be quarantined"
            );
            return Ok(());
        }
        tracing::warn!(
            path = %self.path.display(),
            key = %shown_key,
            reason = %reason,
            stored_len = stored.len(),
            "quarantined a stored value that failed verification"
        );
        // Make the move durable now rather than at the next background flush, so the
        // record is there after a crash (otherwise the value is just found again).
        self.db.flush()?;
        Ok(())
    }

    pub(crate) fn write_durable(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        for op in batch.ops() {
            match op {
                WriteOp::Put { key, .. } | WriteOp::Delete { key } => {
                    validate_key(key).map_err(StoreError::InvalidKey)?
                }
            }
        }
        let mut documents = BTreeSet::new();
        let ops: Vec<EncodedOp> = batch
            .into_ops()
            .into_iter()
            .map(|op| {
                let key = match &op {
                    WriteOp::Put { key, .. } | WriteOp::Delete { key } => key,
                };
                match classify(key) {
                    KeyClass::SyncState { .. } => {}
                    KeyClass::Store => {
                        documents.insert(String::new());
                    }
                    KeyClass::Snapshot { doc }
                    | KeyClass::Incremental { doc }
                    | KeyClass::DocumentOther { doc } => {
                        documents.insert(doc.to_owned());
                    }
                }
                match op {
                    WriteOp::Put { key, value } => {
                        let encoded = encode_key(&key);
                        let framed = self.frame_value(&encoded, &value);
                        (encoded, Some(framed))
                    }
                    WriteOp::Delete { key } => (encode_key(&key), None),
                }
            })
            .collect();
        self.commit
            .commit(Staged { ops, documents }, |group| self.commit_group(group))
    }

    /// Applies a group's batches as one sled batch with the commit's sequence number,
    /// flushes, syncs for [`Durability::Power`], then records the commit in the ledger.
    fn commit_group(&self, group: Vec<Staged>) -> Result<(), StoreError> {
        let seq = self.next_commit.fetch_add(1, Ordering::Relaxed);
        let mut sled_batch = sled::Batch::default();
        let mut documents = BTreeSet::new();
        let mut large = false;
        for staged in group {
            documents.extend(staged.documents);
            for (key, value) in staged.ops {
                match value {
                    Some(value) => {
                        large |= value.len() >= BLOB_CANDIDATE_BYTES;
                        sled_batch.insert(key, value)
                    }
                    None => sled_batch.remove(key),
                }
            }
        }
        sled_batch.insert(COMMIT_SEQ_KEY, &seq.to_le_bytes());
        self.data.apply_batch(sled_batch)?;
        self.db.flush()?;
        let ledger_error = |source| StoreError::Ledger {
            path: self.path.clone(),
            source,
        };
        if let Some(log) = &self.log_file {
            log.sync_data().map_err(ledger_error)?;
            if large {
                self.sync_blobs().map_err(ledger_error)?;
            }
        }
        if documents.is_empty() {
            return Ok(());
        }
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(seq, &documents)
            .map_err(ledger_error)
    }

    /// `fsync`s the blob files not synced yet and the blob directory: sled writes
    /// large values to files of their own without syncing them.
    fn sync_blobs(&self) -> std::io::Result<()> {
        let dir = self.path.join("blobs");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut present = BTreeSet::new();
        for entry in entries {
            let name = entry?.file_name();
            if !synced.contains(&name) {
                File::open(dir.join(&name))?.sync_data()?;
            }
            present.insert(name);
        }
        File::open(&dir)?.sync_all()?;
        *synced = present;
        Ok(())
    }
}

type OpenedTrees = (sled::Db, sled::Tree, sled::Tree, sled::Tree);

/// Opens sled and the store's trees; a sled panic becomes [`StoreError::DamagedStore`].
fn open_sled(path: &Path, config: &SledConfig) -> Result<OpenedTrees, StoreError> {
    let sled_config = sled::Config::new()
        .path(path)
        .cache_capacity(config.cache_capacity_bytes)
        .flush_every_ms(config.flush_every_ms)
        .mode(match config.mode {
            SpaceMode::LowSpace => sled::Mode::LowSpace,
            SpaceMode::HighThroughput => sled::Mode::HighThroughput,
        });
    let opened = catch_unwind(AssertUnwindSafe(|| {
        let db = sled_config.open()?;
        let data = db.open_tree(DATA_TREE)?;
        let quarantine = db.open_tree(QUARANTINE_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        Ok::<_, sled::Error>((db, data, quarantine, meta))
    }));
    match opened {
        Ok(Ok(trees)) => Ok(trees),
        Ok(Err(source)) => Err(open_error(path.to_path_buf(), source)),
        Err(payload) => Err(StoreError::DamagedStore {
            path: path.to_path_buf(),
            panic: panic_message(payload.as_ref()),
        }),
    }
}

/// [`open_sled`], retrying with backoff for up to `config.lock_wait_ms` while the lock is
/// taken (see [`SledConfig::lock_wait_ms`]).
fn open_sled_waiting(path: &Path, config: &SledConfig) -> Result<OpenedTrees, StoreError> {
    let deadline = Instant::now() + Duration::from_millis(config.lock_wait_ms);
    let mut backoff = Duration::from_millis(5);
    loop {
        match open_sled(path, config) {
            Err(StoreError::HeldByAnotherProcess { .. }) if Instant::now() < deadline => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Whether `path` is missing or an empty directory (a store still to be created).
fn is_fresh(path: &Path) -> bool {
    match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Sets up an opened store's encryption: checks `secret` against the store's record (or
/// takes the cipher `created` with the store) and says which kind of secret it uses.
fn open_encryption(
    path: &Path,
    meta: &sled::Tree,
    secret: Option<&StoreSecret>,
    created: Option<Cipher>,
) -> Result<(Option<Cipher>, Option<&'static str>), StoreError> {
    let path_buf = || path.to_path_buf();
    let record = match (meta.get(ENCRYPTION_KEY)?, secret) {
        (None, None) => return Ok((None, None)),
        (None, Some(_)) => return Err(StoreError::NotEncrypted { path: path_buf() }),
        (Some(_), None) => return Err(StoreError::SecretNeeded { path: path_buf() }),
        (Some(bytes), Some(_)) => EncryptionRecord::decode(&bytes),
    };
    let crypt_error = |error| match error {
        CryptError::WrongSecret(detail) => StoreError::WrongSecret {
            path: path_buf(),
            detail,
        },
        CryptError::BadRecord(detail) => StoreError::BadEncryptionRecord {
            path: path_buf(),
            detail,
        },
    };
    let record = record.map_err(crypt_error)?;
    let cipher = match (created, secret) {
        (Some(cipher), _) => cipher,
        (None, Some(secret)) => Cipher::open(secret, &record).map_err(crypt_error)?,
        (None, None) => unreachable!("a store without a secret returned above"),
    };
    Ok((Some(cipher), Some(record.secret_kind())))
}

/// Creates a store with its marker (and, with a secret, its encryption record) in a
/// staging directory beside `path`, then renames it into place, so no directory at
/// `path` ever lacks the marker unless damaged. Returns the new store's cipher when this
/// call created an encrypted store.
fn create_marked(path: &Path, config: &SledConfig) -> Result<Option<Cipher>, StoreError> {
    let creating = |source| StoreError::Create {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".to_string());
    let staging = path.with_file_name(format!(".{name}.creating-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(creating)?;
    }
    let cipher = match &config.secret {
        Some(secret) => Some(Cipher::create(secret).map_err(|e| match e {
            CryptError::WrongSecret(detail) | CryptError::BadRecord(detail) => {
                StoreError::WrongSecret {
                    path: path.to_path_buf(),
                    detail,
                }
            }
        })?),
        None => None,
    };
    {
        let (db, _, _, meta) = open_sled(&staging, config)?;
        let mut batch = sled::Batch::default();
        batch.insert(MARKER_KEY, MARKER_VALUE);
        if let Some((_, record)) = &cipher {
            batch.insert(ENCRYPTION_KEY, record.encode());
        }
        meta.apply_batch(batch)?;
        db.flush()?;
    }
    // rename(2) replaces an empty directory; when another process created the store
    // first, `path` is no longer empty and the rename fails: use theirs.
    match std::fs::rename(&staging, path) {
        Ok(()) => Ok(cipher.map(|(cipher, _)| cipher)),
        Err(_) if !is_fresh(path) => {
            std::fs::remove_dir_all(&staging).map_err(creating)?;
            Ok(None)
        }
        Err(e) => Err(creating(e)),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `detected_ms recovered acknowledged store_wide` on the first line, then one document
/// per line.
fn encode_rollback(recorded: &RecordedRollback) -> Vec<u8> {
    let r = &recorded.report;
    let mut text = format!(
        "{} {} {} {}",
        recorded.detected_ms, r.recovered_commit, r.acknowledged_commit, r.store_wide
    );
    for doc in &r.documents {
        text.push('\n');
        text.push_str(doc);
    }
    text.into_bytes()
}

fn decode_rollback(bytes: &[u8]) -> Option<RecordedRollback> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split('\n');
    let mut head = lines.next()?.split(' ');
    let mut number = || head.next()?.parse::<u64>().ok();
    let (detected_ms, recovered_commit, acknowledged_commit) = (number()?, number()?, number()?);
    let store_wide = head.next()? == "true";
    Some(RecordedRollback {
        report: RollbackReport {
            recovered_commit,
            acknowledged_commit,
            documents: lines.map(str::to_owned).collect(),
            store_wide,
        },
        detected_ms,
    })
}

fn open_error(path: PathBuf, source: sled::Error) -> StoreError {
    // sled 0.34 reports a failed `flock` on `<dir>/db` as an `Io(Other)` error whose
    // message starts with this phrase (config.rs, `try_lock`); it has no dedicated kind.
    match &source {
        // sled's message embeds the OS error's debug text (`Os { code: 11, … }`):
        // say it in words instead.
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            let detail = format!("the lock on {} is taken", path.join("db").display());
            StoreError::HeldByAnotherProcess { path, detail }
        }
        _ => StoreError::Open { path, source },
    }
}

impl Storage for SledStorage {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.get_verified(key)?)
    }

    fn range(&self, prefix: &[String]) -> Result<Vec<(StorageKey, Vec<u8>)>, StorageError> {
        Ok(self.range_verified(prefix)?)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        Ok(self.write_durable(batch)?)
    }
}
