//! `GET /metrics`: Prometheus text exposition (format 0.0.4), written by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use peerdoc_node::HistogramSnapshot;

use super::{ApiError, AppState};

/// Upper bounds (seconds) of the HTTP request duration histogram.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests served, by status, and how long they took.
#[derive(Debug)]
pub(crate) struct HttpMetrics {
    inner: Mutex<HttpInner>,
}

#[derive(Debug)]
struct HttpInner {
    by_code: BTreeMap<u16, u64>,
    /// Per bucket, not cumulative; the last is `+Inf`.
    buckets: Vec<u64>,
    sum: f64,
}

impl HttpMetrics {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(HttpInner {
                by_code: BTreeMap::new(),
                buckets: vec![0; HTTP_BUCKETS.len() + 1],
                sum: 0.0,
            }),
        }
    }

    pub(crate) fn observe(&self, code: u16, seconds: f64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        *inner.by_code.entry(code).or_default() += 1;
        let index = HTTP_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(HTTP_BUCKETS.len());
        if let Some(bucket) = inner.buckets.get_mut(index) {
            *bucket += 1;
        }
        inner.sum += seconds;
    }

    fn snapshot(&self) -> (BTreeMap<u16, u64>, HistogramSnapshot) {
        let Ok(inner) = self.inner.lock() else {
            return (
                BTreeMap::new(),
                HistogramSnapshot {
                    buckets: Vec::new(),
                    count: 0,
                    sum: 0.0,
                },
            );
        };
        let mut cumulative = 0;
        let mut buckets = Vec::new();
        for (bound, count) in HTTP_BUCKETS.iter().zip(&inner.buckets) {
            cumulative += count;
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + inner.buckets.last().copied().unwrap_or(0);
        (
            inner.by_code.clone(),
            HistogramSnapshot {
                buckets,
                count,
                sum: inner.sum,
            },
        )
    }
}

/// `GET /metrics`.
pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let status = state.node.status().await?;
    let node = state.node.metrics();
    let store_bytes = super::status::store_bytes(&state).await;
    let connected = status.peers.iter().filter(|p| p.net.is_some()).count();
    let queued: usize = status
        .peers
        .iter()
        .filter_map(|p| p.sync.as_ref())
        .map(|s| s.queued_syncs)
        .sum();
    let active: usize = status
        .peers
        .iter()
        .filter_map(|p| p.sync.as_ref())
        .map(|s| s.active_syncs)
        .sum();
    let mut out = String::new();
    let live = status.documents.saturating_sub(status.deleted);
    gauge(
        &mut out,
        "peerdoc_documents",
        "Live documents (tombstones excluded).",
        live as f64,
    );
    gauge(
        &mut out,
        "peerdoc_documents_deleted",
        "Document tombstones.",
        status.deleted as f64,
    );
    gauge(
        &mut out,
        "peerdoc_documents_loaded",
        "Documents held in memory.",
        status.loaded as f64,
    );
    counter(
        &mut out,
        "peerdoc_evictions_total",
        "Documents evicted from memory.",
        status.evictions,
    );
    gauge(
        &mut out,
        "peerdoc_peers_connected",
        "Peers with an open libp2p connection.",
        connected as f64,
    );
    histogram(
        &mut out,
        "peerdoc_sync_latency_seconds",
        "Seconds from a local change to the first peer reporting heads that include it.",
        &node.sync_latency,
    );
    counter(
        &mut out,
        "peerdoc_bytes_sent_total",
        "Sync frame bytes sent.",
        node.bytes_sent,
    );
    counter(
        &mut out,
        "peerdoc_bytes_received_total",
        "Sync frame bytes received.",
        node.bytes_received,
    );
    counter(
        &mut out,
        "peerdoc_messages_sent_total",
        "Sync frames sent.",
        node.messages_sent,
    );
    counter(
        &mut out,
        "peerdoc_messages_received_total",
        "Sync frames received.",
        node.messages_received,
    );
    counter(
        &mut out,
        "peerdoc_conflicts_total",
        "Conflicts detected (first sightings).",
        node.conflicts,
    );
    counter(
        &mut out,
        "peerdoc_local_changes_total",
        "Local changes applied.",
        node.local_changes,
    );
    counter(
        &mut out,
        "peerdoc_remote_changes_total",
        "Changes from peers applied.",
        node.remote_changes,
    );
    gauge(
        &mut out,
        "peerdoc_unacknowledged_documents",
        "Documents whose latest local change no peer has acknowledged.",
        node.pending_acks as f64,
    );
    gauge(
        &mut out,
        "peerdoc_sync_queue_depth",
        "Documents queued for sync, summed over peers.",
        queued as f64,
    );
    gauge(
        &mut out,
        "peerdoc_active_syncs",
        "Documents being synced now, summed over peers.",
        active as f64,
    );
    gauge(
        &mut out,
        "peerdoc_storage_in_flight",
        "Storage operations not yet completed.",
        status.storage_in_flight as f64,
    );
    gauge(
        &mut out,
        "peerdoc_store_bytes",
        "Bytes the store occupies on disk.",
        store_bytes as f64,
    );
    sync_socket_metrics(&mut out, &state);
    cloud_metrics(&mut out, &state);
    let receipts = super::receipts::ReceiptsJson::new(&state.node.list().await?);
    let _ = writeln!(
        out,
        "# HELP peerdoc_cloud_receipts Live documents by cloud receipt: confirmed (stored by the cloud at the heads held here), reported (only a stock sync server's word), unconfirmed.\n# TYPE peerdoc_cloud_receipts gauge"
    );
    for (status, count) in [
        ("confirmed", receipts.confirmed),
        ("reported", receipts.reported),
        ("unconfirmed", receipts.unconfirmed),
    ] {
        let _ = writeln!(out, "peerdoc_cloud_receipts{{status=\"{status}\"}} {count}");
    }
    gauge(
        &mut out,
        "peerdoc_safe_to_wipe",
        "1 when every live document is confirmed stored by the cloud as it is here.",
        f64::from(u8::from(receipts.safe_to_wipe)),
    );
    let (by_code, durations) = state.http.snapshot();
    let _ = writeln!(
        out,
        "# HELP peerdoc_http_requests_total HTTP requests answered, by status code."
    );
    let _ = writeln!(out, "# TYPE peerdoc_http_requests_total counter");
    for (code, count) in by_code {
        let _ = writeln!(
            out,
            "peerdoc_http_requests_total{{code=\"{code}\"}} {count}"
        );
    }
    histogram(
        &mut out,
        "peerdoc_http_request_duration_seconds",
        "Seconds to answer an HTTP request (event streams: until the stream began).",
        &durations,
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

fn sync_socket_metrics(out: &mut String, state: &AppState) {
    use std::sync::atomic::Ordering::Relaxed;
    let sockets = &state.sync_sockets;
    gauge(
        out,
        "peerdoc_sync_sockets_open",
        "automerge-repo WebSocket sessions on /v1/sync now.",
        sockets.open.load(Relaxed) as f64,
    );
    counter(
        out,
        "peerdoc_sync_sockets_opened_total",
        "automerge-repo WebSocket sessions accepted on /v1/sync.",
        sockets.opened.load(Relaxed),
    );
    counter(
        out,
        "peerdoc_sync_sockets_protocol_errors_total",
        "/v1/sync sessions closed for text, oversized or undecodable frames.",
        sockets.closed_for_protocol_errors.load(Relaxed),
    );
}

/// One series per cloud endpoint, labelled with it.
fn cloud_metrics(out: &mut String, state: &AppState) {
    let Some(cloud) = &state.config.cloud else {
        return;
    };
    let reports = cloud.snapshot();
    type Column = fn(&crate::cloud::EndpointReport) -> f64;
    let series: [(&str, &str, &str, Column); 5] = [
        (
            "peerdoc_cloud_connected",
            "gauge",
            "1 while the cloud endpoint is connected.",
            |r| f64::from(u8::from(r.connected)),
        ),
        (
            "peerdoc_cloud_breaker_open",
            "gauge",
            "1 while the endpoint's circuit breaker is open (half-open counts as open).",
            |r| {
                f64::from(u8::from(!matches!(
                    r.breaker,
                    peerdoc_core::endpoint::Breaker::Closed { .. }
                )))
            },
        ),
        (
            "peerdoc_cloud_next_attempt_seconds",
            "gauge",
            "Seconds until the next attempt (0 while connected).",
            |r| r.next_attempt_in_ms.unwrap_or(0) as f64 / 1000.0,
        ),
        (
            "peerdoc_cloud_attempts_total",
            "counter",
            "Connection attempts to the cloud endpoint.",
            |r| r.attempts as f64,
        ),
        (
            "peerdoc_cloud_failures_total",
            "counter",
            "Failed connection attempts to the cloud endpoint.",
            |r| r.failures_total as f64,
        ),
    ];
    for (name, kind, help, column) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for report in &reports {
            let endpoint = report.endpoint.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{endpoint=\"{endpoint}\"}} {}", column(report));
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, count) in &h.buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum);
    let _ = writeln!(out, "{name}_count {}", h.count);
}
