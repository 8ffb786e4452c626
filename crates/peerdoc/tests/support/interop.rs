//! What the interop tests share: the `interop/` Node.js programs (installed on demand),
//! `peerdoc run` child processes, a scripted stock automerge-repo client and the stock
//! sync server. Everything listens on 127.0.0.1; mDNS is off.

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::Client;

pub const HANG_GUARD: Duration = Duration::from_secs(60);
pub const POLL: Duration = Duration::from_millis(100);

pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

pub fn tool_works(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Called where a test's prerequisite is missing, before the test returns early: outside
/// CI it prints `skipping: {reason}` and the test passes; with `CI=true` it panics, since
/// CI installs every prerequisite (`.ci/setup`) and a test that silently did not run
/// there would be counted as passing.
pub fn skip_or_fail(reason: &str) {
    // Read as the netns harness reads it (`tests/netns/lan.rs`): `true` or `1`.
    if std::env::var("CI")
        .is_ok_and(|ci| ci.trim().eq_ignore_ascii_case("true") || ci.trim() == "1")
    {
        panic!("{reason}; with CI=true a missing prerequisite is a failure (run .ci/setup)");
    }
    eprintln!("skipping: {reason}");
}

/// The `interop/` directory with its packages installed, or `None` (after
/// [`skip_or_fail`]) when Node.js is not available.
pub fn interop() -> Option<PathBuf> {
    let missing: Vec<&str> = ["node", "npm"]
        .into_iter()
        .filter(|tool| !tool_works(tool))
        .collect();
    if !missing.is_empty() {
        skip_or_fail(&format!(
            "the automerge-repo interop tests need node and npm; not working here: {}",
            missing.join(", ")
        ));
        return None;
    }
    let dir = interop_dir();
    if !dir.join("node_modules").is_dir() {
        let lock = File::create(dir.join(".npm-ci.lock")).expect("interop lock file");
        lock.lock().expect("lock interop/");
        // Another test may have installed while we waited.
        if !dir.join("node_modules").is_dir() {
            let npm = |args: &[&str]| {
                Command::new("npm")
                    .args(args)
                    .current_dir(&dir)
                    .status()
                    .expect("run npm")
            };
            if !npm(&["ci", "--no-audit", "--no-fund"]).success() {
                // npm 11's `ci` refuses a lock without entries for optional platform
                // packages a registry does not carry (cbor-extract's prebuilds);
                // `install` still takes every version from the lock.
                eprintln!("npm ci failed; installing from the same lock with npm install");
                let status = npm(&["install", "--no-audit", "--no-fund"]);
                assert!(status.success(), "npm install in interop/ failed: {status}");
            }
        }
        let _ = lock.unlock();
    }
    Some(dir)
}

/// Kills and reaps a child process when dropped.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `peerdoc run` child process.
pub struct Daemon {
    pub child: Reaped,
    log: PathBuf,
    pub url: String,
    pub token: String,
    pub client: Client,
}

impl Daemon {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_listening(data_dir, "/ip4/127.0.0.1/tcp/0", extra)
    }

    pub fn start_listening(data_dir: &Path, listen: &str, extra: &[&str]) -> Self {
        let home = data_dir.with_extension("home");
        std::fs::create_dir_all(&home).expect("home");
        let log = data_dir.with_extension("log");
        let log_file = File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerdoc"));
        for (key, _) in std::env::vars() {
            if key.starts_with("PEERDOC_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("PEERDOC_TEAM_OPEN", "true")
            .args(["run", "--no-mdns", "--api-listen", "127.0.0.1:0"])
            .args(["--listen", listen, "--log", "info,peerdoc=debug"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn peerdoc");
        let mut child = Reaped(child);
        let started = Instant::now();
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(data_dir.join("api.addr"))
                && text.ends_with('\n')
            {
                break text.trim().to_owned();
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!(
                    "daemon exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < HANG_GUARD,
                "daemon never wrote api.addr"
            );
            std::thread::sleep(POLL);
        };
        let token = std::fs::read_to_string(data_dir.join("api.token"))
            .expect("token")
            .trim()
            .to_owned();
        let client = Client::new(&url, Some(&token));
        Self {
            child,
            log,
            url,
            token,
            client,
        }
    }

    /// The automerge-repo WebSocket URL of this daemon.
    pub fn sync_url(&self) -> String {
        let host = self.url.trim_start_matches("http://");
        format!("ws://{host}/v1/sync?token={}", self.token)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (hang guard) for a successful exit.
    pub fn terminate(&mut self) {
        let killed = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.0.id().to_string())
            .status()
            .expect("kill");
        assert!(killed.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().expect("wait") {
                assert!(status.success(), "exit {status}; log:\n{}", self.log_text());
                return;
            }
            assert!(
                started.elapsed() < HANG_GUARD,
                "the daemon did not stop on SIGTERM; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(POLL);
        }
    }

    /// The libp2p address another daemon dials (`--peer`).
    pub fn dial_addr(&self) -> String {
        let status = self.client.get("/v1/status?docs=false").ok(200);
        format!(
            "{}/p2p/{}",
            status["listen_addrs"][0].as_str().expect("listen addr"),
            status["peer_id"].as_str().expect("peer id")
        )
    }

    /// Waits until a peerdoc peer is connected.
    pub fn wait_for_peer(&self) {
        let started = Instant::now();
        loop {
            let status = self.client.get("/v1/status?docs=false").ok(200);
            let connected = status["peers"].as_array().is_some_and(|peers| {
                peers
                    .iter()
                    .any(|p| p["connected"] == true && p["peerdoc"] == true)
            });
            if connected {
                return;
            }
            assert!(
                started.elapsed() < HANG_GUARD,
                "no peer connected: {status}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Polls `GET /v1/docs/{id}` until the content at `pointer` equals `want`.
    pub fn wait_for(&self, id: &str, pointer: &str, want: &Value) -> Value {
        let started = Instant::now();
        loop {
            let answer = self.client.get(&format!("/v1/docs/{id}"));
            if answer.status == 200 {
                let body = answer.json();
                if body["content"].pointer(pointer) == Some(want) {
                    return body;
                }
            }
            assert!(
                started.elapsed() < HANG_GUARD,
                "{id}{pointer} never became {want} on the daemon (last answer {} {}); log:\n{}",
                answer.status,
                String::from_utf8_lossy(&answer.body),
                self.log_text()
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log_text());
        }
        // `child` (Reaped) kills the process if it still runs.
    }
}

/// `interop/client.mjs`: a stock automerge-repo client scripted over stdin/stdout.
pub struct JsClient {
    _child: Reaped,
    stdin: ChildStdin,
    replies: mpsc::Receiver<String>,
}

impl JsClient {
    pub fn start(dir: &Path, url: &str) -> Self {
        Self::start_with(dir, url, &[])
    }

    /// `client.mjs` with extra arguments (`--remote-heads`).
    pub fn start_with(dir: &Path, url: &str, args: &[&str]) -> Self {
        let mut child = Command::new("node")
            .arg("client.mjs")
            .arg(url)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node client.mjs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            _child: Reaped(child),
            stdin,
            replies,
        }
    }

    /// Sends one command and returns its reply (`{"ok": …}`).
    pub fn call(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").expect("write to client.mjs");
        self.stdin.flush().expect("flush");
        let line = self
            .replies
            .recv_timeout(HANG_GUARD + Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("client.mjs gave no reply to {command}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("client.mjs said {line:?}: {e}"))
    }

    /// `call` that must succeed.
    pub fn ok(&mut self, command: Value) -> Value {
        let reply = self.call(command.clone());
        assert_eq!(reply["ok"], true, "{command} -> {reply}");
        reply
    }

    /// Retries `command` until it succeeds (a document may not have arrived yet).
    pub fn eventually(&mut self, command: Value) -> Value {
        let started = Instant::now();
        loop {
            let reply = self.call(command.clone());
            if reply["ok"] == true {
                return reply;
            }
            assert!(
                started.elapsed() < HANG_GUARD,
                "{command} kept failing: {reply}"
            );
            std::thread::sleep(POLL);
        }
    }
}

/// `interop/sync-server.mjs`, the stock sync server, on 127.0.0.1.
pub struct SyncServer {
    pub child: Reaped,
    pub port: u16,
    /// The server's storage id (what an app subscribes to for "synced with the cloud").
    pub storage_id: String,
}

impl SyncServer {
    pub fn start(dir: &Path, storage: &Path) -> Self {
        let mut child = Command::new("node")
            .arg("sync-server.mjs")
            .arg(storage)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node sync-server.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let child = Reaped(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(HANG_GUARD)
            .expect("sync-server.mjs printed its port");
        let info: Value = serde_json::from_str(&line).expect("port line is JSON");
        let port = info["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .expect("a port");
        let storage_id = info["storageId"].as_str().unwrap_or_default().to_owned();
        Self {
            child,
            port,
            storage_id,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

pub fn doc_id(url: &str) -> &str {
    url.strip_prefix("automerge:").expect("an automerge: URL")
}
