//! The local API against clients that misbehave, and a data directory two daemons race
//! for: hyper's own errors are JSON, half-sent requests and stalled bodies are cut off,
//! connections beyond the cap wait, the directory lock comes before the token, and the
//! directory is private whatever the umask.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use daemon::{Daemon, command, eventually};
use serde_json::Value;

fn api_addr(daemon: &Daemon) -> String {
    daemon.client.base.trim_start_matches("http://").to_owned()
}

/// Sends `request` on a new connection and reads until the server closes it (or 60 s).
fn raw(daemon: &Daemon, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(api_addr(daemon)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status and the JSON body of a raw answer, asserting it is `{code, message}`.
fn json_error(answer: &str) -> (u16, String) {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let status: u16 = head[9..12].parse().expect("status");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{answer}"
    );
    let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
    (status, json["code"].as_str().expect("code").to_owned())
}

#[test]
fn requests_hyper_rejects_before_the_router_get_json_errors_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start("A", &dir.path().join("a"), "/ip4/127.0.0.1/tcp/0", &[]);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "a bad Content-Length",
            b"POST /v1/docs HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "a NUL in a header",
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "not HTTP at all",
            b"HELLO\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "too many headers",
            {
                let mut r = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
                for i in 0..200 {
                    r.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
                }
                r.extend_from_slice(b"\r\n");
                r
            },
            431,
            "headers_too_large",
        ),
        (
            "a 70 KB URL",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            414,
            "uri_too_long",
        ),
    ];
    for (what, request, status, code) in cases {
        let answer = raw(&d, &request);
        assert_eq!(
            json_error(&answer),
            (status, code.to_owned()),
            "{what}: {answer}"
        );
    }
    // A route's own errors are as before (one JSON body, not two).
    let answer = raw(
        &d,
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        json_error(&answer),
        (404, "not_found".to_owned()),
        "{answer}"
    );
    assert_eq!(d.client.get("/health").ok(200)["status"], "ok");
}

#[test]
fn a_half_sent_request_is_closed_and_a_stalled_body_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        "A",
        &dir.path().join("a"),
        "/ip4/127.0.0.1/tcp/0",
        &[
            "--set",
            "api.header_timeout_secs=1",
            "--set",
            "api.body_timeout_secs=1",
        ],
    );
    // Half a head, then nothing: closed without an answer (hyper sends none on a
    // timeout). Before, it was held for as long as the client liked.
    let answer = raw(&d, b"GET /health HTTP/1.1\r\nHost: x\r\n");
    assert_eq!(answer, "", "a half-sent request is closed, not answered");
    // A body that stops halfway: the request fails with JSON instead of holding its
    // handler.
    let token = d.client.token.clone().unwrap();
    let answer = raw(
        &d,
        format!(
            "POST /v1/docs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"content\":"
        )
        .as_bytes(),
    );
    let (status, code) = json_error(&answer);
    assert_eq!((status, code.as_str()), (400, "bad_request"), "{answer}");
    assert!(answer.contains("sent nothing for 1 s"), "{answer}");
    // Nothing was created by it, and the API still answers.
    assert_eq!(d.client.get("/v1/docs").ok(200), Value::Array(vec![]));
}

#[test]
fn connections_beyond_the_cap_wait_for_one_to_close_and_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        "A",
        &dir.path().join("a"),
        "/ip4/127.0.0.1/tcp/0",
        &[
            "--set",
            "api.max_connections=3",
            "--set",
            "api.header_timeout_secs=120",
        ],
    );
    // The start-up health check's kept-alive connection may hold a slot until the
    // agent drops it; three idle connections of ours fill the cap in any case.
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(api_addr(&d)).unwrap())
        .collect();
    eventually("the cap to be reached", || {
        d.log_text()
            .contains("the API has as many connections open as it takes")
            .then_some(())
    });
    let mut waiting = TcpStream::connect(api_addr(&d)).unwrap();
    waiting
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = waiting.read(&mut byte);
    assert!(
        early.is_err(),
        "answered while the cap was reached: {early:?}"
    );
    drop(idle);
    waiting
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = Vec::new();
    waiting.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn two_daemons_started_at_once_leave_one_serving_the_token_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..4 {
        let data = dir.path().join(format!("d{round}"));
        let spawn = |home: &str| {
            command(&data, &dir.path().join(home))
                .args([
                    "--api-listen",
                    "127.0.0.1:0",
                    "--listen",
                    "/ip4/127.0.0.1/tcp/0",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        };
        let mut children = [spawn("h1"), spawn("h2")];
        // One of them exits with the lock error; the other serves.
        let (loser, winner) = eventually("one daemon to give up", || {
            let exited = children
                .iter_mut()
                .position(|child| child.try_wait().unwrap().is_some())?;
            Some((exited, 1 - exited))
        });
        let output = std::mem::replace(&mut children[loser], spawn_nothing())
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "round {round}: {stderr}");
        assert!(
            stderr.contains("is in use by another peerdoc daemon"),
            "round {round}: {stderr}"
        );
        let url = eventually("the winner's address", || {
            std::fs::read_to_string(data.join("api.addr"))
                .ok()
                .filter(|t| t.ends_with('\n'))
        });
        let token = std::fs::read_to_string(data.join("api.token")).unwrap();
        let client = http::Client::new(url.trim(), Some(token.trim()));
        // The token on disk is the one the survivor checks.
        client.get("/v1/status?docs=false").ok(200);
        assert!(children[winner].try_wait().unwrap().is_none());
        let _ = children[winner].kill();
        let _ = children[winner].wait();
    }
}

/// A finished child to swap in for one we take out of the array.
fn spawn_nothing() -> std::process::Child {
    std::process::Command::new("true").spawn().unwrap()
}

fn modes_under(path: &Path, out: &mut Vec<(String, u32, bool)>) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    out.push((
        path.display().to_string(),
        meta.permissions().mode() & 0o777,
        meta.is_dir(),
    ));
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            modes_under(&entry.unwrap().path(), out);
        }
    }
}

#[test]
fn the_data_directory_is_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    // As an older version or a lax umask left it: readable by everyone.
    std::fs::create_dir_all(data.join("exports")).unwrap();
    std::fs::write(data.join("exports/old.json"), "{}").unwrap();
    std::fs::write(data.join("api.token"), format!("{}\n", "ab".repeat(32))).unwrap();
    for (path, mode) in [
        ("", 0o755),
        ("exports", 0o755),
        ("exports/old.json", 0o644),
        ("api.token", 0o644),
    ] {
        std::fs::set_permissions(data.join(path), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let mut d = Daemon::start("A", &data, "/ip4/127.0.0.1/tcp/0", &[]);
    d.client.create(serde_json::json!({"title": "guest list"}));
    let mut modes = Vec::new();
    modes_under(&data, &mut modes);
    assert!(modes.len() > 6, "{modes:?}");
    for (path, mode, is_dir) in &modes {
        let allowed = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode & !allowed, 0, "{path} is {mode:o}");
    }
    assert!(d.log_text().contains("made the data directory private"));
    assert_eq!(d.sigterm().code(), Some(0));
}
