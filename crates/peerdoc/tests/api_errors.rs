//! The HTTP API in-process (127.0.0.1:0, loopback node, mDNS off): every endpoint's
//! error cases answer the documented status and code and change nothing; plus the
//! happy path of each endpoint.

#[path = "support/http.rs"]
mod http;

use std::io::{BufRead as _, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use http::Client;
use peerdoc::server::{AppState, ROUTES, ServerConfig, openapi_json, serve};
use peerdoc_node::{Node, NodeConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;

const TOKEN: &str = "test-token-0123456789";
/// Small, so the oversized-body cases stay cheap.
const BODY_LIMIT: usize = 64 * 1024;

/// A node and its API on 127.0.0.1:0, run by a runtime the test thread does not block.
struct TestServer {
    client: Client,
    runtime: tokio::runtime::Runtime,
    stop: Option<oneshot::Sender<()>>,
    node: Option<Node>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let path = dir.path().to_owned();
        let (node, url) = runtime.block_on(async move {
            let node = Node::start(NodeConfig::loopback(&path))
                .await
                .expect("node starts");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let mut config = ServerConfig::new(TOKEN.to_owned(), url.clone());
            config.max_body_bytes = BODY_LIMIT;
            config.store_dir = Some(path.join("store"));
            let state = AppState::new(node.handle(), config);
            tokio::spawn(serve(listener, state, async move {
                let _ = stop_rx.await;
            }));
            (node, url)
        });
        Self {
            client: Client::new(&url, Some(TOKEN)),
            runtime,
            stop: Some(stop_tx),
            node: Some(node),
            _dir: dir,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(node) = self.node.take() {
            self.runtime.block_on(node.shutdown());
        }
    }
}

/// A document's content and heads, for "nothing changed" checks.
fn snapshot(c: &Client, id: &str) -> (Value, Value) {
    let doc = c.read(id);
    (doc["content"].clone(), doc["heads"].clone())
}

const BAD_ID: &str = "not-a-document-id";
/// A well-formed id no node has.
fn unknown_id(_: &Client) -> String {
    use rand::SeedableRng as _;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    peerdoc_node::DocumentId::random(&mut rng).to_string()
}

#[test]
fn health_needs_no_token_and_everything_else_does() {
    let s = TestServer::start();
    let anon = s.client.with_token(None);
    assert_eq!(anon.get("/health").ok(200), json!({"status": "ok"}));
    let wrong = s.client.with_token(Some("wrong"));
    let id = s.client.create(json!({"a": 1}));
    let before = snapshot(&s.client, &id);
    let doc = format!("/v1/docs/{id}");
    let edit = json!({"ops": [{"op": "set", "path": "/a", "value": 2}]});
    for client in [&anon, &wrong] {
        for path in [
            "/v1/status",
            "/v1/peers",
            "/v1/docs",
            "/v1/events",
            "/v1/openapi.json",
            "/metrics",
            &doc,
            &format!("{doc}/export"),
            &format!("{doc}/conflicts"),
            &format!("{doc}/history"),
        ] {
            client.get(path).assert_error(401, "unauthorized");
        }
        client.patch(&doc, &edit).assert_error(401, "unauthorized");
        client
            .patch(&format!("{doc}/meta"), &json!({"title": "x"}))
            .assert_error(401, "unauthorized");
        client.delete(&doc).assert_error(401, "unauthorized");
        client
            .post("/v1/docs", &json!({"content": {}}))
            .assert_error(401, "unauthorized");
        client
            .call(
                "POST",
                "/v1/docs/import",
                Some("application/octet-stream"),
                Some(vec![1, 2]),
            )
            .assert_error(401, "unauthorized");
    }
    assert_eq!(snapshot(&s.client, &id), before);
    let listed = s.client.get("/v1/docs").ok(200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[test]
fn create_rejects_bad_bodies_and_creates_nothing() {
    let s = TestServer::start();
    let c = &s.client;
    c.call(
        "POST",
        "/v1/docs",
        Some("application/json"),
        Some(b"{not json".to_vec()),
    )
    .assert_error(400, "bad_json");
    c.post("/v1/docs", &json!({"content": {}, "colour": "red"}))
        .assert_error(400, "bad_json");
    c.post("/v1/docs", &json!({"content": [1, 2]}))
        .assert_error(400, "bad_json");
    c.post("/v1/docs", &json!({"content": {}, "priority": "high"}))
        .assert_error(400, "bad_json");
    c.post("/v1/docs", &json!([])).assert_error(400, "bad_json");
    c.call("POST", "/v1/docs", Some("text/plain"), Some(b"{}".to_vec()))
        .assert_error(415, "unsupported_media_type");
    c.call("POST", "/v1/docs", None, Some(b"{}".to_vec()))
        .assert_error(415, "unsupported_media_type");
    let big = json!({"content": {"blob": "x".repeat(BODY_LIMIT)}});
    c.post("/v1/docs", &big).assert_error(413, "too_large");
    assert_eq!(c.get("/v1/docs").ok(200), json!([]));
}

#[test]
fn create_list_read_and_read_at_heads() {
    let s = TestServer::start();
    let c = &s.client;
    let created = c
        .post(
            "/v1/docs",
            &json!({"content": {"title": "Barn wedding", "n": {"$counter": 1}}, "title": "Run of show", "priority": 5}),
        )
        .ok(201);
    let id = created["id"].as_str().expect("id");
    assert_eq!(created["url"], format!("automerge:{id}"));
    assert!(created["heads"].as_array().is_some_and(|h| !h.is_empty()));
    let first_heads = created["heads"].clone();

    // A default (empty) document.
    let empty = c.post("/v1/docs", &json!({})).ok(201);
    assert_eq!(
        c.read(empty["id"].as_str().expect("id"))["content"],
        json!({})
    );

    let list = c.get("/v1/docs").ok(200);
    let entry = list
        .as_array()
        .and_then(|l| l.iter().find(|d| d["id"] == id))
        .cloned()
        .expect("listed");
    assert_eq!(entry["title"], "Run of show");
    assert_eq!(entry["priority"], 5);
    assert_eq!(entry["deleted"], false);

    let edited = c
        .patch(
            &format!("/v1/docs/{id}"),
            &json!({"ops": [{"op": "set", "path": "/title", "value": "Hayloft wedding"}], "message": "moved"}),
        )
        .ok(200);
    assert_ne!(edited["heads"], first_heads);
    // automerge: URLs are accepted wherever an id is.
    let now = c.read(&format!("automerge:{id}"));
    assert_eq!(now["content"]["title"], "Hayloft wedding");
    assert_eq!(now["content"]["n"], json!({"$counter": 1}));
    let heads = first_heads
        .as_array()
        .expect("heads")
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(",");
    let old = c.get(&format!("/v1/docs/{id}?heads={heads}")).ok(200);
    assert_eq!(old["content"]["title"], "Barn wedding");

    // Read errors.
    c.get(&format!("/v1/docs/{id}?heads=zz"))
        .assert_error(400, "bad_request");
    // An empty list is a mistake, not "the current version".
    let empty = c.get(&format!("/v1/docs/{id}?heads="));
    empty.assert_error(400, "bad_request");
    assert!(
        !empty.json()["message"]
            .as_str()
            .unwrap_or("")
            .contains("?heads="),
        "HTTP wording in {:?}",
        empty.json()
    );
    c.get(&format!("/v1/docs/{id}?heads={}", "ab".repeat(32)))
        .assert_error(404, "unknown_heads");
    c.get(&format!("/v1/docs/{id}?colour=red"))
        .assert_error(400, "bad_request");
    c.get(&format!("/v1/docs/{BAD_ID}"))
        .assert_error(400, "bad_document_id");
    c.get(&format!("/v1/docs/{}", unknown_id(c)))
        .assert_error(404, "not_found");
    c.get("/v1/docs?deleted=maybe")
        .assert_error(400, "bad_request");
}

#[test]
fn edit_errors_change_nothing() {
    let s = TestServer::start();
    let c = &s.client;
    let id = c.create(json!({"name": "Ada", "n": 3, "list": [1, 2], "text": "hi"}));
    let path = format!("/v1/docs/{id}");
    let before = snapshot(c, &id);
    let patch = |ops: Value| c.patch(&path, &json!({"ops": ops}));

    c.call(
        "PATCH",
        &path,
        Some("application/json"),
        Some(b"{\"ops\": [".to_vec()),
    )
    .assert_error(400, "bad_json");
    c.patch(&path, &json!({"ops": [], "extra": 1}))
        .assert_error(400, "bad_json");
    c.patch(&path, &json!({"operations": []}))
        .assert_error(400, "bad_json");
    patch(json!([{"op": "frobnicate", "path": "/n"}])).assert_error(400, "bad_json");
    patch(json!([{"op": "set", "path": "/n"}])).assert_error(400, "bad_json");
    patch(json!([{"op": "remove", "path": "/list/0", "count": -1}])).assert_error(400, "bad_json");
    // Malformed JSON pointers.
    patch(json!([{"op": "set", "path": "name", "value": 1}])).assert_error(400, "bad_path");
    patch(json!([{"op": "set", "path": "/a~2", "value": 1}])).assert_error(400, "bad_path");
    // A valid op first, then a bad pointer: nothing of the batch applies.
    patch(json!([
        {"op": "set", "path": "/name", "value": "Grace"},
        {"op": "delete", "path": "/x~"}
    ]))
    .assert_error(400, "bad_path");
    // Ops that do not fit the document (422), also after a valid op in the same batch.
    patch(json!([{"op": "increment", "path": "/name", "by": 1}]))
        .assert_error(422, "invalid_change");
    patch(json!([{"op": "splice", "path": "/n", "index": 0, "delete": 0, "insert": "x"}]))
        .assert_error(422, "invalid_change");
    patch(json!([{"op": "insert", "path": "/name/0", "values": [1]}]))
        .assert_error(422, "invalid_change");
    patch(json!([{"op": "remove", "path": "/list/5", "count": 1}]))
        .assert_error(422, "invalid_change");
    patch(json!([{"op": "delete", "path": "/missing/deeper"}])).assert_error(422, "invalid_change");
    patch(json!([
        {"op": "set", "path": "/name", "value": "Grace"},
        {"op": "set", "path": "/n/child", "value": 1}
    ]))
    .assert_error(422, "invalid_change");
    // Wrong content type, oversized body.
    c.call(
        "PATCH",
        &path,
        Some("text/plain"),
        Some(b"{\"ops\": []}".to_vec()),
    )
    .assert_error(415, "unsupported_media_type");
    patch(json!([{"op": "set", "path": "/name", "value": "x".repeat(BODY_LIMIT)}]))
        .assert_error(413, "too_large");
    // Ids.
    c.patch(&format!("/v1/docs/{BAD_ID}"), &json!({"ops": []}))
        .assert_error(400, "bad_document_id");
    c.patch(&format!("/v1/docs/{}", unknown_id(c)), &json!({"ops": []}))
        .assert_error(404, "not_found");

    assert_eq!(
        snapshot(c, &id),
        before,
        "a failed edit changed the document"
    );

    // Every op kind works.
    let ok = patch(json!([
        {"op": "set", "path": "/name", "value": "Grace"},
        {"op": "insert", "path": "/list/-", "values": [3]},
        {"op": "remove", "path": "/list/0", "count": 1},
        {"op": "splice", "path": "/text", "index": 2, "delete": 0, "insert": "!"},
        {"op": "set", "path": "/count", "value": {"$counter": 1}},
        {"op": "increment", "path": "/count", "by": 4},
        {"op": "delete", "path": "/n"}
    ]))
    .ok(200);
    assert!(ok["heads"].is_array());
    assert_eq!(
        c.read(&id)["content"],
        json!({"name": "Grace", "list": [2, 3], "text": "hi!", "count": {"$counter": 5}})
    );
}

#[test]
fn counters_and_timestamps_survive_a_get_then_post() {
    let s = TestServer::start();
    let c = &s.client;
    let content =
        json!({"count": {"$counter": 3}, "at": {"$timestamp": 1_765_000_000_000_i64}, "n": 3});
    let id = c.create(content.clone());
    let read = c.read(&id)["content"].clone();
    assert_eq!(read, content);
    // Written back as read: still a counter (it increments) and still a timestamp.
    let copy = c.create(read);
    c.patch(
        &format!("/v1/docs/{copy}"),
        &json!({"ops": [{"op": "increment", "path": "/count", "by": 2}]}),
    )
    .ok(200);
    assert_eq!(
        c.read(&copy)["content"],
        json!({"count": {"$counter": 5}, "at": {"$timestamp": 1_765_000_000_000_i64}, "n": 3})
    );
}

#[test]
fn deleted_documents_answer_410_everywhere() {
    let s = TestServer::start();
    let c = &s.client;
    let id = c.create(json!({"a": 1}));
    let path = format!("/v1/docs/{id}");
    assert_eq!(c.delete(&path).status, 204);
    c.get(&path).assert_error(410, "deleted");
    c.patch(
        &path,
        &json!({"ops": [{"op": "set", "path": "/a", "value": 2}]}),
    )
    .assert_error(410, "deleted");
    c.get(&format!("{path}/export"))
        .assert_error(410, "deleted");
    c.patch(&format!("{path}/meta"), &json!({"title": "x"}))
        .assert_error(410, "deleted");
    // Deleting again is idempotent.
    assert_eq!(c.delete(&path).status, 204);
    // Gone from the list unless asked for.
    assert_eq!(c.get("/v1/docs").ok(200), json!([]));
    let all = c.get("/v1/docs?deleted=true").ok(200);
    assert_eq!(all[0]["id"], id);
    assert_eq!(all[0]["deleted"], true);
    c.delete(&format!("/v1/docs/{BAD_ID}"))
        .assert_error(400, "bad_document_id");
    c.delete(&format!("/v1/docs/{}", unknown_id(c)))
        .assert_error(404, "not_found");
    c.post(&format!("{path}/fetch"), &json!({}))
        .assert_error(410, "deleted");
}

#[test]
fn fetch_answers_for_documents_held_and_404_without_peers() {
    let s = TestServer::start();
    let c = &s.client;
    let id = c.create(json!({"a": 1}));
    let fetched = c.post(&format!("/v1/docs/{id}/fetch"), &json!({})).ok(200);
    assert_eq!(fetched["id"], id.as_str());
    assert_eq!(fetched["url"], format!("automerge:{id}"));
    assert_eq!(fetched["heads"], snapshot(c, &id).1);
    let unknown = unknown_id(c);
    let answer = c.post(&format!("/v1/docs/{unknown}/fetch"), &json!({}));
    answer.assert_error(404, "not_found");
    assert!(
        answer.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("no connected peer has it")),
        "{}",
        answer.json()
    );
    c.post(&format!("/v1/docs/{BAD_ID}/fetch"), &json!({}))
        .assert_error(400, "bad_document_id");
    assert_eq!(c.get(&format!("/v1/docs/{unknown}")).status, 404);
}

#[test]
fn deleted_document_history_and_conflicts() {
    let s = TestServer::start();
    let c = &s.client;
    let id = c.create(json!({"a": 1}));
    let path = format!("/v1/docs/{id}");
    assert_eq!(c.delete(&path).status, 204);
    for sub in ["conflicts", "history"] {
        let answer = c.get(&format!("{path}/{sub}"));
        answer.assert_error(410, "deleted");
    }
}

#[test]
fn import_export_round_trip_and_errors() {
    let s = TestServer::start();
    let c = &s.client;
    let id = c.create(json!({"guests": ["Ada"]}));
    let exported = c.get(&format!("/v1/docs/{id}/export"));
    assert_eq!(exported.status, 200);
    assert_eq!(exported.content_type, "application/octet-stream");
    let imported = c
        .call(
            "POST",
            "/v1/docs/import?title=Copy&priority=3",
            Some("application/octet-stream"),
            Some(exported.body.clone()),
        )
        .ok(201);
    let copy = imported["id"].as_str().expect("id");
    assert_ne!(copy, id);
    assert_eq!(c.read(copy)["content"], json!({"guests": ["Ada"]}));
    let list = c.get("/v1/docs").ok(200);
    let entry = list
        .as_array()
        .and_then(|l| l.iter().find(|d| d["id"] == copy))
        .cloned()
        .expect("listed");
    assert_eq!(
        (entry["title"].clone(), entry["priority"].clone()),
        (json!("Copy"), json!(3))
    );

    let count = || c.get("/v1/docs").ok(200).as_array().map_or(0, Vec::len);
    let docs_before = count();
    c.call(
        "POST",
        "/v1/docs/import",
        Some("application/octet-stream"),
        Some(b"garbage".to_vec()),
    )
    .assert_error(422, "invalid_document");
    c.call(
        "POST",
        "/v1/docs/import",
        Some("application/json"),
        Some(exported.body.clone()),
    )
    .assert_error(415, "unsupported_media_type");
    c.call(
        "POST",
        "/v1/docs/import?priority=high",
        Some("application/octet-stream"),
        Some(exported.body.clone()),
    )
    .assert_error(400, "bad_request");
    c.call(
        "POST",
        "/v1/docs/import",
        Some("application/octet-stream"),
        Some(vec![0; BODY_LIMIT + 1]),
    )
    .assert_error(413, "too_large");
    c.call(
        "POST",
        "/v1/docs/import",
        Some("application/octet-stream"),
        Some(Vec::new()),
    )
    .assert_error(422, "invalid_document");
    assert_eq!(count(), docs_before);

    c.get(&format!("/v1/docs/{BAD_ID}/export"))
        .assert_error(400, "bad_document_id");
    c.get(&format!("/v1/docs/{}/export", unknown_id(c)))
        .assert_error(404, "not_found");
}

#[test]
fn meta_updates_and_errors() {
    let s = TestServer::start();
    let c = &s.client;
    let id = c.create(json!({}));
    let path = format!("/v1/docs/{id}/meta");
    let summary = c
        .patch(&path, &json!({"title": "Seating", "priority": 9}))
        .ok(200);
    assert_eq!(summary["title"], "Seating");
    assert_eq!(summary["priority"], 9);
    let summary = c.patch(&path, &json!({"priority": 2})).ok(200);
    assert_eq!(
        (summary["title"].clone(), summary["priority"].clone()),
        (json!("Seating"), json!(2))
    );
    let summary = c.patch(&path, &json!({"title": null})).ok(200);
    assert_eq!(summary["title"], Value::Null);

    c.patch(&path, &json!({"title": 5}))
        .assert_error(400, "bad_json");
    c.patch(&path, &json!({"owner": "me"}))
        .assert_error(400, "bad_json");
    c.call(
        "PATCH",
        &path,
        Some("application/json"),
        Some(b"nope".to_vec()),
    )
    .assert_error(400, "bad_json");
    c.call("PATCH", &path, Some("text/plain"), Some(b"{}".to_vec()))
        .assert_error(415, "unsupported_media_type");
    c.patch(&format!("/v1/docs/{BAD_ID}/meta"), &json!({}))
        .assert_error(400, "bad_document_id");
    c.patch(
        &format!("/v1/docs/{}/meta", unknown_id(c)),
        &json!({"priority": 1}),
    )
    .assert_error(404, "not_found");
    let after = c.get("/v1/docs").ok(200);
    assert_eq!(
        (after[0]["title"].clone(), after[0]["priority"].clone()),
        (Value::Null, json!(2))
    );
}

#[test]
fn history_and_conflicts() {
    let s = TestServer::start();
    let c = &s.client;
    let id = c.create(json!({"a": 1}));
    c.patch(
        &format!("/v1/docs/{id}"),
        &json!({"ops": [{"op": "set", "path": "/a", "value": 2}], "message": "bump"}),
    )
    .ok(200);
    let history = c.get(&format!("/v1/docs/{id}/history")).ok(200);
    let entries = history.as_array().expect("list");
    assert_eq!(entries.len(), 2, "{history}");
    assert_eq!(entries[1]["message"], "bump");
    assert!(entries[1]["deps"].as_array().is_some_and(|d| d.len() == 1));
    assert!(
        entries[1]["time_ms"]
            .as_i64()
            .is_some_and(|t| t > 1_600_000_000_000)
    );
    let conflicts = c.get(&format!("/v1/docs/{id}/conflicts")).ok(200);
    assert_eq!(conflicts, json!({"current": [], "log": []}));
    for sub in ["history", "conflicts"] {
        c.get(&format!("/v1/docs/{BAD_ID}/{sub}"))
            .assert_error(400, "bad_document_id");
        c.get(&format!("/v1/docs/{}/{sub}", unknown_id(c)))
            .assert_error(404, "not_found");
    }
}

#[test]
fn unknown_routes_and_methods_are_json() {
    let s = TestServer::start();
    let c = &s.client;
    c.get("/v2/nothing").assert_error(404, "not_found");
    c.get("/v1/docs/a/b/c/d").assert_error(404, "not_found");
    c.call(
        "PUT",
        "/v1/docs",
        Some("application/json"),
        Some(b"{}".to_vec()),
    )
    .assert_error(405, "method_not_allowed");
    c.call(
        "POST",
        "/v1/status",
        Some("application/json"),
        Some(b"{}".to_vec()),
    )
    .assert_error(405, "method_not_allowed");
    c.get("/v1/status?docs=perhaps")
        .assert_error(400, "bad_request");
    c.get("/v1/events?doc=nope")
        .assert_error(400, "bad_document_id");
}

#[test]
fn status_peers_metrics_and_openapi() {
    let s = TestServer::start();
    let c = &s.client;
    let id = c.create(json!({"a": 1}));
    let status = c.get("/v1/status").ok(200);
    assert_eq!(status["documents"], 1);
    assert_eq!(status["health"], "offline");
    assert!(
        status["peer_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("12D3"))
    );
    assert!(
        status["listen_addrs"][0]
            .as_str()
            .is_some_and(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
    );
    assert_eq!(status["api_url"], c.base);
    assert_eq!(status["docs"][0]["id"], id);
    assert!(status["store_bytes"].as_u64().is_some_and(|b| b > 0));
    let cheap = c.get("/v1/status?docs=false").ok(200);
    assert!(cheap.get("docs").is_none());
    assert_eq!(c.get("/v1/peers").ok(200), json!([]));

    let metrics = c.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        metrics.content_type
    );
    let text = String::from_utf8(metrics.body).expect("utf-8");
    for name in [
        "peerdoc_documents 1",
        "peerdoc_documents_loaded",
        "peerdoc_peers_connected 0",
        "peerdoc_sync_latency_seconds_bucket{le=\"+Inf\"}",
        "peerdoc_bytes_sent_total",
        "peerdoc_bytes_received_total",
        "peerdoc_messages_sent_total",
        "peerdoc_messages_received_total",
        "peerdoc_conflicts_total 0",
        "peerdoc_sync_queue_depth",
        "peerdoc_storage_in_flight",
        "peerdoc_store_bytes",
        "peerdoc_storage_failing 0",
        "peerdoc_storage_write_failures_total 0",
        "peerdoc_http_requests_total{code=\"201\"} 1",
        "peerdoc_http_request_duration_seconds_bucket{le=\"0.1\"}",
        "peerdoc_http_request_duration_seconds_bucket{le=\"+Inf\"}",
        "# TYPE peerdoc_evictions counter",
        "peerdoc_evictions_total 0",
        "# EOF",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }

    let mut served = c.get("/v1/openapi.json").ok(200);
    let generated: Value = serde_json::from_str(&openapi_json()).expect("the OpenAPI is JSON");
    // The served copy names the address it is served on, whatever the port.
    assert_eq!(served["servers"], json!([{ "url": c.base }]));
    served["servers"] = generated["servers"].clone();
    assert_eq!(served, generated);
    assert!(
        generated["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    for (method, route) in ROUTES {
        assert!(
            generated["paths"][route][method].is_object(),
            "{method} {route} is not in the OpenAPI document"
        );
    }
    let documented: usize = generated["paths"]
        .as_object()
        .expect("paths")
        .values()
        .filter_map(Value::as_object)
        .map(|ops| ops.keys().filter(|k| *k != "parameters").count())
        .sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "the OpenAPI document has routes the router lacks"
    );
}

/// `docs/openapi.json` is the generated document, committed for people to read.
/// `UPDATE_OPENAPI=1` rewrites it.
#[test]
fn openapi_json_is_committed_as_generated() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = openapi_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the OpenAPI document the server generates (from \
         crates/peerdoc/src/api/ and the handlers' #[utoipa::path]); regenerate it with\n\n    \
         UPDATE_OPENAPI=1 cargo test -p peerdoc --test api_errors openapi\n\nand commit it"
    );
}

#[test]
fn events_stream_carries_patches() {
    let s = TestServer::start();
    let c = s.client.clone();
    let id = c.create(json!({"a": 1}));
    let other = c.create(json!({"b": 1}));
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let url = format!("{}/v1/events?doc={id}", c.base);
    std::thread::spawn(move || {
        let agent = ureq::Agent::new_with_defaults();
        let Ok(response) = agent
            .get(&url)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .call()
        else {
            return;
        };
        let reader = BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // The stream is open once the server counted the request; poll with edits until an
    // event arrives (the subscription starts when the handler runs).
    let mut event = None;
    let mut data = None;
    for round in 0..120 {
        c.patch(
            &format!("/v1/docs/{other}"),
            &json!({"ops": [{"op": "set", "path": "/b", "value": round}]}),
        )
        .ok(200);
        c.patch(
            &format!("/v1/docs/{id}"),
            &json!({"ops": [{"op": "set", "path": "/a", "value": round}]}),
        )
        .ok(200);
        while let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(500)) {
            if let Some(name) = line.strip_prefix("event: ") {
                event = Some(name.to_owned());
            } else if let Some(json) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str::<Value>(json).expect("data is JSON"));
                break;
            }
        }
        if data.is_some() {
            break;
        }
    }
    let data = data.expect("a change event within the hang guard");
    assert_eq!(event.as_deref(), Some("change"));
    assert_eq!(data["doc"], id, "the filter lets only {id} through: {data}");
    assert_eq!(data["origin"], "local");
    assert_eq!(data["paths"], json!(["/a"]));
    assert_eq!(data["patches"][0]["action"], "put");
    assert_eq!(data["patches"][0]["path"], "/a");
    assert!(data["patches"][0]["value"].is_number());
    assert!(data["heads"].as_array().is_some_and(|h| !h.is_empty()));
}
