//! Values as people type them: addresses as `IP:PORT` or multiaddrs, paths with `~`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use peerdoc_node::Multiaddr;

/// An address as a person types it: a multiaddr, or `IP:PORT` for TCP. The error
/// names the value and shows the forms that work.
pub fn peer_addr(text: &str) -> Result<Multiaddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<Multiaddr>() {
        return Ok(addr);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        let ip = match socket.ip() {
            std::net::IpAddr::V4(v4) => format!("/ip4/{v4}"),
            std::net::IpAddr::V6(v6) => format!("/ip6/{v6}"),
        };
        if let Ok(addr) = format!("{ip}/tcp/{}", socket.port()).parse() {
            return Ok(addr);
        }
    }
    Err(format!(
        "{text:?} is not an address: use a multiaddr like /ip4/198.18.0.20/tcp/7410 \
         (optionally with /p2p/<peer id>) or IP:PORT"
    ))
}

/// `net.peers` and `net.listen_addrs` as multiaddr strings: `IP:PORT` is turned into
/// `/ip4/IP/tcp/PORT`, and a bad entry is an error naming it and where it came from.
pub(super) fn normalize_addrs(merged: &mut toml::Table) -> Result<(), String> {
    let Some(toml::Value::Table(net)) = merged.get_mut("net") else {
        return Ok(());
    };
    for key in ["peers", "listen_addrs"] {
        let Some(toml::Value::Array(items)) = net.get_mut(key) else {
            continue;
        };
        for item in items.iter_mut() {
            let toml::Value::String(text) = item else {
                continue;
            };
            let addr = peer_addr(text).map_err(|message| format!("net.{key}: {message}"))?;
            *item = toml::Value::String(addr.to_string());
        }
    }
    Ok(())
}

/// `~/x` as `$HOME/x` (service managers such as launchd pass `~` through unexpanded);
/// any other path as it is.
pub(super) fn expand_home(path: &Path, home: Option<&str>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) if !home.is_empty() => Path::new(home).join(rest),
        _ => path.to_owned(),
    }
}

/// Every leaf key of the configuration with its default, in file order: the keys the
/// environment may set and `docs/daemon.md` lists. Keys without a default (`data_dir`,
/// `team_key_file`, `net.team_key`, `net.allowlist`, `net.jitter_seed`) are not included.
pub fn default_keys() -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    if let Ok(toml::Value::Table(table)) = toml::Value::try_from(super::DaemonConfig::default()) {
        flatten("", &table, &mut out);
    }
    out
}

pub(super) fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            other => out.push((key, other.clone())),
        }
    }
}
