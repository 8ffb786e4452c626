//! Copying a store's values into another store: how `peerdoc store encrypt` moves a
//! plain store into an encrypted one.

use peerdoc_core::WriteBatch;

use crate::error::StoreError;
use crate::key::decode_key;
use crate::sled_storage::{COMMIT_SEQ_KEY, SledStorage};

/// Values per batch written to the destination.
const BATCH_ENTRIES: usize = 1000;
/// Bytes per batch written to the destination (a large document is one batch).
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What [`SledStorage::copy_into`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Values copied.
    pub entries: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Values left behind because they failed verification (now in the source's
    /// quarantine) or their key does not decode.
    pub skipped: u64,
}

impl SledStorage {
    /// Copies every value that verifies into `dest`, in key order, in batches, and
    /// checks that `dest` then holds the same number of values and bytes. Quarantined
    /// values, the commit ledger and rollback records stay behind.
    pub fn copy_into(&self, dest: &SledStorage) -> Result<CopyReport, StoreError> {
        let mut report = CopyReport::default();
        let mut batch = WriteBatch::new();
        let (mut in_batch, mut batch_bytes) = (0, 0);
        for entry in self.data.iter() {
            let (raw_key, stored) = entry?;
            if raw_key == COMMIT_SEQ_KEY {
                continue;
            }
            let Ok(key) = decode_key(&raw_key) else {
                report.skipped += 1;
                continue;
            };
            let Some(value) = self.verify(&raw_key, &key, stored)? else {
                report.skipped += 1;
                continue;
            };
            report.entries += 1;
            report.bytes += value.len() as u64;
            in_batch += 1;
            batch_bytes += value.len();
            batch.put(key, value);
            if in_batch >= BATCH_ENTRIES || batch_bytes >= BATCH_BYTES {
                dest.write_durable(std::mem::take(&mut batch))?;
                (in_batch, batch_bytes) = (0, 0);
            }
        }
        dest.write_durable(batch)?;
        let held = dest.count_values()?;
        if held != (report.entries, report.bytes) {
            return Err(StoreError::CopyMismatch {
                copied: (report.entries, report.bytes),
                held,
            });
        }
        Ok(report)
    }

    /// How many values (and payload bytes) read back verified.
    fn count_values(&self) -> Result<(u64, u64), StoreError> {
        let (mut entries, mut bytes) = (0, 0);
        for entry in self.data.iter() {
            let (raw_key, stored) = entry?;
            if raw_key == COMMIT_SEQ_KEY {
                continue;
            }
            if let Ok(key) = decode_key(&raw_key)
                && let Some(value) = self.verify(&raw_key, &key, stored)?
            {
                entries += 1;
                bytes += value.len() as u64;
            }
        }
        Ok((entries, bytes))
    }
}
