#![allow(dead_code)] // Shared by the `netns` test and `netns` bench targets, which use different parts.

//! A `peerdoc run` daemon on one host of a [`Lan`](crate::lan::Lan), and the CLI run
//! next to it (same namespace, so the API's 127.0.0.1 is the daemon's).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::io::Write as _;
use std::sync::OnceLock;

use serde_json::{Value, json};

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
    /// The TCP port to listen on (default: one the OS picks).
    pub(crate) port: Option<u16>,
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
            .arg(format!(
                "/ip4/{}/tcp/{}",
                host.addr,
                options.port.unwrap_or(0)
            ))
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

    /// Whether the CLI's client commands exist in this build. The netns tests drive
    /// daemons through the CLI; a build whose CLI is still a skeleton falls back to the
    /// HTTP API, spoken from inside the namespace (see [`Daemon::http`]).
    fn use_cli(&self) -> bool {
        static CLI: OnceLock<bool> = OnceLock::new();
        *CLI.get_or_init(|| match self.cli(&["status"]) {
            Err(e) if e.contains("not built yet") => {
                println!("netns: the CLI's client commands are not built; using the HTTP API");
                false
            }
            _ => true,
        })
    }

    /// Creates a document; returns its id.
    pub(crate) fn create(&self, content: &Value) -> Result<String, String> {
        let created = if self.use_cli() {
            self.cli(&["doc", "new", &content.to_string()])?
        } else {
            self.http("POST", "/v1/docs", Some(&json!({ "content": content })))?
        };
        created
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("no id in {created}"))
    }

    /// Sets the value at a JSON pointer.
    pub(crate) fn set(&self, id: &str, path: &str, value: &Value) -> Result<(), String> {
        if self.use_cli() {
            self.cli(&["doc", "set", id, path, &value.to_string()])?;
        } else {
            let ops = json!({"ops": [{"op": "set", "path": path, "value": value}]});
            self.http("PATCH", &format!("/v1/docs/{id}"), Some(&ops))?;
        }
        Ok(())
    }

    /// The document's content, or `None` while this daemon does not have it.
    pub(crate) fn doc(&self, id: &str) -> Option<Value> {
        let value = if self.use_cli() {
            self.cli(&["doc", "get", id]).ok()?
        } else {
            self.http("GET", &format!("/v1/docs/{id}"), None).ok()?
        };
        // `doc get --json` and the API print {id, url, heads, content}.
        Some(match value.get("content") {
            Some(content) if value.get("heads").is_some() => content.clone(),
            _ => value,
        })
    }

    /// How many documents this daemon lists.
    pub(crate) fn documents(&self) -> Result<usize, String> {
        let list = if self.use_cli() {
            self.cli(&["doc", "list"])?
        } else {
            self.http("GET", "/v1/docs", None)?
        };
        list.as_array()
            .map(Vec::len)
            .ok_or_else(|| format!("not a list: {list}"))
    }

    /// This daemon's peer id, from its status.
    pub(crate) fn peer_id(&self) -> Result<String, String> {
        let status = self.cli(&["status"])?;
        status
            .get("peer_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("no peer_id in {status}"))
    }

    /// Peers with an open sync stream, from the daemon's status.
    pub(crate) fn connected_peers(&self) -> usize {
        let status = if self.use_cli() {
            self.cli(&["status"])
        } else {
            self.http("GET", "/v1/status?docs=false", None)
        };
        let Ok(status) = status else {
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

    /// One HTTP/1.0 request to this daemon's API, sent from inside its namespace (the
    /// API listens on the namespace's 127.0.0.1) by bash's `/dev/tcp`, so the test
    /// needs no HTTP client installed there. Returns the JSON body of a 2xx answer.
    pub(crate) fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let read = |name: &str| {
            std::fs::read_to_string(self.data_dir.join(name))
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("{name}: {e}"))
        };
        let url = read("api.addr")?;
        let token = read("api.token")?;
        let authority = url.trim_start_matches("http://").trim_end_matches('/');
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("api.addr {url} has no port"))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut child = self
            .host
            .command("bash")
            .args([
                "-c",
                "exec 3<>/dev/tcp/$1/$2 && cat >&3 && cat <&3",
                "http",
                host,
                port,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn bash: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(request.as_bytes())
                .map_err(|e| format!("write the request: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let response = String::from_utf8_lossy(&out.stdout);
        let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| {
            format!(
                "{method} {path}: no HTTP response ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{method} {path}: bad status line"))?;
        if !(200..300).contains(&status) {
            return Err(format!("{method} {path}: {status} {body}"));
        }
        if body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(body).map_err(|e| format!("{method} {path}: {e}: {body}"))
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

/// A deterministic, incompressible-looking payload of `len` hex digits (an edit of
/// `len` bytes), different for every `seed`.
pub(crate) fn payload(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap_or('0')
        })
        .collect()
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
