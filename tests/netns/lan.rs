#![allow(dead_code)] // Shared by the `netns` test and `netns` bench targets, which use different parts.

//! A venue LAN made of Linux network namespaces: one hub namespace holding a bridge,
//! and N host namespaces each with a veth link into it. Addresses come from
//! 198.18.0.0/15 (RFC 2544, benchmarking only) and nothing touches the machine's own
//! interfaces, so no packet leaves the machine and multicast (mDNS) stays on the bridge.
//!
//! Names carry the test process's pid (`pdn<pid>x<n>-h<i>`), so runs side by side never
//! collide, and namespaces left by a run that crashed (its pid is gone) are removed
//! before a new LAN is built. [`Lan`]'s `Drop` tears everything down, also on panic.

use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Every namespace this harness creates starts with this.
const PREFIX: &str = "pdn";

/// Distinguishes several LANs of one test process.
static NEXT_LAN: AtomicU32 = AtomicU32::new(0);

/// Whether the harness cannot run here, said on stdout and stderr: outside CI, tests
/// print `skipping: <why>` and pass. With `CI=true` (or `CI=1`) in the environment this
/// panics instead: a CI job whose runner lost root or iproute2 must fail, not report
/// green tests that never ran.
pub(crate) fn skip_unless_supported() -> bool {
    let Some(reason) = unsupported() else {
        return false;
    };
    if in_ci() {
        panic!("netns tests cannot run on this CI runner (CI=true): {reason}");
    }
    println!("skipping: {reason}");
    eprintln!("skipping: {reason}");
    true
}

/// Whether `CI` says we run in continuous integration.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        v.eq_ignore_ascii_case("true") || v == "1"
    })
}

/// Why the harness cannot run here, if it cannot. Probed once per test process: tests
/// run on parallel threads, and two probes under one name would collide.
pub(crate) fn unsupported() -> Option<String> {
    static PROBED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    PROBED.get_or_init(probe_support).clone()
}

fn probe_support() -> Option<String> {
    match effective_uid() {
        Some(0) => {}
        Some(uid) => return Some(format!("network namespaces need root (euid is {uid})")),
        None => return Some("cannot read the effective uid from /proc/self/status".into()),
    }
    if let Err(e) = Command::new("ip").arg("-V").output() {
        return Some(format!("iproute2's `ip` is not installed: {e}"));
    }
    // Root in a container may still lack CAP_SYS_ADMIN: `ip netns list` would work and
    // `ip netns add` fail. Only creating one tells.
    let probe = format!("{PREFIX}{}xprobe", std::process::id());
    match ip(&["netns", "add", &probe]) {
        Ok(_) => {
            let _ = ip(&["netns", "delete", &probe]);
            None
        }
        Err(e) => Some(format!("cannot create a network namespace here ({e})")),
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved fs
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Runs `ip` with `args`; an error carries its stderr.
pub(crate) fn ip(args: &[&str]) -> Result<Output, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One host of the LAN.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// Its namespace.
    pub(crate) ns: String,
    /// Its address on the LAN.
    pub(crate) addr: Ipv4Addr,
    /// Its bridge port in the hub namespace (cut/heal toggle this).
    port: String,
}

impl Host {
    /// A command that runs `program` inside this host's namespace (as root). This is the
    /// only way the harness starts anything on a host.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns, program]);
        command
    }
}

/// The LAN. Dropping it removes every namespace it made.
#[derive(Debug)]
pub(crate) struct Lan {
    hub: String,
    hosts: Vec<Host>,
}

impl Lan {
    /// Builds a LAN of `n` hosts (1..=200).
    pub(crate) fn new(n: usize) -> Result<Self, String> {
        assert!((1..=200).contains(&n), "1 to 200 hosts");
        remove_leftovers();
        let base = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            NEXT_LAN.fetch_add(1, Ordering::Relaxed)
        );
        let hub = format!("{base}-hub");
        // From here on, Drop cleans up whatever was made, even if a step fails.
        let mut lan = Lan {
            hub: hub.clone(),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 1..=n {
            let host = Host {
                ns: format!("{base}-h{i}"),
                addr: Ipv4Addr::new(198, 18, 0, 10 + i as u8),
                port: format!("p{i}"),
            };
            ip(&["netns", "add", &host.ns])?;
            lan.hosts.push(host.clone());
            let ns = host.ns.as_str();
            ip(&[
                "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", &host.port,
                "netns", &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &host.port, "master", "br0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", host.addr),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up", "multicast", "on"])?;
            // mDNS (224.0.0.251) leaves through the one LAN link.
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        Ok(lan)
    }

    /// Host `i`, counting from 1.
    pub(crate) fn host(&self, i: usize) -> &Host {
        &self.hosts[i - 1]
    }

    /// All hosts.
    pub(crate) fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Unplugs host `i` from the LAN (its bridge port goes down; the host's own link
    /// loses carrier), as if its Wi-Fi dropped.
    pub(crate) fn cut(&self, i: usize) -> Result<(), String> {
        ip(&["-n", &self.hub, "link", "set", &self.host(i).port, "down"]).map(drop)
    }

    /// Plugs host `i` back in.
    pub(crate) fn heal(&self, i: usize) -> Result<(), String> {
        ip(&["-n", &self.hub, "link", "set", &self.host(i).port, "up"]).map(drop)
    }

    /// Isolates host `i`'s bridge port, like `venue-lan isolate I on` and Wi-Fi client
    /// isolation: isolated hosts cannot reach each other (unicast or multicast), only
    /// hosts whose ports are not isolated.
    pub(crate) fn isolate(&self, i: usize) -> Result<(), String> {
        let port = &self.host(i).port;
        ip(&[
            "-n",
            &self.hub,
            "link",
            "set",
            "dev",
            port,
            "type",
            "bridge_slave",
            "isolated",
            "on",
        ])
        .map(drop)
    }

    /// Limits host `i`'s link both ways to `rate` (tc syntax, e.g. `"2mbit"`, venue
    /// Wi-Fi), like `venue-lan rate`.
    pub(crate) fn rate(&self, i: usize, rate: &str) -> Result<(), String> {
        let host = self.host(i);
        for (ns, dev) in [
            (host.ns.as_str(), "eth0"),
            (self.hub.as_str(), host.port.as_str()),
        ] {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev])
                .args([
                    "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms",
                ])
                .output()
                .map_err(|e| format!("tc: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "tc on {ns}/{dev}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(())
    }

    /// Drops multicast (mDNS) to and from host `i`, as many venue access points do,
    /// like `venue-lan nomcast I on`: an htb qdisc whose 224.0.0.0/4 class ends in a
    /// blackhole, on both ends of the host's link (this kernel has no tc actions).
    /// Replaces any [`Lan::rate`] on the host.
    pub(crate) fn nomcast(&self, i: usize) -> Result<(), String> {
        let host = self.host(i);
        for (ns, dev) in [
            (host.ns.as_str(), "eth0"),
            (self.hub.as_str(), host.port.as_str()),
        ] {
            let tc = |args: &[&str]| -> Result<(), String> {
                let out = Command::new("ip")
                    .args(["netns", "exec", ns, "tc"])
                    .args(args)
                    .output()
                    .map_err(|e| format!("tc: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "tc {} on {ns}/{dev}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            };
            let _ = tc(&["qdisc", "del", "dev", dev, "root"]);
            tc(&[
                "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1",
            ])?;
            for class in ["1:1", "1:2"] {
                tc(&[
                    "class", "add", "dev", dev, "parent", "1:", "classid", class, "htb", "rate",
                    "10gbit",
                ])?;
            }
            tc(&[
                "qdisc",
                "add",
                "dev",
                dev,
                "parent",
                "1:2",
                "handle",
                "20:",
                "blackhole",
            ])?;
            tc(&[
                "filter",
                "add",
                "dev",
                dev,
                "parent",
                "1:",
                "protocol",
                "ip",
                "prio",
                "1",
                "u32",
                "match",
                "ip",
                "dst",
                "224.0.0.0/4",
                "flowid",
                "1:2",
            ])?;
        }
        Ok(())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for name in self
            .hosts
            .iter()
            .map(|h| h.ns.as_str())
            .chain([self.hub.as_str()])
        {
            if let Err(e) = ip(&["netns", "del", name]) {
                eprintln!("netns teardown: {e}");
            }
        }
    }
}

/// Deletes namespaces of this harness whose creating process is gone: a run that
/// crashed or was killed before its `Drop` ran.
fn remove_leftovers() {
    let Ok(out) = ip(&["netns", "list"]) else {
        return;
    };
    let own = std::process::id();
    for name in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('x').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != own && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("netns: removing {name}, left over by a run that died");
            let _ = ip(&["netns", "del", name]);
        }
    }
}
