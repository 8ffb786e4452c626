#![allow(dead_code)] // Shared by the `netns` and `netns_bench` targets, which use different parts.

//! A `peerdoc run` daemon on one host of a [`Lan`](crate::lan::Lan), and the CLI run
//! next to it (same namespace, so the API's 127.0.0.1 is the daemon's).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lan::Host;

/// The daemon binary under test.
pub(crate) const PEERDOC: &str = env!("CARGO_BIN_EXE_peerdoc");

/// A running daemon; dropping it kills the process.
#[derive(Debug)]
pub(crate) struct Daemon {
    pub(crate) host: Host,
    pub(crate) data_dir: PathBuf,
    child: Child,
}

/// How to start a daemon.
#[derive(Debug, Default, Clone)]
pub(crate) struct DaemonOptions {
    /// File holding the team key (64 hex characters).
    pub(crate) team_key_file: Option<PathBuf>,
    /// Extra `--set key=value` settings.
    pub(crate) settings: Vec<String>,
}

impl Daemon {
    /// Starts `peerdoc run` inside `host`'s namespace, mDNS on (the namespace's only
    /// link is the test bridge), listening on the host's LAN address; returns once the
    /// API answers.
    pub(crate) fn start(
        host: &Host,
        data_dir: &Path,
        options: &DaemonOptions,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
        let log = std::fs::File::create(data_dir.join("daemon.log"))
            .map_err(|e| format!("daemon log: {e}"))?;
        let mut command = host.command(PEERDOC);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["run", "--api-listen", "127.0.0.1:0"])
            .arg("--listen")
            .arg(format!("/ip4/{}/tcp/0", host.addr))
            .args(["--log", "info,peerdoc_net=debug"]);
        if let Some(key) = &options.team_key_file {
            command.arg("--team-key-file").arg(key);
        }
        for setting in &options.settings {
            command.args(["--set", setting]);
        }
        assert_in_namespace(&command, host);
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {PEERDOC}: {e}"))?;
        let mut daemon = Daemon {
            host: host.clone(),
            data_dir: data_dir.to_owned(),
            child,
        };
        let api_addr = data_dir.join("api.addr");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !api_addr.exists() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(format!(
                    "daemon on {} exited with {status}:\n{}",
                    host.ns,
                    daemon.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "daemon on {} never wrote api.addr:\n{}",
                    host.ns,
                    daemon.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(daemon)
    }

    /// Runs a CLI command (with `--json`) against this daemon and parses its output.
    pub(crate) fn cli(&self, args: &[&str]) -> Result<Value, String> {
        let mut command = self.host.command(PEERDOC);
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--json")
            .args(args);
        let out = command
            .output()
            .map_err(|e| format!("spawn {PEERDOC}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "peerdoc {} on {} failed ({}): {}{}",
                args.join(" "),
                self.host.ns,
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_str(stdout.trim())
            .map_err(|e| format!("peerdoc {} printed no JSON ({e}): {stdout}", args.join(" ")))
    }

    /// The document's content, or `None` while this daemon does not have it.
    pub(crate) fn doc(&self, id: &str) -> Option<Value> {
        let value = self.cli(&["doc", "get", id]).ok()?;
        // `doc get --json` prints the content; accept the API's {id, heads, content} too.
        Some(match value.get("content") {
            Some(content) if value.get("heads").is_some() => content.clone(),
            _ => value,
        })
    }

    /// Peers with an open sync stream, from `peerdoc status`.
    pub(crate) fn connected_peers(&self) -> usize {
        let Ok(status) = self.cli(&["status"]) else {
            return 0;
        };
        status
            .get("peers")
            .and_then(Value::as_array)
            .map_or(0, |peers| {
                peers
                    .iter()
                    .filter(|p| {
                        let flag = |name| p.get(name).and_then(Value::as_bool).unwrap_or(true);
                        flag("connected") && flag("sync_stream")
                    })
                    .count()
            })
    }

    /// The daemon's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // `ip netns exec` execs the daemon, so this is the daemon's own pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The network-safety rule, checked on every spawn: a daemon (with mDNS on) only ever
/// starts through `ip netns exec <one of the LAN's namespaces>`.
fn assert_in_namespace(command: &Command, host: &Host) {
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        command.get_program(),
        "ip",
        "daemons start only via ip netns exec"
    );
    assert_eq!(
        &args[..3],
        ["netns", "exec", host.ns.as_str()],
        "daemons start only via ip netns exec"
    );
    assert!(
        host.ns.starts_with("pdn"),
        "only in the harness's own namespaces"
    );
    assert!(
        !args.iter().any(|a| a == "--no-mdns"),
        "in a namespace, mDNS is what we test"
    );
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `guard` (a hang
/// guard, never a speed assertion).
pub(crate) fn eventually<T>(
    what: &str,
    guard: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + guard;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
