//! The first minute of a daemon: the stable listen port, the "starting" marker client
//! commands wait on, and the one "ready" line.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use peerdoc_node::Multiaddr;
use peerdoc_node::multiaddr::Protocol;

use crate::config::{DEFAULT_LISTEN_PORT, Profile, Resolved, default_listen_addrs_on};

/// File in the data directory holding the daemon's process id while it starts: client
/// commands that find it wait for `api.addr` instead of failing.
pub(super) const STARTING_FILE: &str = "api.starting";
/// File in the data directory remembering the libp2p port of a daemon on the default
/// listen addresses, so its address stays the same across restarts.
pub(super) const PORT_FILE: &str = "net.port";

/// Removes the starting marker when dropped (ready, or failed to start).
#[derive(Debug)]
pub(super) struct Starting(PathBuf);

impl Starting {
    /// Writes `<data_dir>/api.starting` with this process's id. A failure only costs
    /// clients their patience, so it is logged, not fatal.
    pub(super) fn mark(data_dir: &Path) -> Self {
        let path = data_dir.join(STARTING_FILE);
        if let Err(error) = std::fs::write(&path, format!("{}\n", std::process::id())) {
            tracing::debug!(file = %path.display(), %error, "cannot write the starting marker");
        }
        Self(path)
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// For a device on the default listen addresses: listen on the remembered port (else
/// [`DEFAULT_LISTEN_PORT`]), or on a port the OS picks when that one is taken (a second
/// daemon on this machine). Explicit addresses and the cloud profile are left alone.
pub(super) fn choose_listen_port(resolved: &mut Resolved) {
    if !resolved.origins.is_default("net.listen_addrs")
        || resolved.config.profile != Profile::Device
    {
        return;
    }
    let remembered = std::fs::read_to_string(resolved.data_dir.join(PORT_FILE))
        .ok()
        .and_then(|text| text.trim().parse::<u16>().ok())
        .filter(|port| *port != 0);
    let wanted = remembered.unwrap_or(DEFAULT_LISTEN_PORT);
    let port = if port_free(wanted) {
        wanted
    } else {
        tracing::warn!(
            port = wanted,
            "the libp2p port is taken (another peerdoc on this machine?); listening on a port \
             the OS picks, remembered for the next start (set net.listen_addrs to choose one)"
        );
        0
    };
    resolved.config.net.listen_addrs = default_listen_addrs_on(port);
}

/// Whether TCP and UDP `port` are both free on every interface.
fn port_free(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    TcpListener::bind(addr).is_ok() && UdpSocket::bind(addr).is_ok()
}

/// Remembers the TCP port the daemon listens on, when it chose it itself.
pub(super) fn remember_port(resolved: &Resolved, listening: &[Multiaddr]) {
    if !resolved.origins.is_default("net.listen_addrs")
        || resolved.config.profile != Profile::Device
    {
        return;
    }
    let Some(port) = listening.iter().find_map(tcp_port) else {
        return;
    };
    let path = resolved.data_dir.join(PORT_FILE);
    let known = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse::<u16>().ok());
    if known != Some(port)
        && let Err(error) = std::fs::write(&path, format!("{port}\n"))
    {
        tracing::warn!(file = %path.display(), %error, "cannot remember the listen port");
    }
}

fn tcp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

/// The addresses another device can dial, each ending in `/p2p/<peer id>`, best first:
/// TCP before QUIC, LAN addresses before loopback.
pub(crate) fn dialable(listening: &[Multiaddr], peer: &str) -> Vec<String> {
    let mut addrs: Vec<(u8, String)> = listening
        .iter()
        .filter(|a| !a.iter().any(|p| matches!(p, Protocol::P2p(_))))
        .map(|a| {
            let loopback = a.iter().any(|p| match p {
                Protocol::Ip4(ip) => ip.is_loopback() || ip.is_unspecified(),
                Protocol::Ip6(ip) => ip.is_loopback() || ip.is_unspecified(),
                _ => false,
            });
            let quic = tcp_port(a).is_none();
            let rank = u8::from(loopback) * 2 + u8::from(quic);
            (rank, format!("{a}/p2p/{peer}"))
        })
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs.into_iter().map(|(_, a)| a).collect()
}

/// The line `peerdoc run` prints on stdout once it serves: the API's URL and the address
/// to give a teammate.
pub(super) fn ready_line(api_url: &str, dialable: &[String]) -> String {
    match dialable.first() {
        Some(addr) => format!("peerdoc ready: API {api_url}  address {addr}"),
        None => format!("peerdoc ready: API {api_url}  (libp2p not listening)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialable_addresses_put_lan_tcp_first() {
        let addrs: Vec<Multiaddr> = [
            "/ip4/127.0.0.1/tcp/7410",
            "/ip4/127.0.0.1/udp/7410/quic-v1",
            "/ip4/198.18.0.5/udp/7410/quic-v1",
            "/ip4/198.18.0.5/tcp/7410",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let shown = dialable(&addrs, "12D3KooWPeer");
        assert_eq!(
            shown,
            [
                "/ip4/198.18.0.5/tcp/7410/p2p/12D3KooWPeer",
                "/ip4/198.18.0.5/udp/7410/quic-v1/p2p/12D3KooWPeer",
                "/ip4/127.0.0.1/tcp/7410/p2p/12D3KooWPeer",
                "/ip4/127.0.0.1/udp/7410/quic-v1/p2p/12D3KooWPeer",
            ]
        );
        assert_eq!(
            ready_line("http://127.0.0.1:7420", &shown),
            "peerdoc ready: API http://127.0.0.1:7420  address /ip4/198.18.0.5/tcp/7410/p2p/12D3KooWPeer"
        );
    }
}
