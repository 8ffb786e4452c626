//! `/v1/sync` refuses what it must: a missing or wrong token, a web page's `Origin`
//! that is not allowed, text frames, undecodable and oversized messages. Each refusal
//! says why, and the daemon keeps serving the next client.
//!
//! An in-process node (loopback, mDNS off) and server on 127.0.0.1:0; a tungstenite
//! client. Timeouts are hang guards only.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use peerdoc::server::{AppState, ServerConfig, serve};
use peerdoc_core::PeerId;
use peerdoc_core::wire::Message as Wire;
use peerdoc_node::{Node, NodeConfig};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest as _};

const GUARD: Duration = Duration::from_secs(60);
const TOKEN: &str = "sync-socket-test-token";

struct Served {
    node: Node,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

async fn serve_node(tune: impl FnOnce(&mut ServerConfig)) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = NodeConfig::loopback(dir.path());
    assert!(!config.net.enable_mdns);
    let node = Node::start(config).await.expect("node");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut server = ServerConfig::new(TOKEN.into(), format!("http://{addr}"));
    server.allowed_origins = vec!["http://localhost:5173".into()];
    server.max_sync_message_bytes = 64 * 1024;
    tune(&mut server);
    tokio::spawn(serve(
        listener,
        AppState::new(node.handle(), server),
        std::future::pending(),
    ));
    Served {
        node,
        addr,
        _dir: dir,
    }
}

fn request(
    addr: std::net::SocketAddr,
    query: &str,
    origin: Option<&str>,
) -> tungstenite::handshake::client::Request {
    let mut request = format!("ws://{addr}/v1/sync{query}")
        .into_client_request()
        .expect("request");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("header"));
    }
    request
}

/// The HTTP status of a refused upgrade.
async fn refused(addr: std::net::SocketAddr, query: &str, origin: Option<&str>) -> (u16, String) {
    match tokio_tungstenite::connect_async(request(addr, query, origin)).await {
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("{query} with origin {origin:?} was accepted"),
    }
}

fn join() -> Message {
    Message::Binary(
        Wire::Join {
            sender_id: PeerId::new("rust-test".to_owned()),
            supported_protocol_versions: vec!["1".to_owned()],
            metadata: None,
        }
        .encode()
        .into(),
    )
}

/// Reads until the server closes; returns the close frame's code and reason.
async fn close_of<S>(socket: &mut S) -> (u16, String)
where
    S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(GUARD, async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(Some(frame))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Ok(Message::Close(None)) | Err(_) => return (0, String::new()),
                Ok(_) => {}
            }
        }
        (0, String::new())
    })
    .await
    .expect("the server closes the socket")
}

/// A well-behaved client still gets `peer` in reply to `join`.
async fn still_serves(addr: std::net::SocketAddr) {
    let (mut socket, _) =
        tokio_tungstenite::connect_async(request(addr, &format!("?token={TOKEN}"), None))
            .await
            .expect("connect");
    socket.send(join()).await.expect("send join");
    let reply = tokio::time::timeout(GUARD, socket.next())
        .await
        .expect("a reply")
        .expect("a message")
        .expect("no error");
    let Message::Binary(bytes) = reply else {
        panic!("expected binary, got {reply:?}")
    };
    assert_eq!(
        Wire::decode(&bytes, 1 << 20).expect("decodes").type_name(),
        "peer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_origin_are_checked_before_the_upgrade() {
    let s = serve_node(|_| {}).await;
    let (status, body) = refused(s.addr, "", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("?token="), "{body}");
    assert_eq!(refused(s.addr, "?token=wrong", None).await.0, 401);
    let (status, body) = refused(
        s.addr,
        &format!("?token={TOKEN}"),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("forbidden_origin") && body.contains("allowed_origins"),
        "{body}"
    );

    // An allowed origin and a non-browser client (no Origin) both get through.
    let (mut page, _) = tokio_tungstenite::connect_async(request(
        s.addr,
        &format!("?token={TOKEN}"),
        Some("http://localhost:5173"),
    ))
    .await
    .expect("allowed origin connects");
    page.send(join()).await.expect("join");
    still_serves(s.addr).await;
    s.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_garbage_and_oversized_frames_close_with_a_reason() {
    let s = serve_node(|_| {}).await;
    let url = format!("?token={TOKEN}");

    let (mut socket, _) = tokio_tungstenite::connect_async(request(s.addr, &url, None))
        .await
        .expect("connect");
    socket
        .send(Message::Text("{\"type\":\"join\"}".into()))
        .await
        .expect("send");
    let (code, reason) = close_of(&mut socket).await;
    assert_eq!(code, 1003, "{reason}");
    assert!(reason.contains("binary"), "{reason}");

    let (mut socket, _) = tokio_tungstenite::connect_async(request(s.addr, &url, None))
        .await
        .expect("connect");
    socket
        .send(Message::Binary(b"\xff\x00 not cbor".to_vec().into()))
        .await
        .expect("send");
    let (code, reason) = close_of(&mut socket).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(!reason.is_empty());

    let (mut socket, _) = tokio_tungstenite::connect_async(request(s.addr, &url, None))
        .await
        .expect("connect");
    let _ = socket
        .send(Message::Binary(vec![0u8; 200 * 1024].into()))
        .await;
    let (code, reason) = close_of(&mut socket).await;
    assert_eq!(code, 1009, "{reason}");

    still_serves(s.addr).await;
    // Nothing a bad client sent became a document.
    assert!(s.node.list().await.expect("list").is_empty());
    s.node.shutdown().await;
}
