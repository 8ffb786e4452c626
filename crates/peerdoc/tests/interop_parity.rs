//! automerge-repo parity: what a stock `@automerge/automerge-repo` 2.5.6 app gets from
//! the stock sync server, it gets from `peerdoc run` too. Real daemons (127.0.0.1, mDNS
//! off, explicit peers, open mode) and real Node.js programs from `interop/`:
//!
//! - a document asked for before it reached the daemon (answered `doc-unavailable`) is
//!   delivered when it arrives, from another app on the same daemon or from another
//!   daemon; 4,000 documents created on one daemon are all found through another;
//! - `handle.broadcast` reaches the other app, on the same daemon and across two;
//! - a `join` without `supportedProtocolVersions` is v1; an oversized message closes with
//!   1009 and a reason the client sees; a client that vanishes is not a protocol error;
//! - an app subscribed to its cloud's storage id hears the cloud's heads.
//!
//! Skips (outside CI only) without Node.js, as `interop.rs` does. Timeouts are hang
//! guards only.

#[path = "support/http.rs"]
mod http;
#[path = "support/interop.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use support::{Daemon, HANG_GUARD, JsClient, POLL, SyncServer, interop};

/// How long an app waits for a late delivery before the test calls it lost (the stock
/// server delivers in about 0.2 s). A hang guard, not a speed target.
const DELIVERY_GUARD_MS: u64 = 30_000;

/// Daemon A, and daemon B dialling A over libp2p on loopback.
fn two_daemons(tmp: &Path) -> (Daemon, Daemon) {
    let a = Daemon::start(&tmp.join("a"), &[]);
    let b = Daemon::start(&tmp.join("b"), &["--peer", &a.dial_addr()]);
    b.wait_for_peer();
    a.wait_for_peer();
    (a, b)
}

/// An app that creates a document before it is connected, so that another app can be
/// made to ask for it first.
fn offline_author(dir: &Path, url: &str) -> JsClient {
    JsClient::start_with(dir, url, &["--offline"])
}

/// The late-arrival case: `asker` asks for a document `author` made offline and is told
/// it is unavailable; `author` connects; `asker`'s handle becomes ready without asking
/// again (automerge-repo 2.x never does).
fn late_arrival(asker: &mut JsClient, author: &mut JsClient) {
    let created = author.ok(json!({"cmd": "create", "content": {"menu": "fish", "tables": 12}}));
    let url = created["url"].as_str().expect("url").to_owned();
    let first = asker.call(json!({"cmd": "read", "url": url}));
    assert_eq!(first["ok"], false, "found before it was shared: {first}");
    assert!(
        first["error"]
            .as_str()
            .is_some_and(|e| e.contains("unavailable")),
        "{first}"
    );
    author.ok(json!({"cmd": "connect"}));
    let ready = asker.call(json!({"cmd": "ready", "url": url, "timeout_ms": DELIVERY_GUARD_MS}));
    assert_eq!(ready["ok"], true, "never delivered: {ready}");
    assert_eq!(ready["doc"]["tables"], 12, "{ready}");
    // And later edits follow.
    author.ok(json!({"cmd": "set", "url": url, "path": ["tables"], "value": 14}));
    asker.ok(
        json!({"cmd": "wait", "url": url, "path": ["tables"], "value": 14, "timeout_ms": 30000}),
    );
}

#[test]
fn a_document_that_arrives_after_an_app_asked_reaches_it_on_one_daemon() {
    let Some(dir) = interop() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&tmp.path().join("a"), &[]);
    let mut asker = JsClient::start(&dir, &daemon.sync_url());
    let mut author = offline_author(&dir, &daemon.sync_url());
    late_arrival(&mut asker, &mut author);
}

#[test]
fn a_document_that_arrives_after_an_app_asked_reaches_it_across_two_daemons() {
    let Some(dir) = interop() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = two_daemons(tmp.path());
    // "Share a link to a brand-new document" between two venue devices.
    let mut asker = JsClient::start(&dir, &b.sync_url());
    let mut author = offline_author(&dir, &a.sync_url());
    late_arrival(&mut asker, &mut author);
}

/// `from` broadcasts about `url`; `to` (listening) receives it; `from` does not hear
/// itself.
fn broadcast_reaches(from: &mut JsClient, to: &mut JsClient, url: &str) {
    for app in [&mut *from, &mut *to] {
        app.ok(json!({"cmd": "listen", "url": url}));
    }
    let started = Instant::now();
    let mut sent = 0;
    let messages = loop {
        // Presence is lossy by design; an app re-sends it. Send until one arrives.
        sent += 1;
        from.ok(json!({"cmd": "broadcast", "url": url, "message": {"cursor": sent}}));
        std::thread::sleep(POLL);
        let received = to.ok(json!({"cmd": "received", "url": url}));
        let messages = received["messages"].as_array().cloned().unwrap_or_default();
        if !messages.is_empty() {
            break messages;
        }
        assert!(
            started.elapsed() < HANG_GUARD,
            "no ephemeral message arrived after {sent} broadcasts"
        );
    };
    assert!(messages[0]["message"]["cursor"].is_u64(), "{messages:?}");
    let author = messages[0]["senderId"].clone();
    let own = from.ok(json!({"cmd": "received", "url": url}));
    assert!(
        own["messages"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m["senderId"] != author)),
        "an app heard its own broadcast: {own}"
    );
}

#[test]
fn ephemeral_messages_reach_the_other_app_on_one_daemon() {
    let Some(dir) = interop() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&tmp.path().join("a"), &[]);
    let mut one = JsClient::start(&dir, &daemon.sync_url());
    let mut two = JsClient::start(&dir, &daemon.sync_url());
    let url = one.ok(json!({"cmd": "create", "content": {"seats": 80}}))["url"]
        .as_str()
        .expect("url")
        .to_owned();
    two.ok(json!({"cmd": "ready", "url": url, "timeout_ms": DELIVERY_GUARD_MS}));
    broadcast_reaches(&mut one, &mut two, &url);
}

#[test]
fn ephemeral_messages_reach_an_app_on_another_daemon() {
    let Some(dir) = interop() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = two_daemons(tmp.path());
    let mut one = JsClient::start(&dir, &a.sync_url());
    let mut two = JsClient::start(&dir, &b.sync_url());
    let url = one.ok(json!({"cmd": "create", "content": {"seats": 80}}))["url"]
        .as_str()
        .expect("url")
        .to_owned();
    two.ok(json!({"cmd": "ready", "url": url, "timeout_ms": DELIVERY_GUARD_MS}));
    broadcast_reaches(&mut one, &mut two, &url);
    // And back.
    broadcast_reaches(&mut two, &mut one, &url);
}

/// `node interop/<program> <args>`; its stdout's last line as JSON.
fn node_json(dir: &Path, program: &str, args: &[&str]) -> Value {
    let output = Command::new("node")
        .arg(program)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{program} printed {stdout:?} ({e}); exit {}; stderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn four_thousand_documents_made_on_one_daemon_are_all_found_through_another() {
    let Some(dir) = interop() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = two_daemons(tmp.path());
    let timeout = (HANG_GUARD.as_millis() * 10).to_string();
    let outcome = node_json(
        &dir,
        "bulk.mjs",
        &[&a.sync_url(), &b.sync_url(), "4000", &timeout],
    );
    assert_eq!(outcome["found"], 4000, "{outcome}");
    let listed = b.client.get("/v1/docs").ok(200);
    let listed = listed["docs"]
        .as_array()
        .or(listed.as_array())
        .map_or(0, Vec::len);
    assert!(listed >= 4000, "B lists {listed} documents");
}

#[test]
fn a_join_without_protocol_versions_is_served_as_version_one() {
    let Some(dir) = interop() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&tmp.path().join("a"), &[]);
    let answer = node_json(
        &dir,
        "raw-socket.mjs",
        &[&daemon.sync_url(), "join-without-versions"],
    );
    assert_eq!(
        answer,
        json!({"type": "peer", "selectedProtocolVersion": "1"})
    );
}

fn metric(daemon: &Daemon, name: &str) -> Option<u64> {
    let text = String::from_utf8_lossy(&daemon.client.get("/metrics").body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

#[test]
fn an_oversized_message_closes_with_1009_and_a_reason_the_client_sees() {
    let Some(dir) = interop() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&tmp.path().join("a"), &[]);
    // Over the default 32 MiB limit, and far more than socket buffers hold: the client is
    // still writing when the daemon refuses the frame.
    let size = (40 * 1024 * 1024).to_string();
    let closed = node_json(
        &dir,
        "raw-socket.mjs",
        &[&daemon.sync_url(), "oversized", &size],
    );
    assert_eq!(closed["code"], 1009, "{closed}");
    assert!(
        closed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("over the limit")),
        "{closed}"
    );
    assert_eq!(
        metric(&daemon, "peerdoc_sync_sockets_protocol_errors_total"),
        Some(1)
    );
}

#[test]
fn an_app_that_vanishes_without_a_close_handshake_is_not_a_protocol_error() {
    let Some(dir) = interop() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&tmp.path().join("a"), &[]);
    for _ in 0..3 {
        let mut app = JsClient::start(&dir, &daemon.sync_url());
        let url = app.ok(json!({"cmd": "create", "content": {"n": 1}}))["url"]
            .as_str()
            .expect("url")
            .to_owned();
        daemon.wait_for(support::doc_id(&url), "/n", &json!(1));
        // Dropping it kills the Node.js process: no close frame, the socket just ends.
    }
    let started = Instant::now();
    while metric(&daemon, "peerdoc_sync_sockets_open") != Some(0) {
        assert!(started.elapsed() < HANG_GUARD, "sockets never closed");
        std::thread::sleep(POLL);
    }
    assert_eq!(
        metric(&daemon, "peerdoc_sync_sockets_opened_total"),
        Some(3)
    );
    assert_eq!(
        metric(&daemon, "peerdoc_sync_sockets_protocol_errors_total"),
        Some(0)
    );
    let log = daemon.log_text();
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && l.contains("sync socket")),
        "vanishing clients were logged as warnings:\n{log}"
    );
}

#[test]
fn an_app_subscribed_to_its_cloud_hears_the_cloud_heads() {
    let Some(dir) = interop() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let server_storage = tmp.path().join("server-storage");
    std::fs::create_dir_all(&server_storage).expect("server storage");
    let server = SyncServer::start(&dir, &server_storage);
    assert!(
        !server.storage_id.is_empty(),
        "sync-server.mjs printed no storage id"
    );
    let daemon = Daemon::start(&tmp.path().join("a"), &["--cloud", &server.url()]);
    let mut app = JsClient::start_with(&dir, &daemon.sync_url(), &["--remote-heads"]);
    app.ok(json!({"cmd": "subscribe_remotes", "storage_ids": [server.storage_id]}));
    let url = app.ok(json!({"cmd": "create", "content": {"menu": "fish"}}))["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let started = Instant::now();
    let heads = loop {
        let answer =
            app.ok(json!({"cmd": "remote_heads", "url": url, "storage_id": server.storage_id}));
        if let Some(heads) = answer["heads"].as_array().filter(|h| !h.is_empty()) {
            break heads.clone();
        }
        assert!(
            started.elapsed() < HANG_GUARD,
            "the app never heard the cloud's heads; daemon log:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(POLL);
    };
    assert_eq!(heads.len(), 1, "{heads:?}");
}
