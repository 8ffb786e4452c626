//! Where the store's secret comes from (`[storage] encryption`, `docs/security.md`,
//! "Encryption at rest"), and which database `--store` names instead of the data
//! directory's store.
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

impl std::fmt::Debug for SecretSources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSources")
    }
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
pub(super) fn resolve(
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

impl super::Resolved {
    /// The store's secret as `[storage]` describes it (`None`: not encrypted), from
    /// `sources` where it is not in a file.
    pub fn store_secret(
        &self,
        sources: &SecretSources<'_>,
    ) -> Result<Option<peerdoc_node::StoreSecret>, ConfigError> {
        resolve(&self.config.storage, &self.data_dir, sources)
    }

    /// The PostgreSQL store `--store` names, if any.
    pub fn postgres(&self) -> Result<Option<peerdoc_node::PostgresStore>, ConfigError> {
        let Some(url) = &self.store_url else {
            let storage = &self.config.storage;
            if storage.schema.is_some() || storage.pool_size.is_some() {
                return Err(ConfigError::Invalid(
                    "storage.schema and storage.pool_size apply to a PostgreSQL store: \
                     give --store (or PEERDOC_STORE), or remove them"
                        .into(),
                ));
            }
            return Ok(None);
        };
        let config = postgres_config("--store", url, &self.config.storage)?;
        if self.config.storage.encryption != EncryptionMode::Off {
            return Err(ConfigError::Invalid(
                "storage.encryption applies to the data directory's store, not to \
                 --store: use the database's own encryption at rest"
                    .into(),
            ));
        }
        Ok(Some(peerdoc_node::PostgresStore(config)))
    }
}

/// Parses the connection string that `flag` (`--store`, `--to`, `--from`) gave, with
/// `[storage]`'s schema and pool size.
pub fn postgres_config(
    flag: &str,
    url: &str,
    storage: &super::StorageConfig,
) -> Result<peerdoc_node::PgConfig, ConfigError> {
    if !url.starts_with("postgres") && !url.contains('=') {
        return Err(ConfigError::Invalid(format!(
            "{flag} takes a PostgreSQL connection string (postgres://… or host=… \
             dbname=…); without --store the documents are kept in the data directory"
        )));
    }
    let mut config = peerdoc_node::PgConfig::from_connection_string(url)
        .map_err(|e| ConfigError::Invalid(format!("{flag}: {e}")))?;
    if let Some(schema) = &storage.schema {
        config = config.schema(schema.clone());
    }
    if let Some(size) = storage.pool_size {
        if size == 0 {
            return Err(ConfigError::Invalid(
                "storage.pool_size must be positive".into(),
            ));
        }
        config = config.pool_size(size);
    }
    config
        .check()
        .map_err(|e| ConfigError::Invalid(format!("{flag}: {e}")))?;
    Ok(config)
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::StorageConfig;

    fn storage(encryption: EncryptionMode) -> StorageConfig {
        StorageConfig {
            encryption,
            ..StorageConfig::default()
        }
    }

    fn no_terminal(_: &str) -> Option<std::io::Result<String>> {
        None
    }

    fn resolve_with(
        storage: &StorageConfig,
        data_dir: &Path,
        env: Option<&str>,
    ) -> Result<Option<StoreSecret>, String> {
        let env = |var: &str| {
            (var == PASSPHRASE_VAR)
                .then(|| env.map(str::to_owned))
                .flatten()
        };
        let sources = SecretSources {
            env: &env,
            prompt: &no_terminal,
        };
        resolve(storage, data_dir, &sources).map_err(|e| e.to_string())
    }

    fn private(path: &Path, text: &str) -> PathBuf {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path.to_owned()
    }

    #[test]
    fn the_passphrase_comes_from_the_environment_then_the_file_then_a_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let mut config = storage(EncryptionMode::Passphrase);
        let err = resolve_with(&config, &data, None).unwrap_err();
        assert!(
            err.contains(PASSPHRASE_VAR) && err.contains("terminal"),
            "{err}"
        );
        assert_eq!(
            resolve_with(&config, &data, Some("from env")).unwrap(),
            Some(StoreSecret::passphrase("from env"))
        );
        // Only the line ending is trimmed: spaces belong to the passphrase.
        config.passphrase_file = Some(private(&dir.path().join("p"), " two words \r\n"));
        assert_eq!(
            resolve_with(&config, &data, None).unwrap(),
            Some(StoreSecret::passphrase(" two words "))
        );
        assert_eq!(
            resolve_with(&config, &data, Some("from env")).unwrap(),
            Some(StoreSecret::passphrase("from env"))
        );
        config.passphrase_file = Some(private(&dir.path().join("empty"), "\n"));
        assert!(
            resolve_with(&config, &data, None)
                .unwrap_err()
                .contains("is empty")
        );
    }

    #[test]
    fn a_key_file_must_exist_be_private_hold_a_key_and_live_outside_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let mut config = storage(EncryptionMode::KeyFile);
        assert!(
            resolve_with(&config, &data, None)
                .unwrap_err()
                .contains("new-key")
        );

        let key = dir.path().join("store.key");
        let written = write_new_key(&key).unwrap();
        assert!(
            write_new_key(&key)
                .unwrap_err()
                .contains("never overwritten")
        );
        config.key_file = Some(written.clone());
        let secret = resolve_with(&config, &data, None).unwrap().unwrap();
        assert_eq!(secret.kind(), "key");

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(
            resolve_with(&config, &data, None)
                .unwrap_err()
                .contains("chmod 600")
        );
        config.key_file = Some(private(&data.join("k"), &"ab".repeat(32)));
        let err = resolve_with(&config, &data, None).unwrap_err();
        assert!(err.contains("inside the data directory"), "{err}");
        // Through a symlink from outside, still inside.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(data.join("k"), &link).unwrap();
        config.key_file = Some(link);
        assert!(
            resolve_with(&config, &data, None)
                .unwrap_err()
                .contains("inside")
        );
        config.key_file = Some(private(&dir.path().join("short"), "abcd"));
        assert!(
            resolve_with(&config, &data, None)
                .unwrap_err()
                .contains("64 hex")
        );
        config.key_file = Some(dir.path().join("missing"));
        assert!(resolve_with(&config, &data, None).is_err());
    }

    #[test]
    fn encryption_off_is_no_secret_and_a_stray_secret_setting_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = storage(EncryptionMode::Off);
        assert_eq!(
            resolve_with(&config, dir.path(), Some("ignored")).unwrap(),
            None
        );
        config.key_file = Some(dir.path().join("k"));
        let err = resolve_with(&config, dir.path(), None).unwrap_err();
        assert!(
            err.contains("storage.key_file is set but storage.encryption is \"off\""),
            "{err}"
        );
    }
}
