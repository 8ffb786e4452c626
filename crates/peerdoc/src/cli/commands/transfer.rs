//! `doc import` and `doc export`: automerge bytes in and out, streamed, with a progress
//! bar on a terminal for large documents.

use std::fs::{self, File};
use std::io::{self, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::super::args::GlobalArgs;
use super::super::error::CliError;
use super::super::input;
use super::super::output::write_json;
use super::connect;

/// Transfers at least this large get a progress bar (smaller ones finish before it
/// would be worth reading).
const LARGE_BYTES: u64 = 1024 * 1024;

pub(super) fn import(
    global: &GlobalArgs,
    file: &Path,
    title: Option<&str>,
    priority: Option<i32>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let (source, len): (Box<dyn Read + Send>, Option<u64>) = if file == Path::new("-") {
        (Box::new(io::stdin()), None)
    } else {
        let unreadable = |source| CliError::ReadInput {
            what: file.display().to_string(),
            source,
        };
        let opened = File::open(file).map_err(unreadable)?;
        let metadata = opened.metadata().map_err(unreadable)?;
        if metadata.is_dir() {
            return Err(unreadable(io::Error::new(
                io::ErrorKind::IsADirectory,
                "it is a directory",
            )));
        }
        (Box::new(opened), Some(metadata.len()))
    };
    let client = connect(global)?;
    let bar = progress_bar(len, "importing");
    let created = client.import_doc(bar.wrap_read(source), len, title, priority);
    bar.finish_and_clear();
    let created = created?;
    if global.json {
        write_json(out, &created)?;
    } else {
        writeln!(out, "{}", created.id)?;
    }
    Ok(())
}

pub(super) fn export(
    global: &GlobalArgs,
    id: &str,
    output: Option<&Path>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let id = input::document_id(id)?;
    if output.is_none() && io::stdout().is_terminal() {
        return Err(CliError::BinaryToTerminal);
    }
    let export = connect(global)?.export_doc(&id)?;
    let bar = progress_bar(export.len, "exporting");
    let mut body = bar.wrap_read(export.body);
    let written = match output {
        Some(path) => write_file(path, &mut body),
        None => copy_body(&mut body, out, "stdout"),
    };
    bar.finish_and_clear();
    let written = written?;
    if let Some(path) = output {
        if global.json {
            let report = json!({"id": id.to_string(), "output": path, "bytes": written});
            write_json(out, &report)?;
        } else {
            writeln!(out, "exported {id} to {} ({written} bytes)", path.display())?;
        }
    }
    Ok(())
}

/// Writes the whole body to a temporary file next to `path`, then renames it over
/// `path`: an export that fails half-way leaves any earlier file at `path` untouched.
fn write_file(path: &Path, body: &mut impl Read) -> Result<u64, CliError> {
    let partial = partial_path(path);
    let unwritable = |source| CliError::WriteOutput {
        what: path.display().to_string(),
        source,
    };
    let result = (|| {
        let mut file = File::create(&partial).map_err(unwritable)?;
        let written = copy_body(body, &mut file, &path.display().to_string())?;
        file.sync_all().map_err(unwritable)?;
        fs::rename(&partial, path).map_err(unwritable)?;
        Ok(written)
    })();
    if result.is_err() {
        // Best effort: the partial file may not even exist.
        let _ = fs::remove_file(&partial);
    }
    result
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".peerdoc-partial");
    path.with_file_name(name)
}

/// Copies the daemon's bytes to `to`, telling a failed download from a failed write.
fn copy_body(body: &mut impl Read, to: &mut impl Write, what: &str) -> Result<u64, CliError> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let read = match body.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(CliError::Download(source)),
        };
        let chunk = buffer.get(..read).unwrap_or_default();
        to.write_all(chunk).map_err(|source| {
            if what == "stdout" {
                CliError::Stdout(source)
            } else {
                CliError::WriteOutput {
                    what: what.to_owned(),
                    source,
                }
            }
        })?;
        total += read as u64;
    }
}

/// A bar on stderr for a transfer of `len` bytes, hidden unless stderr is a terminal and
/// the transfer is large (or of unknown size).
fn progress_bar(len: Option<u64>, verb: &str) -> ProgressBar {
    let large = len.is_none_or(|len| len >= LARGE_BYTES);
    if !large || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    let template = if len.is_some() {
        "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(verb.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_export_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("doc.automerge");
        fs::write(&path, b"old").unwrap_or_else(|e| panic!("{e}"));

        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        assert!(write_file(&path, &mut Failing).is_err());
        assert_eq!(fs::read(&path).ok().as_deref(), Some(&b"old"[..]));
        assert!(!partial_path(&path).exists());

        assert_eq!(write_file(&path, &mut &b"new bytes"[..]).ok(), Some(9));
        assert_eq!(fs::read(&path).ok().as_deref(), Some(&b"new bytes"[..]));
    }
}
