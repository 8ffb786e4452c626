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
//! `CI=true`, where they fail (see `skip_or_fail` in `support/interop.rs`; `.ci/setup` installs both). When
//! `interop/node_modules` is missing they run `npm ci` once (under a file lock, so
//! parallel tests do not race), or `npm install` from the same lock if `ci` refuses it. Everything listens on 127.0.0.1; mDNS is off.
//! Timeouts are hang guards only.

#[path = "support/http.rs"]
mod http;
#[path = "support/interop.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Daemon, HANG_GUARD, JsClient, POLL, SyncServer, doc_id, interop};

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
    // No libp2p peer, but connected to its cloud: not "offline" (it once said so).
    let status = daemon.client.get("/v1/status?docs=false").ok(200);
    assert_eq!(status["peers"], json!([]), "{status}");
    assert_ne!(status["health"], "offline", "{status}");

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
    // An id the server does not hold either is a clean 404, and leaves nothing in
    // memory (the server's late empty sync message once made a ghost document per try).
    let loaded = || other.client.get("/v1/status?docs=false").ok(200)["loaded"].clone();
    let loaded_before = loaded();
    for _ in 0..3 {
        other
            .client
            .post("/v1/docs/4NMNnkMhL8jXrdJ9jamS58PAVdXu/fetch", &json!({}))
            .assert_error(404, "not_found");
    }
    // Let a late message arrive, then compare (a ghost would stay for good).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(loaded(), loaded_before);

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
