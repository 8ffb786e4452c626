//! A stand-in for the daemon's API (`docs/api.md`) while the real server is being built:
//! HTTP/1.1 on 127.0.0.1:0, one thread per connection, documents kept as automerge docs
//! and edited with `peerdoc_core::model`, so that answers have the contract's shape.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use automerge::Automerge;
use automerge::transaction::CommitOptions;
use peerdoc_core::DocumentId;
use peerdoc_core::model::{self, EditOp};
use serde_json::{Value, json};

pub(crate) const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Doc {
    doc: Automerge,
    title: Option<String>,
    priority: i64,
    deleted: bool,
}

#[derive(Default)]
struct State {
    docs: BTreeMap<String, Doc>,
    next: u64,
}

/// Serves until the process exits; writes `api.addr` and `api.token` into `data_dir`.
pub(crate) fn start(data_dir: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    std::fs::write(data_dir.join("api.addr"), format!("{url}\n")).expect("write api.addr");
    std::fs::write(data_dir.join("api.token"), format!("{TOKEN}\n")).expect("write api.token");
    let state = Arc::new(Mutex::new(State::default()));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = Arc::clone(&state);
            std::thread::spawn(move || {
                let _ = serve(stream, &state);
            });
        }
    });
    url
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    authorized: bool,
    body: Vec<u8>,
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (mut length, mut chunked, mut authorized) = (0usize, false, false);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "authorization" => authorized = value == format!("Bearer {TOKEN}"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect();
    let request = Request {
        method,
        path: path.to_owned(),
        query,
        authorized,
        body,
    };
    let mut stream = stream;
    if request.path == "/v1/events" && request.authorized {
        return events(&mut stream);
    }
    let (status, content_type, body) = match route(&request, state) {
        Ok((status, Reply::Json(value))) => {
            (status, "application/json", value.to_string().into_bytes())
        }
        Ok((status, Reply::Bytes(bytes))) => (status, "application/octet-stream", bytes),
        Ok((status, Reply::Empty)) => (status, "application/json", Vec::new()),
        Err((status, code, message)) => (
            status,
            "application/json",
            json!({"code": code, "message": message})
                .to_string()
                .into_bytes(),
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)?;
    stream.flush()
}

fn events(stream: &mut TcpStream) -> std::io::Result<()> {
    let events = [
        ": keepalive\n\n".to_owned(),
        "event: peer_connected\ndata: {\"peer_id\":\"12D3KooWPeer\"}\n\n".to_owned(),
        "event: change\ndata: {\"doc\":\"4NMNnkMhL8jXrdJ9jamS58PAVdXu\",\"heads\":[\"ab\"],\"origin\":\"local\",\"peer\":null,\"paths\":[\"/title\"],\"patches\":[]}\n\n".to_owned(),
    ];
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    )?;
    for event in events {
        stream.write_all(event.as_bytes())?;
        stream.flush()?;
    }
    Ok(())
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

enum Reply {
    Json(Value),
    Bytes(Vec<u8>),
    Empty,
}

type Answer = Result<(u16, Reply), (u16, &'static str, String)>;

fn route(request: &Request, state: &Mutex<State>) -> Answer {
    if !request.authorized {
        return Err((401, "unauthorized", "missing or wrong token".into()));
    }
    let mut state = state.lock().expect("state lock");
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let query = |key: &str| {
        request
            .query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["v1", "status"]) => Ok((200, Reply::Json(status(&state)))),
        ("GET", ["v1", "peers"]) => Ok((200, Reply::Json(json!([])))),
        ("GET", ["v1", "docs"]) => {
            let with_deleted = query("deleted").as_deref() == Some("true");
            let docs: Vec<Value> = state
                .docs
                .iter()
                .filter(|(_, d)| with_deleted || !d.deleted)
                .map(|(id, d)| summary(id, d))
                .collect();
            Ok((200, Reply::Json(Value::Array(docs))))
        }
        ("POST", ["v1", "docs"]) => {
            let body: Value = serde_json::from_slice(&request.body)
                .map_err(|e| (400, "bad_json", e.to_string()))?;
            let content = body.get("content").cloned().unwrap_or(json!({}));
            if !content.is_object() {
                return Err((400, "bad_json", "content must be an object".into()));
            }
            let mut doc = Automerge::new();
            let mut tx = doc.transaction();
            model::init_from_json(&mut tx, &content)
                .map_err(|e| (422, "invalid_change", e.to_string()))?;
            tx.commit_with(CommitOptions::default().with_time(1_763_774_249));
            let title = body.get("title").and_then(Value::as_str).map(str::to_owned);
            let priority = body.get("priority").and_then(Value::as_i64).unwrap_or(0);
            Ok((201, Reply::Json(insert(&mut state, doc, title, priority))))
        }
        ("POST", ["v1", "docs", "import"]) => {
            let doc = Automerge::load(&request.body).map_err(|e| {
                (
                    422,
                    "invalid_document",
                    format!("not an automerge document: {e}"),
                )
            })?;
            let title = query("title");
            let priority = query("priority").and_then(|p| p.parse().ok()).unwrap_or(0);
            Ok((201, Reply::Json(insert(&mut state, doc, title, priority))))
        }
        (method, ["v1", "docs", id, rest @ ..]) => {
            let id = DocumentId::parse(id)
                .map_err(|e| (400, "bad_document_id", e.to_string()))?
                .to_string();
            let doc = state
                .docs
                .get_mut(&id)
                .ok_or_else(|| (404, "not_found", format!("no document {id}")))?;
            if doc.deleted {
                return Err((410, "deleted", format!("document {id} was deleted")));
            }
            match (method, rest) {
                ("GET", []) => {
                    let at: Vec<automerge::ChangeHash> = query("heads")
                        .map(|h| h.split(',').filter_map(|h| h.parse().ok()).collect())
                        .unwrap_or_default();
                    let (heads, content) = if at.is_empty() {
                        (heads(&mut doc.doc), model::to_json(&doc.doc))
                    } else {
                        let content = model::try_to_json_at(&doc.doc, &at)
                            .map_err(|e| (404, "unknown_heads", e.to_string()))?;
                        (at.iter().map(ToString::to_string).collect(), content)
                    };
                    Ok((
                        200,
                        Reply::Json(json!({"id": id, "url": format!("automerge:{id}"),
                            "heads": heads, "content": content})),
                    ))
                }
                ("GET", ["export"]) => Ok((200, Reply::Bytes(doc.doc.save()))),
                ("PATCH", []) => {
                    let body: Value = serde_json::from_slice(&request.body)
                        .map_err(|e| (400, "bad_json", e.to_string()))?;
                    let ops: Vec<EditOp> = serde_json::from_value(body["ops"].clone())
                        .map_err(|e| (400, "bad_json", e.to_string()))?;
                    let mut tx = doc.doc.transaction();
                    model::apply_ops(&mut tx, &ops)
                        .map_err(|e| (422, "invalid_change", e.to_string()))?;
                    let mut options = CommitOptions::default().with_time(1_763_774_300);
                    if let Some(message) = body.get("message").and_then(Value::as_str) {
                        options = options.with_message(message.to_owned());
                    }
                    tx.commit_with(options);
                    Ok((200, Reply::Json(json!({"heads": heads(&mut doc.doc)}))))
                }
                ("DELETE", []) => {
                    doc.deleted = true;
                    Ok((204, Reply::Empty))
                }
                ("GET", ["history"]) => {
                    let history: Vec<Value> = model::history(&doc.doc)
                        .into_iter()
                        .map(|c| {
                            json!({"hash": c.hash.to_string(), "actor": c.actor, "seq": c.seq,
                                "time_ms": c.time * 1000, "message": c.message,
                                "deps": c.deps.iter().map(ToString::to_string).collect::<Vec<_>>()})
                        })
                        .collect();
                    Ok((200, Reply::Json(Value::Array(history))))
                }
                ("GET", ["conflicts"]) => Ok((
                    200,
                    Reply::Json(json!({"current": model::conflicts(&doc.doc), "log": []})),
                )),
                _ => Err((404, "not_found", "no such route".into())),
            }
        }
        _ => Err((404, "not_found", "no such route".into())),
    }
}

fn heads(doc: &mut Automerge) -> Vec<String> {
    doc.get_heads().iter().map(ToString::to_string).collect()
}

fn insert(state: &mut State, doc: Automerge, title: Option<String>, priority: i64) -> Value {
    state.next += 1;
    let mut bytes = [0x42u8; 16];
    bytes[8..].copy_from_slice(&state.next.to_be_bytes());
    let id = DocumentId::from_bytes(bytes).to_string();
    let mut doc = Doc {
        doc,
        title,
        priority,
        deleted: false,
    };
    let heads = heads(&mut doc.doc);
    state.docs.insert(id.clone(), doc);
    json!({"id": id, "url": format!("automerge:{id}"), "heads": heads})
}

fn summary(id: &str, doc: &Doc) -> Value {
    json!({"id": id, "url": format!("automerge:{id}"), "title": doc.title, "priority": doc.priority,
        "size": 100, "created_ms": 1_763_774_249_000u64, "last_change_ms": 1_763_774_249_000u64,
        "deleted": doc.deleted, "heads": doc.doc.get_heads().iter().map(ToString::to_string).collect::<Vec<_>>()})
}

fn status(state: &State) -> Value {
    json!({
        "peer_id": "12D3KooWFake", "storage_id": "fake", "version": "0.1.0",
        "listen_addrs": ["/ip4/127.0.0.1/tcp/4001"], "api_url": "http://127.0.0.1",
        "documents": state.docs.len(), "deleted": state.docs.values().filter(|d| d.deleted).count(),
        "loaded": 0, "storage_in_flight": 0, "store_bytes": 4096, "health": "offline",
        "peers": [], "docs": state.docs.iter().map(|(id, d)| json!({"id": id, "title": d.title, "priority": d.priority, "peers": []})).collect::<Vec<_>>()
    })
}
