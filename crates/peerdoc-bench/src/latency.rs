//! Item 4: how long a one-field edit on one daemon takes to be visible, and then durable,
//! on every other daemon (loopback, full mesh), for documents with long histories;
//! against a loopback TCP round trip plus a raw `fdatasync`, both measured in the run.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use automerge::AutoCommit;
use automerge::transaction::Transactable;
use peerdoc_node::EditOp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::nodes::{self, TempNode};
use crate::stats::Samples;

/// A document with `changes` changes, each setting one field: `save()` bytes.
pub(crate) fn history_doc(changes: usize) -> Vec<u8> {
    let mut doc = AutoCommit::new();
    for i in 0..changes.max(1) {
        // Cannot fail: ROOT is a map and the key is fixed.
        let _ = doc.put(automerge::ROOT, "counter", i as i64);
        if i % 100 == 0 {
            let _ = doc.put(automerge::ROOT, "note", format!("revision {i}"));
        }
        doc.commit();
    }
    doc.save()
}

/// Per-edit latencies until the edit was visible on every other daemon, and until it
/// was also durable there.
#[derive(Debug, Default)]
pub(crate) struct EditLatency {
    pub(crate) visible: Samples,
    pub(crate) durable: Samples,
    /// `edit()` on the writing daemon (local durable write).
    pub(crate) local: Samples,
}

/// Starts `daemons` nodes, connects them in a full mesh, imports `saved` on the first,
/// waits until all hold it, then times `edits` one-field edits.
pub(crate) async fn edit_latency(
    base: &Path,
    daemons: usize,
    saved: &[u8],
    edits: usize,
) -> anyhow::Result<EditLatency> {
    let mut nodes: Vec<TempNode> = Vec::with_capacity(daemons);
    for _ in 0..daemons {
        nodes.push(nodes::start_temp(base).await?);
    }
    let handles: Vec<_> = nodes.iter().map(|n| n.node.handle()).collect();
    for i in 0..daemons {
        for j in i + 1..daemons {
            nodes::connect(&handles[j], &handles[i]).await?;
        }
    }
    let mut receivers: Vec<_> = handles.iter().map(|h| h.subscribe()).collect();
    let doc = handles[0].import(saved.to_vec(), 0, None).await?;
    let (_, heads) = handles[0].read_with_heads(doc).await?;
    for i in 1..daemons {
        nodes::until_heads(&handles[i], &mut receivers[i], doc, &heads).await?;
    }
    let mut result = EditLatency::default();
    for e in 0..edits {
        // Fresh receivers so nothing from earlier edits is queued.
        let mut waits = Vec::with_capacity(daemons - 1);
        let mut subscribed: Vec<_> = handles.iter().map(|h| h.subscribe()).collect();
        let start = Instant::now();
        let new_heads = handles[0]
            .edit(
                doc,
                vec![EditOp::Set {
                    path: "/field".into(),
                    value: serde_json::json!(e),
                }],
                None,
            )
            .await?;
        result.local.push(start.elapsed());
        for (i, mut events) in subscribed.drain(..).enumerate().skip(1) {
            let handle = handles[i].clone();
            let heads = new_heads.clone();
            waits.push(tokio::spawn(async move {
                nodes::until_visible_and_durable(&handle, &mut events, doc, &heads).await
            }));
        }
        let (mut visible, mut durable) = (start, start);
        for wait in waits {
            let (v, d) = wait.await??;
            visible = visible.max(v);
            durable = durable.max(d);
        }
        result.visible.push(visible - start);
        result.durable.push(durable - start);
    }
    for node in nodes {
        node.node.shutdown().await;
    }
    Ok(result)
}

/// Round trips of a 64-byte message over a loopback TCP connection (Nagle off).
pub(crate) async fn loopback_rtt(samples: usize) -> anyhow::Result<Samples> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        loop {
            if socket.read_exact(&mut buf).await.is_err() {
                return Ok::<_, std::io::Error>(());
            }
            socket.write_all(&buf).await?;
        }
    });
    let mut client = tokio::net::TcpStream::connect(addr).await?;
    client.set_nodelay(true)?;
    let mut buf = [7u8; 64];
    let mut out = Samples::new();
    for _ in 0..samples {
        let start = Instant::now();
        client.write_all(&buf).await?;
        client.read_exact(&mut buf).await?;
        out.push(start.elapsed());
    }
    drop(client);
    let _ = echo.await;
    Ok(out)
}

/// Appends of `bytes` bytes to a file in `dir`, each followed by `fdatasync`.
pub(crate) fn raw_fdatasync(dir: &Path, samples: usize, bytes: usize) -> anyhow::Result<Samples> {
    let path = dir.join(format!("fdatasync-{}.log", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let payload = vec![0x5a; bytes];
    let mut out = Samples::new();
    for _ in 0..samples {
        let start = Instant::now();
        file.write_all(&payload)?;
        file.sync_data()?;
        out.push(start.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(out)
}

/// Sum of two percentiles, in ms (the baseline for one visible-and-durable edit).
pub(crate) fn sum_ms(a: &Samples, b: &Samples, p: f64) -> Option<f64> {
    Some(a.percentile_ms(p)? + b.percentile_ms(p)?)
}
