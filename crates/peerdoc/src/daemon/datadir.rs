//! The data directory: one daemon at a time, readable by its owner only.
//!
//! The lock is taken before the daemon creates anything in the directory (its token,
//! identity or store), so two daemons started at once on a fresh directory cannot both
//! write a token: the second stops with "data directory in use" and the first serves the
//! token that is in `api.token`. The store keeps its own lock too (sled's), for embedders.
//!
//! Documents are kept in plain text unless encryption at rest is on, so the directory is
//! made 0700 and its files 0600 on every start, whatever the umask was, and the daemon
//! creates files with umask 077 from then on.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use super::DaemonError;

/// The lock file, holding the pid of the daemon that has the directory.
pub(super) const LOCK_FILE: &str = "daemon.lock";

/// The held lock; released when dropped (or when the process dies, however it dies).
#[derive(Debug)]
pub(super) struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the directory or names the daemon that has it.
    pub(super) fn take(data_dir: &Path) -> Result<Self, DaemonError> {
        let path = data_dir.join(LOCK_FILE);
        let file_err = |source| DaemonError::File {
            path: path.clone(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(file_err)?;
        if let Err(error) = fs2::FileExt::try_lock_exclusive(&file) {
            if error.kind() != std::io::ErrorKind::WouldBlock
                && error.raw_os_error() != fs2::lock_contended_error().raw_os_error()
            {
                return Err(file_err(error));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(DaemonError::DataDirInUse {
                path: data_dir.to_owned(),
                pid: holder.trim().parse().ok(),
            });
        }
        file.set_len(0).map_err(file_err)?;
        file.rewind().map_err(file_err)?;
        writeln!(file, "{}", std::process::id()).map_err(file_err)?;
        Ok(Self { _file: file })
    }
}

/// From now on this process creates files for its owner only.
pub(super) fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Makes `data_dir` 0700 and every file under it 0600 (directories 0700), so a store or
/// token written by an older version or under a lax umask is not left readable. Returns
/// the paths that were tightened; a failure to change one is logged and skipped.
pub(super) fn tighten(data_dir: &Path) -> Vec<PathBuf> {
    let mut tightened = Vec::new();
    #[cfg(unix)]
    tighten_tree(data_dir, &mut tightened);
    if !tightened.is_empty() {
        tracing::info!(
            data_dir = %data_dir.display(),
            count = tightened.len(),
            "made the data directory private (0700, files 0600): it held files other users could read"
        );
    }
    tightened
}

#[cfg(unix)]
fn tighten_tree(path: &Path, tightened: &mut Vec<PathBuf>) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let mode = meta.permissions().mode() & 0o777;
    // Only ever take permissions away (group and others'): the owner's stay as they are.
    if mode & 0o077 != 0 {
        let new = mode & 0o700;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(new)) {
            Ok(()) => tightened.push(path.to_owned()),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot make this file private");
            }
        }
    }
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for entry in entries.flatten() {
            tighten_tree(&entry.path(), tightened);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_readable_data_directory_is_made_private_and_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("store/blobs")).unwrap();
        std::fs::write(data.join("api.token"), "t").unwrap();
        std::fs::write(data.join("store/db"), "x").unwrap();
        std::fs::write(data.join("store/blobs/1"), "x").unwrap();
        for path in ["", "store", "store/blobs"] {
            std::fs::set_permissions(data.join(path), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        for path in ["api.token", "store/db", "store/blobs/1"] {
            std::fs::set_permissions(data.join(path), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        let tightened = tighten(&data);
        assert_eq!(tightened.len(), 6, "{tightened:?}");
        for path in ["", "store", "store/blobs"] {
            assert_eq!(mode(&data.join(path)), 0o700, "{path}");
        }
        for path in ["api.token", "store/db", "store/blobs/1"] {
            assert_eq!(mode(&data.join(path)), 0o600, "{path}");
        }
        // A second start has nothing left to do.
        assert!(tighten(&data).is_empty());
    }

    #[test]
    fn the_second_daemon_on_a_directory_is_told_who_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::take(dir.path()).unwrap();
        let error = DataDirLock::take(dir.path()).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, DaemonError::DataDirInUse { pid: Some(pid), .. } if pid == std::process::id()),
            "{text}"
        );
        assert!(text.contains("in use by another peerdoc daemon"), "{text}");
        assert_eq!(mode(&dir.path().join(LOCK_FILE)), 0o600);
        drop(first);
        DataDirLock::take(dir.path()).expect("free again once the first one stops");
    }
}
