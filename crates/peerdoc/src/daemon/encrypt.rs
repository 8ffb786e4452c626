//! `peerdoc store encrypt`: turns encryption at rest on for an existing store, with the
//! daemon stopped.
//!
//! The values are copied, verified, into a new encrypted store beside the old one
//! (`.store.encrypting`); then the old store is renamed aside (`.store.plain`), the new
//! one into place, and the old one deleted. A start (of the daemon or of this command)
//! after an interruption finishes or undoes the swap ([`recover_interrupted`]), so the
//! directory never ends up without its store.

use std::path::Path;

use peerdoc_store::{Durability, SledConfig, SledStorage, StoreError};

use super::DaemonError;
use super::datadir::DataDirLock;
use crate::cli::args::{GlobalArgs, RunArgs};
use crate::config::{DaemonConfig, SecretSources};

const STORE: &str = "store";
const STAGING: &str = ".store.encrypting";
const ASIDE: &str = ".store.plain";

/// Encrypts the store of the data directory `run` resolves to, with the secret its
/// `[storage]` settings name; returns what was done, in words.
pub fn encrypt_store(global: &GlobalArgs, run: &RunArgs) -> Result<String, DaemonError> {
    let resolved = DaemonConfig::load(global, run)?;
    let Some(secret) = resolved.store_secret(&SecretSources::process())? else {
        return Err(DaemonError::Encrypt(
            "storage.encryption is \"off\": set it to \"passphrase\" or \"key_file\" (with \
             its secret) where the daemon reads its configuration, then run this again"
                .into(),
        ));
    };
    let data_dir = &resolved.data_dir;
    let _lock = DataDirLock::take(data_dir)?;
    recover_interrupted(data_dir)?;
    let store_path = data_dir.join(STORE);
    if !store_path.exists() {
        return Err(DaemonError::Encrypt(format!(
            "no store in {}: nothing to encrypt (the daemon creates an encrypted store when \
             it starts with storage.encryption set)",
            data_dir.display()
        )));
    }
    let kind = secret.kind();
    let plain = SledStorage::open(&store_path, SledConfig::default()).map_err(|e| match e {
        StoreError::SecretNeeded { .. } => DaemonError::Encrypt(format!(
            "the store in {} is already encrypted",
            data_dir.display()
        )),
        other => DaemonError::Encrypt(other.to_string()),
    })?;
    let staging = data_dir.join(STAGING);
    remove_dir_if_present(&staging)?;
    let sealed_config = SledConfig::default()
        .secret(Some(secret))
        .durability(Durability::Power);
    let report = SledStorage::open(&staging, sealed_config)
        .and_then(|sealed| plain.copy_into(&sealed))
        .map_err(|e| DaemonError::Encrypt(format!("copying into the encrypted store: {e}")))?;
    drop(plain);
    let aside = data_dir.join(ASIDE);
    rename(&store_path, &aside)?;
    rename(&staging, &store_path)?;
    sync_dir(data_dir)?;
    remove_dir_if_present(&aside)?;
    let skipped = match report.skipped {
        0 => String::new(),
        n => format!(
            "; {n} damaged values were left behind (the quarantine lists them before the swap; \
             peers send their documents again)"
        ),
    };
    Ok(format!(
        "encrypted the store in {} with a {kind}: {} values, {} bytes{skipped}. The \
         unencrypted store was deleted; on flash storage its blocks can linger until they are \
         reused (docs/security.md, \"Encryption at rest\").",
        data_dir.display(),
        report.entries,
        report.bytes
    ))
}

/// Finishes or undoes a swap that `peerdoc store encrypt` did not complete: a store set
/// aside with none in place goes back; a finished swap's leftovers are removed.
pub(super) fn recover_interrupted(data_dir: &Path) -> Result<(), DaemonError> {
    let store = data_dir.join(STORE);
    let aside = data_dir.join(ASIDE);
    if aside.exists() {
        if store.exists() {
            remove_dir_if_present(&aside)?;
        } else {
            tracing::warn!(
                dir = %data_dir.display(),
                "an interrupted `peerdoc store encrypt` left the store aside; putting it back"
            );
            rename(&aside, &store)?;
        }
    }
    remove_dir_if_present(&data_dir.join(STAGING))
}

fn rename(from: &Path, to: &Path) -> Result<(), DaemonError> {
    std::fs::rename(from, to).map_err(|source| DaemonError::File {
        path: from.to_owned(),
        source,
    })
}

fn remove_dir_if_present(path: &Path) -> Result<(), DaemonError> {
    match std::fs::remove_dir_all(path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(DaemonError::File {
            path: path.to_owned(),
            source,
        }),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), DaemonError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| DaemonError::File {
            path: dir.to_owned(),
            source,
        })
}
