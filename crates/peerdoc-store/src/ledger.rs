//! The commit ledger: how a store notices that it went back in time.
//!
//! sled recovers its log up to the first message that fails its checksum and silently
//! drops everything after it, so one flipped byte can roll every later write back (or
//! lose a document outright) with nothing but sled's own WARN. The values' own CRCs
//! ([`crate::frame`]) cannot see a value that is simply gone.
//!
//! So every group commit carries a sequence number into sled, in the same atomic batch
//! as its writes (under a reserved key no [`StorageKey`](peerdoc_core::StorageKey)
//! encodes to), and once sled has flushed it, the commit is appended to this ledger, a
//! small file of its own beside sled's: the sequence number and the documents the
//! commit touched. On open, any document whose last ledger entry is newer than the
//! sequence number sled recovered lost acknowledged writes: [`RollbackReport`].
//!
//! The ledger can only be behind sled, never ahead of it, unless sled lost data: it is
//! written after sled's flush, and a ledger write that fails or is cut off is dropped
//! (the file is rewritten whole at the next commit). A ledger that is missing or
//! damaged detects less, never more. Sync states are left out: they are rewritten all
//! the time and losing one costs a slower sync, not data.
//!
//! File format (`peerdoc.ledger` in the store directory): the 8-byte magic, then
//! records of `u32 LE length | u32 LE CRC-32 of the payload | payload`, where the
//! payload is `u32 LE count` and `count` entries of `u64 LE sequence | u16 LE length |
//! document id` (the empty id stands for store-wide records). A commit appends one
//! record; a rewrite holds one record with the latest entry of every document. The file
//! is rewritten when it has grown to twice its last rewritten size (at least 1 MiB).

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"PDLEDGR1";
/// The file name inside the store directory.
pub(crate) const FILE_NAME: &str = "peerdoc.ledger";
const MIN_REWRITE_BYTES: u64 = 1024 * 1024;
/// The largest record a reader accepts (a rewrite of a million documents is ~40 MB).
const MAX_RECORD_BYTES: u32 = 256 * 1024 * 1024;

/// Documents whose acknowledged writes the store no longer has, found on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackReport {
    /// The last commit sled recovered.
    pub recovered_commit: u64,
    /// The last commit the ledger saw acknowledged.
    pub acknowledged_commit: u64,
    /// The documents (first key component, e.g. a document id) written by a commit
    /// sled no longer has, in order. They are back at an older version, or gone.
    pub documents: Vec<String>,
    /// Whether store-wide records (storage id, peer records) were among the losses.
    pub store_wide: bool,
}

impl std::fmt::Display for RollbackReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.documents.len();
        write!(
            f,
            "the store went back: acknowledged changes to {n} document{} are gone \
             (commits {} to {} of its log were lost)",
            if n == 1 { "" } else { "s" },
            self.recovered_commit + 1,
            self.acknowledged_commit,
        )?;
        if self.store_wide {
            f.write_str(", and store-wide records too")?;
        }
        Ok(())
    }
}

/// What the ledger file held when it was read.
#[derive(Debug, Default)]
pub(crate) struct Contents {
    /// The latest commit of each document.
    pub(crate) latest: HashMap<String, u64>,
    /// Bytes of whole records (the file may continue with a cut-off one).
    pub(crate) valid_len: u64,
    /// Whether something after `valid_len` was not a whole record.
    pub(crate) torn: bool,
}

impl Contents {
    pub(crate) fn last_commit(&self) -> u64 {
        self.latest.values().copied().max().unwrap_or(0)
    }

    /// Compares with the last commit sled recovered.
    pub(crate) fn rollback_since(&self, recovered: u64) -> Option<RollbackReport> {
        let mut lost: Vec<&String> = self
            .latest
            .iter()
            .filter(|(_, seq)| **seq > recovered)
            .map(|(doc, _)| doc)
            .collect();
        if lost.is_empty() {
            return None;
        }
        lost.sort();
        let store_wide = lost.first().is_some_and(|d| d.is_empty());
        Some(RollbackReport {
            recovered_commit: recovered,
            acknowledged_commit: self.last_commit(),
            documents: lost
                .into_iter()
                .filter(|d| !d.is_empty())
                .cloned()
                .collect(),
            store_wide,
        })
    }
}

/// The open ledger, appended to after each commit.
#[derive(Debug)]
pub(crate) struct Ledger {
    path: PathBuf,
    file: File,
    len: u64,
    rewrite_at: u64,
    /// A write failed or was cut off: the next append rewrites the file instead.
    damaged: bool,
    sync: bool,
}

impl Ledger {
    /// Reads the ledger of the store in `dir` (empty when there is none yet).
    pub(crate) fn read(dir: &Path) -> io::Result<Contents> {
        let mut bytes = Vec::new();
        match File::open(dir.join(FILE_NAME)) {
            Ok(mut file) => {
                file.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
            Err(e) => return Err(e),
        }
        Ok(parse(&bytes))
    }

    /// Rewrites the ledger of the store in `dir` to hold `latest` and opens it for
    /// appending. `sync` makes every append durable against a power cut.
    pub(crate) fn create(
        dir: &Path,
        latest: &HashMap<String, u64>,
        sync: bool,
    ) -> io::Result<Self> {
        let path = dir.join(FILE_NAME);
        let len = rewrite(&path, latest)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(Self {
            path,
            file,
            len,
            rewrite_at: (2 * len).max(MIN_REWRITE_BYTES),
            damaged: false,
            sync,
        })
    }

    /// Records that commit `seq`, durable in sled, wrote `documents`.
    pub(crate) fn append(&mut self, seq: u64, documents: &BTreeSet<String>) -> io::Result<()> {
        if self.damaged || self.len >= self.rewrite_at {
            return self.rewrite_with(seq, documents);
        }
        let record = record(documents.iter().map(|d| (d.as_str(), seq)));
        let written = self.file.write_all(&record).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Part of the record may be in the file: readers stop there, so later
                // records must not follow it. The next commit rewrites the file.
                self.damaged = true;
                Err(e)
            }
        }
    }

    fn rewrite_with(&mut self, seq: u64, documents: &BTreeSet<String>) -> io::Result<()> {
        let mut latest = Ledger::read(self.path.parent().unwrap_or(Path::new(".")))?.latest;
        for doc in documents {
            latest.insert(doc.clone(), seq);
        }
        let reopened = Ledger::create(
            self.path.parent().unwrap_or(Path::new(".")),
            &latest,
            self.sync,
        );
        match reopened {
            Ok(ledger) => {
                *self = ledger;
                Ok(())
            }
            Err(e) => {
                self.damaged = true;
                Err(e)
            }
        }
    }
}

/// Writes `latest` as one record to a new file, made durable, renamed over `path`.
fn rewrite(path: &Path, latest: &HashMap<String, u64>) -> io::Result<u64> {
    let tmp = path.with_extension(format!("rewrite-{}", std::process::id()));
    let mut bytes = MAGIC.to_vec();
    let mut entries: Vec<(&str, u64)> = latest.iter().map(|(d, s)| (d.as_str(), *s)).collect();
    entries.sort_unstable();
    bytes.extend(record(entries.into_iter()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(bytes.len() as u64)
}

fn record<'a>(entries: impl Iterator<Item = (&'a str, u64)>) -> Vec<u8> {
    let mut payload = vec![0; 4];
    let mut count: u32 = 0;
    for (doc, seq) in entries {
        // Document ids are short; a key component too long for the u16 length is cut,
        // which can only merge two such ids into one report line.
        let id = &doc.as_bytes()[..doc.len().min(u16::MAX as usize)];
        payload.extend_from_slice(&seq.to_le_bytes());
        payload.extend_from_slice(&(id.len() as u16).to_le_bytes());
        payload.extend_from_slice(id);
        count += 1;
    }
    payload[..4].copy_from_slice(&count.to_le_bytes());
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn parse(bytes: &[u8]) -> Contents {
    let mut contents = Contents::default();
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        contents.torn = !bytes.is_empty();
        return contents;
    }
    let mut at = MAGIC.len();
    contents.valid_len = at as u64;
    while at < bytes.len() {
        let Some(entries) = parse_record(&bytes[at..]) else {
            contents.torn = true;
            break;
        };
        let (entries, used) = entries;
        for (doc, seq) in entries {
            let latest = contents.latest.entry(doc).or_insert(0);
            *latest = (*latest).max(seq);
        }
        at += used;
        contents.valid_len = at as u64;
    }
    contents
}

/// One record's entries and its length in bytes, or `None` if it is not whole.
fn parse_record(bytes: &[u8]) -> Option<(Vec<(String, u64)>, usize)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let payload = bytes.get(8..8 + len as usize)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let count = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
    let mut at = 4;
    let mut entries = Vec::new();
    for _ in 0..count {
        let seq = u64::from_le_bytes(payload.get(at..at + 8)?.try_into().ok()?);
        let id_len = u16::from_le_bytes(payload.get(at + 8..at + 10)?.try_into().ok()?) as usize;
        let id = payload.get(at + 10..at + 10 + id_len)?;
        entries.push((String::from_utf8_lossy(id).into_owned(), seq));
        at += 10 + id_len;
    }
    Some((entries, 8 + len as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn appended_commits_read_back_as_each_documents_latest() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::create(dir.path(), &HashMap::new(), false).unwrap();
        ledger.append(1, &docs(&["a", "b"])).unwrap();
        ledger.append(2, &docs(&["b", ""])).unwrap();
        let read = Ledger::read(dir.path()).unwrap();
        assert!(!read.torn);
        assert_eq!(read.latest["a"], 1);
        assert_eq!(read.latest["b"], 2);
        assert_eq!(read.last_commit(), 2);
        assert_eq!(read.rollback_since(2), None);
        let report = read.rollback_since(1).unwrap();
        assert_eq!(report.documents, vec!["b".to_string()]);
        assert!(report.store_wide);
        assert_eq!(
            (report.recovered_commit, report.acknowledged_commit),
            (1, 2)
        );
    }

    #[test]
    fn a_cut_off_or_damaged_tail_is_left_out_and_the_next_append_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::create(dir.path(), &HashMap::new(), false).unwrap();
        ledger.append(1, &docs(&["a"])).unwrap();
        ledger.append(2, &docs(&["b"])).unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let read = Ledger::read(dir.path()).unwrap();
        assert!(read.torn);
        assert_eq!(
            read.latest.get("b"),
            None,
            "a damaged record is not believed"
        );
        assert_eq!(read.latest["a"], 1);

        // After a failed append the next one rewrites the file from what is readable.
        ledger.damaged = true;
        ledger.append(3, &docs(&["c"])).unwrap();
        let read = Ledger::read(dir.path()).unwrap();
        assert!(!read.torn);
        assert_eq!(read.latest.len(), 2);
        assert_eq!(read.latest["c"], 3);
    }

    #[test]
    fn the_file_is_rewritten_when_it_has_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::create(dir.path(), &HashMap::new(), false).unwrap();
        let many: BTreeSet<String> = (0..2_000).map(|i| format!("doc-{i:05}")).collect();
        for seq in 1..=40 {
            ledger.append(seq, &many).unwrap();
        }
        let size = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(
            size < 2 * MIN_REWRITE_BYTES,
            "{size} bytes after 40 commits"
        );
        let read = Ledger::read(dir.path()).unwrap();
        assert_eq!(read.latest.len(), 2_000);
        assert!(read.latest.values().all(|s| *s == 40));
    }

    #[test]
    fn garbage_is_no_ledger() {
        let read = parse(b"not a ledger at all");
        assert!(read.torn);
        assert!(read.latest.is_empty());
        let read = parse(b"");
        assert!(!read.torn);
    }
}
