//! Where the store's secret comes from (`[storage] encryption`, `docs/security.md`,
//! "Encryption at rest").
//!
//! The secret never lives in the data directory, never in the config file and never in a
//! flag (flags show in `ps`): a key file or passphrase file elsewhere (a USB key, a
//! systemd credential, a directory the user mounts), the `PEERDOC_STORAGE_PASSPHRASE`
//! variable, or a prompt when `peerdoc run` has a terminal. A file that other users can
//! read is refused, as ssh refuses such keys.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use peerdoc_node::StoreSecret;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The variable a passphrase may come from (read once at start; see the module docs).
pub const PASSPHRASE_VAR: &str = "PEERDOC_STORAGE_PASSPHRASE";

/// The values of `storage.encryption`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncryptionMode {
    /// Values are stored as written (checksummed, not encrypted). The default.
    #[default]
    Off,
    /// Sealed with a key derived from a passphrase (argon2id).
    Passphrase,
    /// Sealed with the 256-bit key in `storage.key_file`.
    KeyFile,
}

impl EncryptionMode {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Passphrase => "passphrase",
            Self::KeyFile => "key_file",
        }
    }
}

/// What resolving a secret may consult besides files, so tests can stand in for the
/// environment and the terminal.
pub struct SecretSources<'a> {
    /// Looks up an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Asks the person at the terminal, if there is one (`None`: no terminal).
    pub prompt: &'a dyn Fn(&str) -> Option<std::io::Result<String>>,
}

impl SecretSources<'_> {
    /// The process's environment and its controlling terminal.
    pub fn process() -> SecretSources<'static> {
        SecretSources {
            env: &|var| std::env::var(var).ok(),
            prompt: &prompt_on_terminal,
        }
    }
}

/// The store's secret as the `[storage]` settings describe it, or `None` when encryption
/// is off. `data_dir` is where the daemon keeps its files: a secret inside it is refused.
pub fn resolve(
    storage: &super::StorageConfig,
    data_dir: &Path,
    sources: &SecretSources<'_>,
) -> Result<Option<StoreSecret>, ConfigError> {
    let fail = |message: String| Err(ConfigError::StoreSecret(message));
    match storage.encryption {
        EncryptionMode::Off => {
            if let Some(key) = [
                ("key_file", &storage.key_file),
                ("passphrase_file", &storage.passphrase_file),
            ]
            .into_iter()
            .find_map(|(key, path)| path.as_ref().map(|_| key))
            {
                return fail(format!(
                    "storage.{key} is set but storage.encryption is \"off\": set \
                     storage.encryption, or remove storage.{key}"
                ));
            }
            Ok(None)
        }
        EncryptionMode::KeyFile => {
            let Some(path) = &storage.key_file else {
                return fail(
                    "storage.encryption = \"key_file\" needs storage.key_file; make one with \
                     `peerdoc store new-key <path outside the data directory>`"
                        .into(),
                );
            };
            let text = read_secret_file("storage.key_file", path, data_dir)?;
            StoreSecret::key_from_hex(&text).map(Some).map_err(|e| {
                ConfigError::StoreSecret(format!("storage.key_file {}: {e}", path.display()))
            })
        }
        EncryptionMode::Passphrase => {
            if let Some(text) = (sources.env)(PASSPHRASE_VAR).filter(|t| !t.is_empty()) {
                return Ok(Some(StoreSecret::passphrase(text)));
            }
            if let Some(path) = &storage.passphrase_file {
                let text = read_secret_file("storage.passphrase_file", path, data_dir)?;
                let line = text.strip_suffix('\n').unwrap_or(&text);
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.is_empty() {
                    return fail(format!(
                        "storage.passphrase_file {} is empty",
                        path.display()
                    ));
                }
                return Ok(Some(StoreSecret::passphrase(line)));
            }
            match (sources.prompt)("peerdoc: passphrase of the document store: ") {
                Some(Ok(text)) if !text.is_empty() => Ok(Some(StoreSecret::passphrase(text))),
                Some(Ok(_)) => fail("the passphrase is empty".into()),
                Some(Err(e)) => fail(format!("reading the passphrase from the terminal: {e}")),
                None => fail(format!(
                    "storage.encryption = \"passphrase\" needs the passphrase: set {PASSPHRASE_VAR}, \
                     set storage.passphrase_file, or start `peerdoc run` in a terminal"
                )),
            }
        }
    }
}

/// Reads a key or passphrase file after checking it is outside `data_dir` and readable
/// by its owner only.
fn read_secret_file(key: &str, path: &Path, data_dir: &Path) -> Result<String, ConfigError> {
    let fail =
        |message: String| ConfigError::StoreSecret(format!("{key} {}: {message}", path.display()));
    let real = std::fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
    if let Ok(data) = std::fs::canonicalize(data_dir)
        && real.starts_with(&data)
    {
        return Err(fail(format!(
            "it is inside the data directory {}: a copy of that directory would carry its own \
             key; keep the secret elsewhere",
            data.display()
        )));
    }
    check_private(&real).map_err(fail)?;
    std::fs::read_to_string(&real).map_err(|e| fail(e.to_string()))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "other users can read it (mode {mode:03o}); run `chmod 600 {}`",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), String> {
    Ok(())
}

/// Asks for the passphrase without echoing it, when stdin is a terminal.
fn prompt_on_terminal(question: &str) -> Option<std::io::Result<String>> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    Some(rpassword::prompt_password(question))
}

/// Writes a new random store key to `path` (which must not exist), readable by its owner
/// only, for `storage.key_file`.
pub fn write_new_key(path: &Path) -> Result<PathBuf, String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            format!(
                "{} exists: a key is never overwritten (the store it opens would be lost)",
                path.display()
            )
        }
        _ => format!("{}: {e}", path.display()),
    })?;
    let key = StoreSecret::generate_key_hex();
    file.write_all(key.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))
}
