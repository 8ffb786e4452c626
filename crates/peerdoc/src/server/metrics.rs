//! `GET /metrics`: OpenMetrics text, encoded by `prometheus-client`.
//!
//! The HTTP counters and the request-duration histogram are the crate's own metrics,
//! updated as requests are answered. Everything else is read at scrape time (the node's
//! counters and sync-latency histogram, the status, the cloud dialers) and handed to the
//! crate's encoder as constant metrics by one [`Collector`], so names, types, escaping
//! and the histogram layout all come from the crate. Counters are named without their
//! `_total`, which the encoder adds.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use peerdoc_node::HistogramSnapshot;

use super::{ApiError, AppState};

/// Upper bounds (seconds) of the HTTP request duration histogram.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A label set of one label.
type Labels = Vec<(String, String)>;

/// Requests served, by status, and how long they took.
#[derive(Debug, Clone)]
pub(crate) struct HttpMetrics {
    requests: Family<Labels, Counter>,
    durations: Histogram,
}

impl HttpMetrics {
    pub(crate) fn new() -> Self {
        Self {
            requests: Family::default(),
            durations: Histogram::new(HTTP_BUCKETS.iter().copied()),
        }
    }

    pub(crate) fn observe(&self, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![("code".to_owned(), code.to_string())])
            .inc();
        self.durations.observe(seconds);
    }
}

/// One metric read at scrape time.
#[derive(Debug)]
enum Value {
    Gauge(i64),
    Counter(u64),
    /// Per label value (the label's name is the series' `label`).
    Gauges(&'static str, Vec<(String, f64)>),
    Counters(&'static str, Vec<(String, u64)>),
    Histogram(HistogramSnapshot),
}

/// Everything read at scrape time, encoded as constant metrics.
#[derive(Debug, Default)]
struct Scrape(Vec<(&'static str, &'static str, Value)>);

impl Scrape {
    fn add(&mut self, name: &'static str, help: &'static str, value: Value) {
        self.0.push((name, help, value));
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in &self.0 {
            let kind = match value {
                Value::Counter(_) | Value::Counters(..) => MetricType::Counter,
                Value::Histogram(_) => MetricType::Histogram,
                _ => MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            match value {
                Value::Gauge(v) => ConstGauge::new(*v).encode(metric)?,
                Value::Counter(v) => ConstCounter::new(*v).encode(metric)?,
                Value::Gauges(label, series) => {
                    for (labelled, v) in series {
                        let labels: Labels = vec![((*label).to_owned(), labelled.clone())];
                        ConstGauge::new(*v).encode(metric.encode_family(&labels)?)?;
                    }
                }
                Value::Counters(label, series) => {
                    for (labelled, v) in series {
                        let labels: Labels = vec![((*label).to_owned(), labelled.clone())];
                        ConstCounter::new(*v).encode(metric.encode_family(&labels)?)?;
                    }
                }
                Value::Histogram(h) => {
                    // The encoder takes per-bucket counts and sums them up itself;
                    // the snapshot's are cumulative, and its last bucket is +Inf.
                    let mut buckets = Vec::with_capacity(h.buckets.len() + 1);
                    let mut below = 0;
                    for (bound, cumulative) in &h.buckets {
                        buckets.push((*bound, cumulative.saturating_sub(below)));
                        below = *cumulative;
                    }
                    buckets.push((f64::INFINITY, h.count.saturating_sub(below)));
                    metric.encode_histogram::<Labels>(h.sum, h.count, &buckets, None)?;
                }
            }
        }
        Ok(())
    }
}

/// Prometheus metrics (OpenMetrics text)
///
/// Encoded by the `prometheus-client` crate; the body ends with `# EOF`. The metrics are
/// listed in `docs/api.md`.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "meta",
    responses(
        (status = 200, description = "Metrics", body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
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
    let live = status.documents.saturating_sub(status.deleted);
    let mut scrape = Scrape::default();
    use Value::{Counter as C, Gauge as G};
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    scrape.add(
        "peerdoc_documents",
        "Live documents (tombstones excluded).",
        G(count(live)),
    );
    scrape.add(
        "peerdoc_documents_deleted",
        "Document tombstones.",
        G(count(status.deleted)),
    );
    scrape.add(
        "peerdoc_documents_loaded",
        "Documents held in memory.",
        G(count(status.loaded)),
    );
    scrape.add(
        "peerdoc_evictions",
        "Documents evicted from memory.",
        C(status.evictions),
    );
    scrape.add(
        "peerdoc_storage_failing",
        "1 while the store's writes fail (the disk is full, or the store failed), else 0.",
        G(i64::from(node.storage_failure.is_some())),
    );
    scrape.add(
        "peerdoc_store_rollback_documents",
        "Documents the store found had gone back (lost acknowledged writes) the last time it \
         did, at this start or an earlier one; 0 if it never did.",
        G(count(
            node.store_rollback
                .as_ref()
                .map_or(0, |r| r.documents.len()),
        )),
    );
    scrape.add(
        "peerdoc_storage_write_failures",
        "Store writes that failed (refused for a full disk included).",
        C(node.storage_write_failures),
    );
    scrape.add(
        "peerdoc_peers_connected",
        "Peers with an open libp2p connection.",
        G(count(connected)),
    );
    scrape.add(
        "peerdoc_sync_latency_seconds",
        "Seconds from a local change to the first peer reporting heads that include it.",
        Value::Histogram(node.sync_latency.clone()),
    );
    scrape.add(
        "peerdoc_bytes_sent",
        "Sync frame bytes sent.",
        C(node.bytes_sent),
    );
    scrape.add(
        "peerdoc_bytes_received",
        "Sync frame bytes received.",
        C(node.bytes_received),
    );
    scrape.add(
        "peerdoc_messages_sent",
        "Sync frames sent.",
        C(node.messages_sent),
    );
    scrape.add(
        "peerdoc_messages_received",
        "Sync frames received.",
        C(node.messages_received),
    );
    scrape.add(
        "peerdoc_conflicts",
        "Conflicts detected (first sightings).",
        C(node.conflicts),
    );
    scrape.add(
        "peerdoc_local_changes",
        "Local changes applied.",
        C(node.local_changes),
    );
    scrape.add(
        "peerdoc_remote_changes",
        "Changes from peers applied.",
        C(node.remote_changes),
    );
    scrape.add(
        "peerdoc_unacknowledged_documents",
        "Documents whose latest local change no peer has acknowledged.",
        G(count(node.pending_acks)),
    );
    scrape.add(
        "peerdoc_sync_queue_depth",
        "Documents queued for sync, summed over peers.",
        G(count(queued)),
    );
    scrape.add(
        "peerdoc_active_syncs",
        "Documents being synced now, summed over peers.",
        G(count(active)),
    );
    scrape.add(
        "peerdoc_storage_in_flight",
        "Storage operations not yet completed.",
        G(count(status.storage_in_flight)),
    );
    scrape.add(
        "peerdoc_store_bytes",
        "Bytes the store occupies on disk.",
        G(i64::try_from(store_bytes).unwrap_or(i64::MAX)),
    );
    sync_socket_metrics(&mut scrape, &state);
    cloud_metrics(&mut scrape, &state);
    let receipts = super::receipts::summarise(&state.node.list().await?);
    scrape.add(
        "peerdoc_cloud_receipts",
        "Live documents by cloud receipt: confirmed (stored by the cloud at the heads held here), reported (only a stock sync server's word), unconfirmed.",
        Value::Gauges(
            "status",
            vec![
                ("confirmed".into(), receipts.confirmed as f64),
                ("reported".into(), receipts.reported as f64),
                ("unconfirmed".into(), receipts.unconfirmed as f64),
            ],
        ),
    );
    scrape.add(
        "peerdoc_safe_to_wipe",
        "1 when every live document is confirmed stored by the cloud as it is here.",
        G(i64::from(receipts.safe_to_wipe)),
    );
    let mut registry = Registry::default();
    registry.register(
        "peerdoc_http_requests",
        // The registry adds the final period.
        "HTTP requests answered, by status code",
        state.http.requests.clone(),
    );
    registry.register(
        "peerdoc_http_request_duration_seconds",
        "Seconds to answer an HTTP request (event streams: until the stream began)",
        state.http.durations.clone(),
    );
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).map_err(|_| {
        ApiError::from_status(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

fn sync_socket_metrics(scrape: &mut Scrape, state: &AppState) {
    use std::sync::atomic::Ordering::Relaxed;
    let sockets = &state.sync_sockets;
    scrape.add(
        "peerdoc_sync_sockets_open",
        "automerge-repo WebSocket sessions on /v1/sync now.",
        Value::Gauge(i64::try_from(sockets.open.load(Relaxed)).unwrap_or(i64::MAX)),
    );
    scrape.add(
        "peerdoc_sync_sockets_opened",
        "automerge-repo WebSocket sessions accepted on /v1/sync.",
        Value::Counter(sockets.opened.load(Relaxed)),
    );
    scrape.add(
        "peerdoc_sync_sockets_protocol_errors",
        "/v1/sync sessions closed for text, oversized or undecodable frames.",
        Value::Counter(sockets.closed_for_protocol_errors.load(Relaxed)),
    );
}

/// One series per cloud endpoint, labelled with it.
fn cloud_metrics(scrape: &mut Scrape, state: &AppState) {
    let Some(cloud) = &state.config.cloud else {
        return;
    };
    let reports = cloud.snapshot();
    let gauges = |column: fn(&crate::cloud::EndpointReport) -> f64| {
        Value::Gauges(
            "endpoint",
            reports
                .iter()
                .map(|r| (r.endpoint.clone(), column(r)))
                .collect(),
        )
    };
    let counters = |column: fn(&crate::cloud::EndpointReport) -> u64| {
        Value::Counters(
            "endpoint",
            reports
                .iter()
                .map(|r| (r.endpoint.clone(), column(r)))
                .collect(),
        )
    };
    scrape.add(
        "peerdoc_cloud_connected",
        "1 while the cloud endpoint is connected.",
        gauges(|r| f64::from(u8::from(r.connected))),
    );
    scrape.add(
        "peerdoc_cloud_breaker_open",
        "1 while the endpoint's circuit breaker is open (half-open counts as open).",
        gauges(|r| {
            f64::from(u8::from(!matches!(
                r.breaker,
                peerdoc_core::endpoint::Breaker::Closed { .. }
            )))
        }),
    );
    scrape.add(
        "peerdoc_cloud_next_attempt_seconds",
        "Seconds until the next attempt (0 while connected).",
        gauges(|r| r.next_attempt_in_ms.unwrap_or(0) as f64 / 1000.0),
    );
    scrape.add(
        "peerdoc_cloud_attempts",
        "Connection attempts to the cloud endpoint.",
        counters(|r| r.attempts),
    );
    scrape.add(
        "peerdoc_cloud_failures",
        "Failed connection attempts to the cloud endpoint.",
        counters(|r| r.failures_total),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(scrape: Scrape) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out
    }

    #[test]
    fn a_histogram_snapshot_keeps_its_cumulative_buckets_and_ends_in_inf() {
        let mut scrape = Scrape::default();
        scrape.add(
            "t_seconds",
            "help",
            Value::Histogram(HistogramSnapshot {
                buckets: vec![(0.1, 2), (1.0, 5)],
                count: 6,
                sum: 3.0,
            }),
        );
        let text = encoded(scrape);
        for line in [
            "# TYPE t_seconds histogram",
            "t_seconds_bucket{le=\"0.1\"} 2\n",
            "t_seconds_bucket{le=\"1.0\"} 5\n",
            "t_seconds_bucket{le=\"+Inf\"} 6\n",
            "t_seconds_count 6\n",
            "t_seconds_sum 3.0\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }

    #[test]
    fn labelled_series_are_escaped_and_counters_end_in_total() {
        let mut scrape = Scrape::default();
        scrape.add(
            "t_attempts",
            "help",
            Value::Counters("endpoint", vec![("ws://x/\"q\"".into(), 3)]),
        );
        let text = encoded(scrape);
        assert!(
            text.contains("t_attempts_total{endpoint=\"ws://x/\\\"q\\\"\"} 3\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
