//! `/health`, `/v1/status`, `/v1/peers`.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use peerdoc_net::TransportKind;
use peerdoc_node::{DocumentSync, PeerStatus};
use serde::Serialize;
use serde_json::{Value, json};

use super::error::QueryPairs;
use super::{ApiError, AppState};

/// A peer is healthy when heard from within this long (with a sync stream open).
const HEALTHY_SEEN: Duration = Duration::from_secs(15);
/// A peer not heard from within this long is offline.
const OFFLINE_SEEN: Duration = Duration::from_secs(60);
/// A round trip slower than this makes a peer degraded.
const SLOW_RTT: Duration = Duration::from_secs(1);

/// `GET /health`.
pub(super) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.is_stopping() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        )
    } else {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    }
}

/// One peer, as `/v1/peers` and `/v1/status` show it.
#[derive(Debug, Serialize)]
pub(crate) struct PeerJson {
    peer_id: String,
    /// The device's name in the team, when it is a member.
    name: Option<String>,
    /// Its role in the team (none once removed).
    role: Option<String>,
    addrs: Vec<String>,
    transport: Option<&'static str>,
    connected: bool,
    sync_stream: bool,
    peerdoc: bool,
    rtt_ms: Option<f64>,
    bytes_in: u64,
    bytes_out: u64,
    messages_in: u64,
    messages_out: u64,
    queued_syncs: usize,
    active_syncs: usize,
    last_seen_ms: Option<u64>,
    connected_since_ms: Option<u64>,
    /// It was connected and left (`last_seen_ms` is when).
    departed: bool,
    /// Documents (ids) it is known to miss; filled by [`PeerJson::with_missing`].
    missing_docs: Vec<String>,
    health: &'static str,
    /// For a peer seen but not connected: why, in words, and when it last failed.
    not_connected: Option<String>,
    not_connected_since_ms: Option<u64>,
}

pub(crate) fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl PeerJson {
    pub(crate) fn new(status: &PeerStatus, now: SystemTime) -> Self {
        let net = status.net.as_ref();
        let sync = status.sync.as_ref();
        let seen_ago = net.map(|n| now.duration_since(n.last_seen).unwrap_or_default());
        let sync_stream = net.is_some_and(|n| n.sync_stream);
        let slow = net.and_then(|n| n.rtt).is_some_and(|rtt| rtt > SLOW_RTT);
        let health = match seen_ago {
            None => "offline",
            Some(ago) if ago >= OFFLINE_SEEN => "offline",
            Some(ago) if sync_stream && ago < HEALTHY_SEEN && !slow => "healthy",
            Some(_) => "degraded",
        };
        let departed = status.departed.as_ref().filter(|_| net.is_none());
        Self {
            peer_id: status.peer.to_string(),
            name: None,
            role: None,
            addrs: net
                .map(|n| n.addrs.iter().map(ToString::to_string).collect())
                .or_else(|| departed.map(|d| d.addr.iter().map(ToString::to_string).collect()))
                .unwrap_or_default(),
            transport: net.map(|n| match n.transport {
                TransportKind::Tcp => "tcp",
                TransportKind::Quic => "quic",
                TransportKind::Memory => "memory",
                _ => "other",
            }),
            connected: net.is_some(),
            sync_stream,
            peerdoc: sync.is_some_and(|s| s.peerdoc),
            rtt_ms: net.and_then(|n| n.rtt).map(|d| d.as_secs_f64() * 1000.0),
            bytes_in: sync.map_or(0, |s| s.bytes_in),
            bytes_out: sync.map_or(0, |s| s.bytes_out),
            messages_in: sync.map_or(0, |s| s.messages_in),
            messages_out: sync.map_or(0, |s| s.messages_out),
            queued_syncs: sync.map_or(0, |s| s.queued_syncs),
            active_syncs: sync.map_or(0, |s| s.active_syncs),
            last_seen_ms: net
                .map(|n| epoch_ms(n.last_seen))
                .or_else(|| departed.map(|d| epoch_ms(d.last_seen))),
            connected_since_ms: net.map(|n| epoch_ms(n.connected_since)),
            departed: departed.is_some(),
            missing_docs: Vec::new(),
            health,
            not_connected: status.last_failure.as_ref().map(|(why, _)| why.clone()),
            not_connected_since_ms: status.last_failure.as_ref().map(|(_, at)| epoch_ms(*at)),
        }
    }
}

impl PeerJson {
    /// Adds the device's team name and role, when the team knows it.
    pub(crate) fn labelled(mut self, state: &AppState, peer: &peerdoc_node::PeerId) -> Self {
        if let Some(label) = state.team.as_ref().and_then(|t| t.label(peer)) {
            self.name = Some(label.name);
            self.role = label.role.map(|r| r.to_string());
            if self.not_connected.is_some() && self.role.is_none() {
                self.not_connected = Some("it was removed from the team".to_owned());
            }
        }
        self
    }
}

impl PeerJson {
    /// Fills `missing_docs` from the documents' sync state (the daemon's own documents
    /// left out: nobody acts on them).
    fn with_missing(mut self, docs: &[DocumentSync], system: &[peerdoc_node::DocumentId]) -> Self {
        self.missing_docs = docs
            .iter()
            .filter(|d| !system.contains(&d.id))
            .filter(|d| {
                d.peers
                    .iter()
                    .any(|p| p.peer.to_string() == self.peer_id && !p.in_sync)
            })
            .map(|d| d.id.to_string())
            .collect();
        self
    }

    /// A departed device that is no longer in the team is not listed: it was removed.
    fn still_listed(&self, state: &AppState) -> bool {
        !self.departed || state.team.is_none() || self.role.is_some()
    }
}

/// Every peer, labelled with its team name and what it misses.
async fn peer_list(
    state: &AppState,
    statuses: &[PeerStatus],
    docs: &[DocumentSync],
) -> Vec<PeerJson> {
    let now = SystemTime::now();
    let system = state.system_docs();
    statuses
        .iter()
        .map(|p| {
            PeerJson::new(p, now)
                .labelled(state, &p.peer)
                .with_missing(docs, &system)
        })
        .filter(|p| p.still_listed(state))
        .collect()
}

/// `GET /v1/peers`.
pub(super) async fn peers(State(state): State<AppState>) -> Result<Json<Vec<PeerJson>>, ApiError> {
    let peers = state.node.peers().await?;
    let docs = state.node.sync_status().await?;
    Ok(Json(peer_list(&state, &peers, &docs).await))
}

/// `POST /v1/peers` and `DELETE /v1/peers`: `{"addr"}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeerAddr {
    addr: String,
}

fn parse_peer_addr(text: &str) -> Result<peerdoc_node::Multiaddr, ApiError> {
    crate::config::peer_addr(text).map_err(ApiError::bad_request)
}

/// `POST /v1/peers`: keep dialing an address from now on (and at every start, when
/// this device is in a team).
pub(super) async fn add_peer(
    State(state): State<AppState>,
    super::error::ApiJson(body): super::error::ApiJson<PeerAddr>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let addr = parse_peer_addr(&body.addr)?;
    let added = state.node.add_peer(addr.clone()).await?;
    let remembered = match &state.team {
        Some(team) => team.remember_peer(&addr.to_string(), true).await?.is_some(),
        None => false,
    };
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"addr": addr.to_string(), "added": added, "remembered": remembered})),
    ))
}

/// `DELETE /v1/peers`: stop dialing an address (and forget it).
pub(super) async fn remove_peer(
    State(state): State<AppState>,
    super::error::ApiJson(body): super::error::ApiJson<PeerAddr>,
) -> Result<StatusCode, ApiError> {
    let addr = parse_peer_addr(&body.addr)?;
    let removed = state.node.remove_peer(addr.clone()).await?;
    let forgotten = match &state.team {
        Some(team) => team.remember_peer(&addr.to_string(), false).await? == Some(true),
        None => false,
    };
    if !removed && !forgotten {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{addr} is not a peer this device dials"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// One document's sync state with the listed peers (`shown`: a departed device removed
/// from the team is not).
fn doc_sync_json(doc: &DocumentSync, shown: &[PeerJson]) -> Value {
    json!({
        "id": doc.id.to_string(),
        "title": doc.title.clone().filter(|t| !t.is_empty()),
        "priority": doc.priority,
        "heads": doc.heads,
        "cloud_receipt": super::receipts::status_name(doc.receipt),
        "peers": doc.peers.iter().filter(|p| p.connected || shown.iter().any(|s| s.peer_id == p.peer.to_string())).map(|p| json!({
            "peer_id": p.peer.to_string(),
            "in_sync": p.in_sync,
            "missing": p.missing,
            "their_heads": p.their_heads,
            "pending": p.pending,
            "connected": p.connected,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /v1/status`.
pub(super) async fn status(
    State(state): State<AppState>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    query.only(&["docs"])?;
    let with_docs = query.flag("docs", true)?;
    let status = state.node.status().await?;
    let docs = state.node.sync_status().await?;
    let peers = peer_list(&state, &status.peers, &docs).await;
    let queued: usize = peers.iter().map(|p| p.queued_syncs).sum();
    let connected: Vec<&PeerJson> = peers.iter().filter(|p| p.connected).collect();
    let cloud = state
        .config
        .cloud
        .as_ref()
        .map(crate::cloud::CloudStatus::snapshot)
        .unwrap_or_default();
    // A cloud endpoint (a sync server over WebSocket) is no libp2p peer, but a device
    // connected to it is not offline.
    let cloud_connected = cloud.iter().any(|c| c.connected);
    let health = if connected.is_empty() && !cloud_connected {
        "offline"
    } else if queued > 0 || connected.iter().any(|p| p.health != "healthy") {
        "degraded"
    } else {
        "healthy"
    };
    let network = network_problems(&state, &peers, &cloud).await;
    let store_bytes = store_bytes(&state).await;
    let listed = state.node.list().await?;
    let system = state.system_docs();
    let system_documents = listed.iter().filter(|d| system.contains(&d.id)).count();
    let receipts = super::receipts::ReceiptsJson::new(&listed);
    let conflicts = conflicts_summary(&state, &listed).await;
    let mut body = json!({
        "peer_id": status.peer_id.to_string(),
        "storage_id": status.storage_id.as_ref().map(ToString::to_string),
        "version": env!("CARGO_PKG_VERSION"),
        "listen_addrs": status.listen_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "api_url": state.config.api_url,
        "documents": status.documents,
        "system_documents": system_documents,
        "deleted": status.deleted,
        "loaded": status.loaded,
        "storage_in_flight": status.storage_in_flight,
        "store_bytes": store_bytes,
        "health": health,
        "peers": peers,
        "receipts": receipts,
        "conflicts": conflicts,
        "cloud": cloud,
        "network": network,
    });
    if let Some(team) = &state.team {
        body["team"] = json!(team.status().await);
    }
    if with_docs {
        body["docs"] = Value::Array(docs.iter().map(|d| doc_sync_json(d, &peers)).collect());
    }
    Ok(Json(body))
}

/// What is wrong with this device's connections, in words (`diagnose.rs`).
async fn network_problems(
    state: &AppState,
    peers: &[PeerJson],
    cloud: &[crate::cloud::EndpointReport],
) -> Vec<super::diagnose::Problem> {
    let discovery = state.node.discovery().await.ok();
    let no_team = match &state.team {
        Some(team) => {
            team.mode() == crate::team::TeamMode::Managed && team.snapshot().await.is_none()
        }
        None => false,
    };
    let inputs = super::diagnose::Inputs {
        connected: peers
            .iter()
            .filter(|p| p.connected && p.sync_stream)
            .count()
            + cloud.iter().filter(|c| c.connected).count(),
        mdns: discovery.as_ref().is_some_and(|d| d.mdns),
        discovered: discovery.as_ref().map_or(0, |d| d.discovered),
        explicit: discovery.as_ref().map_or(0, |d| d.explicit),
        running_for: discovery.as_ref().map_or(Duration::ZERO, |d| d.running_for),
        // Devices seen and not connected, and an address dialed with no device named.
        failures: peers
            .iter()
            .filter(|p| !p.connected)
            .filter_map(|p| p.not_connected.clone())
            .chain(
                discovery
                    .as_ref()
                    .and_then(|d| d.explicit_failure.as_deref())
                    .map(peerdoc_node::failure_in_words),
            )
            .collect(),
        no_team,
    };
    super::diagnose::diagnose(&inputs)
}

/// The most documents whose open conflicts the engine does not keep yet (logged before
/// it kept them, not changed since) that one `/v1/status` loads to count them; beyond
/// it they are listed as `unchecked`.
const MAX_CONFLICT_CHECKS: usize = 50;

/// The `conflicts` object of `/v1/status`: documents with fields holding concurrent
/// values now (open conflicts), most recently changed first.
async fn conflicts_summary(state: &AppState, listed: &[peerdoc_node::DocumentSummary]) -> Value {
    // The daemon's own documents merge concurrent copies of equal entries, which
    // automerge counts as conflicts; there is nothing for a person to settle there.
    let system = state.system_docs();
    let mut logged: Vec<&peerdoc_node::DocumentSummary> = listed
        .iter()
        .filter(|d| !d.deleted && d.conflicts_logged > 0 && !system.contains(&d.id))
        .collect();
    logged.sort_by_key(|d| std::cmp::Reverse(d.last_change_ms));
    let mut docs = Vec::new();
    let mut fields = 0u64;
    let mut checks = 0usize;
    let mut unchecked = 0usize;
    for doc in logged {
        // The engine keeps the open conflicts of every document changed since it
        // started to; only older ones need a load, and those are bounded.
        let (open, paths) = match &doc.open_conflicts {
            Some(open) => (open.count, open.paths.clone()),
            None if checks < MAX_CONFLICT_CHECKS => {
                checks += 1;
                let Ok(conflicts) = state.node.conflicts(doc.id).await else {
                    continue;
                };
                let paths: Vec<String> = conflicts.current.iter().map(|c| c.path.clone()).collect();
                (paths.len() as u64, paths)
            }
            None => {
                unchecked += 1;
                continue;
            }
        };
        if open == 0 {
            continue;
        }
        fields += open;
        docs.push(json!({
            "id": doc.id.to_string(),
            "title": doc.title.clone().filter(|t| !t.is_empty()),
            "open": open,
            "paths": paths,
        }));
    }
    json!({
        "documents": docs.len(),
        "fields": fields,
        "docs": docs,
        "unchecked": unchecked,
    })
}

/// Bytes the store occupies on disk (0 when unknown).
pub(crate) async fn store_bytes(state: &AppState) -> u64 {
    let Some(dir) = state.config.store_dir.clone() else {
        return 0;
    };
    tokio::task::spawn_blocking(move || dir_size(&dir, 0))
        .await
        .unwrap_or(0)
}

fn dir_size(dir: &std::path::Path, depth: usize) -> u64 {
    // sled's layout is shallow; the bound only guards against a symlink loop.
    if depth > 4 {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_size(&entry.path(), depth + 1),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
