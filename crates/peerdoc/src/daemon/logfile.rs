//! `log_file`: the daemon's log in a file as well as on stderr, rotated by size.
//!
//! When a write would take the file past [`MAX_BYTES`], `<file>.4` becomes `<file>.5`,
//! …, `<file>` becomes `<file>.1`, and a new `<file>` starts: at most
//! `(KEEP + 1) × MAX_BYTES` of disk. A failing write (full disk) loses log lines, never
//! blocks the daemon: the error is reported once on stderr.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Size at which the file rotates.
pub(super) const MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Old files kept (`<file>.1` … `<file>.KEEP`).
pub(super) const KEEP: u32 = 5;

/// A size-rotated log file, shared by every writer `tracing` makes.
#[derive(Debug, Clone)]
pub(super) struct RotatingFile {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    max_bytes: u64,
    reported: bool,
}

impl RotatingFile {
    /// Opens (appends to) `path`, creating its directory; an error names the file.
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        Self::with_limit(path, MAX_BYTES)
    }

    fn with_limit(path: &Path, max_bytes: u64) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let written = file.metadata()?.len();
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_owned(),
                file: Some(file),
                written,
                max_bytes,
                reported: false,
            })),
        })
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        // Logs name documents and peers: the owner's business only.
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl Inner {
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        for n in (1..KEEP).rev() {
            let from = numbered(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        self.file = Some(open_append(&self.path)?);
        self.written = 0;
        Ok(())
    }

    fn write_line(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(open_append(&self.path)?),
        };
        file.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = inner.write_line(buf)
            && !inner.reported
        {
            inner.reported = true;
            eprintln!(
                "peerdoc: cannot write the log file {}: {error}; logging to stderr only",
                inner.path.display()
            );
        }
        // The line is on stderr anyway: never fail the logger over the file.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_limit_and_keeps_five_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/peerdoc.log");
        let mut log = RotatingFile::with_limit(&path, 100).unwrap();
        for i in 0..40 {
            writeln!(log, "line {i:02} {}", "x".repeat(40)).unwrap();
        }
        // 49-byte lines, two per file: 20 files' worth, 6 kept.
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.contains("line 39"), "{current}");
        assert!(current.contains("line 38"), "{current}");
        let oldest = std::fs::read_to_string(numbered(&path, KEEP)).unwrap();
        assert!(oldest.contains("line 28"), "{oldest}");
        assert!(!numbered(&path, KEEP + 1).exists());
        for n in 1..=KEEP {
            let len = std::fs::metadata(numbered(&path, n)).unwrap().len();
            assert!(len <= 100, "file .{n} has {len} bytes");
        }
    }

    #[test]
    fn appends_to_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peerdoc.log");
        std::fs::write(&path, "before\n").unwrap();
        let mut log = RotatingFile::open(&path).unwrap();
        writeln!(log, "after").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "before\nafter\n");
    }
}
