//! Where each configuration value came from, for `peerdoc config show`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::{DaemonConfig, Profile, flatten};

/// The layer that set a key ([module docs](super) list the layers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The profile's default (`--profile cloud`).
    Profile(Profile),
    /// The config file.
    File(PathBuf),
    /// An environment variable `PEERDOC_<KEY>`.
    Env(String),
    /// A flag (or clap's variable for it), e.g. `--no-mdns`.
    Flag(&'static str),
    /// `--set key=value`.
    Set,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Profile(Profile::Cloud) => f.write_str("profile cloud"),
            Self::Profile(Profile::Device) => f.write_str("profile device"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(var) => write!(f, "environment {var}"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
            Self::Set => f.write_str("--set"),
        }
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Each leaf key's [`Origin`]. A key set as a whole table by one layer (a file's `[net]`
/// section) is recorded leaf by leaf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(BTreeMap<String, Origin>);

impl Origins {
    pub(super) fn set(&mut self, key: String, origin: Origin) {
        self.0.insert(key, origin);
    }

    /// Where `key` came from; `Default` for a key no layer set.
    pub fn of(&self, key: &str) -> &Origin {
        self.0.get(key).unwrap_or(&Origin::Default)
    }

    /// Whether no layer set `key` (it has the daemon's built-in default).
    pub fn is_default(&self, key: &str) -> bool {
        matches!(self.of(key), Origin::Default)
    }
}

/// One line of `peerdoc config show`.
#[derive(Debug, Clone, Serialize)]
pub struct ShownKey {
    /// The dotted key, e.g. `net.enable_mdns`.
    pub key: String,
    /// Its value, as TOML.
    pub value: String,
    /// Where it came from, e.g. `default`, `flag --no-mdns`, `file /etc/peerdoc.toml`.
    pub origin: Origin,
}

/// Every leaf key of `config` with its value and origin, in file order. Secrets
/// (`net.team_key`) are shown as `(set)`.
pub fn show(config: &DaemonConfig, origins: &Origins) -> Vec<ShownKey> {
    let mut keys = Vec::new();
    if let Ok(toml::Value::Table(table)) = toml::Value::try_from(config) {
        flatten("", &table, &mut keys);
    }
    keys.into_iter()
        .map(|(key, value)| {
            let value = if key == "net.team_key" {
                "(set)".to_owned()
            } else {
                value.to_string()
            };
            let origin = origins.of(&key).clone();
            ShownKey { key, value, origin }
        })
        .collect()
}
