//! automerge-repo interop: real `peerdoc run` processes and real Node.js programs using
//! the stock `@automerge/automerge-repo` packages (`interop/`, pinned by its lock file).
//!
//! - A JS client with the WebSocket client adapter creates a document through the
//!   daemon's `/v1/sync` endpoint; it is readable through `GET /v1/docs/{id}`, and an
//!   edit made with `PATCH` reaches the JS client.
//! - A daemon using a stock sync server (`interop/sync-server.mjs`: NodeFS storage and
//!   the WebSocket server adapter) as its cloud pushes a document there; a JS client
//!   connected only to the server reads it, and an edit made on the server side comes
//!   back to the daemon.
//!
//! When `node`/`npm` are missing the tests print `skipping: …` and pass, except with
//! `CI=true`, where they fail (see [`skip_or_fail`]; `.ci/setup` installs both). When
//! `interop/node_modules` is missing they run `npm ci` once (under a file lock, so
//! parallel tests do not race), or `npm install` from the same lock if `ci` refuses it. Everything listens on 127.0.0.1; mDNS is off.
//! Timeouts are hang guards only.

#[path = "support/http.rs"]
mod http;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http::Client;
use serde_json::{Value, json};

const HANG_GUARD: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

fn tool_works(tool: &str) -> bool {
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
fn skip_or_fail(reason: &str) {
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
fn interop() -> Option<PathBuf> {
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
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `peerdoc run` child process.
struct Daemon {
    child: Reaped,
    log: PathBuf,
    url: String,
    token: String,
    client: Client,
}

impl Daemon {
    fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_listening(data_dir, "/ip4/127.0.0.1/tcp/0", extra)
    }

    fn start_listening(data_dir: &Path, listen: &str, extra: &[&str]) -> Self {
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
    fn sync_url(&self) -> String {
        let host = self.url.trim_start_matches("http://");
        format!("ws://{host}/v1/sync?token={}", self.token)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (hang guard) for a successful exit.
    fn terminate(&mut self) {
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

    /// Polls `GET /v1/docs/{id}` until the content at `pointer` equals `want`.
    fn wait_for(&self, id: &str, pointer: &str, want: &Value) -> Value {
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
struct JsClient {
    _child: Reaped,
    stdin: ChildStdin,
    replies: mpsc::Receiver<String>,
}

impl JsClient {
    fn start(dir: &Path, url: &str) -> Self {
        let mut child = Command::new("node")
            .arg("client.mjs")
            .arg(url)
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
    fn call(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").expect("write to client.mjs");
        self.stdin.flush().expect("flush");
        let line = self
            .replies
            .recv_timeout(HANG_GUARD + Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("client.mjs gave no reply to {command}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("client.mjs said {line:?}: {e}"))
    }

    /// `call` that must succeed.
    fn ok(&mut self, command: Value) -> Value {
        let reply = self.call(command.clone());
        assert_eq!(reply["ok"], true, "{command} -> {reply}");
        reply
    }

    /// Retries `command` until it succeeds (a document may not have arrived yet).
    fn eventually(&mut self, command: Value) -> Value {
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
struct SyncServer {
    _child: Reaped,
    port: u16,
}

impl SyncServer {
    fn start(dir: &Path, storage: &Path) -> Self {
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
        Self {
            _child: child,
            port,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

fn doc_id(url: &str) -> &str {
    url.strip_prefix("automerge:").expect("an automerge: URL")
}

#[test]
fn a_js_client_syncs_with_the_daemon_over_its_websocket_endpoint() {
    let Some(dir) = interop() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut daemon = Daemon::start(&tmp.path().join("a"), &[]);
    let mut js = JsClient::start(&dir, &daemon.sync_url());

    // Created in JS, readable through the HTTP API.
    let created = js.ok(json!({"cmd": "create", "content": {"couple": "Ana & Bo", "guests": 80}}));
    let url = created["url"].as_str().expect("url").to_owned();
    let id = doc_id(&url);
    let body = daemon.wait_for(id, "/guests", &json!(80));
    assert_eq!(body["content"]["couple"], "Ana & Bo");

    // Edited through the API, seen by the JS client.
    daemon
        .client
        .patch(
            &format!("/v1/docs/{id}"),
            &json!({"ops": [{"op": "set", "path": "/guests", "value": 84}]}),
        )
        .ok(200);
    js.ok(json!({"cmd": "wait", "url": url, "path": ["guests"], "value": 84, "timeout_ms": 30000}));

    // And the other way again: a JS edit lands on the daemon.
    js.ok(json!({"cmd": "set", "url": url, "path": ["couple"], "value": "Ana & Bo Silva"}));
    daemon.wait_for(id, "/couple", &json!("Ana & Bo Silva"));

    let metrics = String::from_utf8_lossy(&daemon.client.get("/metrics").body).into_owned();
    assert!(
        metrics.contains("peerdoc_sync_sockets_opened_total 1"),
        "{metrics}"
    );

    // An open sync socket does not hold up a clean shutdown.
    daemon.terminate();
}

#[test]
fn the_daemon_syncs_through_a_stock_sync_server() {
    let Some(dir) = interop() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let server_storage = tmp.path().join("server-storage");
    std::fs::create_dir_all(&server_storage).expect("server storage");
    let server = SyncServer::start(&dir, &server_storage);
    let mut daemon = Daemon::start(&tmp.path().join("a"), &["--cloud", &server.url()]);

    // The daemon connects and says so in its status.
    let started = Instant::now();
    loop {
        let status = daemon.client.get("/v1/status?docs=false").ok(200);
        let cloud = &status["cloud"][0];
        if cloud["connected"] == true {
            assert_eq!(cloud["kind"], "sync_server");
            assert_eq!(cloud["breaker"]["state"], "closed");
            break;
        }
        assert!(started.elapsed() < HANG_GUARD, "never connected: {status}");
        std::thread::sleep(POLL);
    }

    // A document created on the daemon reaches the server; a JS client connected
    // only to the server reads it there.
    let created = daemon
        .client
        .post(
            "/v1/docs",
            &json!({"content": {"menu": "fish", "tables": 12}, "priority": 5}),
        )
        .ok(201);
    let url = created["url"].as_str().expect("url").to_owned();
    let mut js = JsClient::start(&dir, &server.url());
    js.eventually(
        json!({"cmd": "wait", "url": url, "path": ["tables"], "value": 12, "timeout_ms": 2000}),
    );

    // An edit made on the server's side comes back to the daemon through the server.
    js.ok(json!({"cmd": "set", "url": url, "path": ["menu"], "value": "vegetarian"}));
    daemon.wait_for(doc_id(&url), "/menu", &json!("vegetarian"));

    let metrics = String::from_utf8_lossy(&daemon.client.get("/metrics").body).into_owned();
    assert!(
        metrics.contains("peerdoc_cloud_connected{endpoint=\"ws://127.0.0.1:"),
        "{metrics}"
    );

    // The server confirms holding the document as it is here, but a stock server
    // reports heads before it writes them: "reported", never "safe to wipe".
    let started = Instant::now();
    loop {
        let receipts = daemon.client.get("/v1/status?docs=false").ok(200)["receipts"].clone();
        // Every document, the shared-titles one included (`docs/api.md`).
        if receipts["unconfirmed"] == 0 && receipts["reported"].as_u64() >= Some(1) {
            assert_eq!(receipts["safe_to_wipe"], false, "{receipts}");
            assert!(
                receipts["verdict"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("probably safe")),
                "{receipts}"
            );
            break;
        }
        assert!(started.elapsed() < HANG_GUARD, "never reported: {receipts}");
        std::thread::sleep(POLL);
    }

    // A second daemon using the same server as its cloud learns of the document only
    // by its id (a stock server never lists what it holds): it fetches it, and edits
    // then flow between the two daemons through the server.
    let mut other = Daemon::start(&tmp.path().join("b"), &["--cloud", &server.url()]);
    let id = doc_id(&url).to_owned();
    assert_eq!(other.client.get(&format!("/v1/docs/{id}")).status, 404);
    let started = Instant::now();
    let fetched = loop {
        // Until its cloud connection is up, no peer has it.
        let answer = other
            .client
            .post(&format!("/v1/docs/{id}/fetch"), &json!({}));
        if answer.status == 200 {
            break answer.json();
        }
        answer.assert_error(404, "not_found");
        assert!(started.elapsed() < HANG_GUARD, "never fetched");
        std::thread::sleep(POLL);
    };
    assert_eq!(fetched["id"], id.as_str(), "{fetched}");
    other.wait_for(&id, "/menu", &json!("vegetarian"));
    other
        .client
        .patch(
            &format!("/v1/docs/{id}"),
            &json!({"ops": [{"op": "set", "path": "/tables", "value": 14}]}),
        )
        .ok(200);
    daemon.wait_for(&id, "/tables", &json!(14));
    // An id the server does not hold either is a clean 404.
    other
        .client
        .post("/v1/docs/4NMNnkMhL8jXrdJ9jamS58PAVdXu/fetch", &json!({}))
        .assert_error(404, "not_found");

    // A live cloud connection does not hold up a clean shutdown.
    other.terminate();
    daemon.terminate();
}

/// Not Node.js: the other kind of cloud endpoint, another peerdoc daemon's libp2p
/// address, dialled on the same schedule.
#[test]
fn a_libp2p_cloud_endpoint_is_dialled_and_synced_with() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let cloud_addr = format!("/ip4/127.0.0.1/tcp/{port}");
    let cloud = Daemon::start_listening(&tmp.path().join("cloud"), &cloud_addr, &[]);
    let created = cloud
        .client
        .post("/v1/docs", &json!({"content": {"venue": "barn"}}))
        .ok(201);
    let id = created["id"].as_str().expect("id").to_owned();

    let device = Daemon::start(&tmp.path().join("device"), &["--cloud", &cloud_addr]);
    let started = Instant::now();
    loop {
        let status = device.client.get("/v1/status?docs=false").ok(200);
        let endpoint = &status["cloud"][0];
        if endpoint["connected"] == true {
            assert_eq!(endpoint["kind"], "libp2p");
            assert_eq!(endpoint["endpoint"], cloud_addr.as_str());
            break;
        }
        assert!(started.elapsed() < HANG_GUARD, "never connected: {status}");
        std::thread::sleep(POLL);
    }
    device.wait_for(&id, "/venue", &json!("barn"));
    // The endpoint runs the device profile: it does not offer itself as a cloud, so
    // what it holds is not taken as a receipt.
    let receipts = device.client.get("/v1/status?docs=false").ok(200)["receipts"].clone();
    assert_eq!(receipts["unconfirmed"], 1, "{receipts}");
}
