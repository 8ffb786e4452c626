//! `/health`, `/v1/status`, `/v1/peers`.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use peerdoc_net::TransportKind;
use peerdoc_node::{DocumentSync, PeerStatus};

use super::error::{ApiJson, QueryPairs};
use super::{ApiError, AppState};
use crate::api::{
    ConflictDoc, ConflictSummary, DocPeer, DocStatus, ErrorBody, Health, NetworkProblem, Peer,
    PeerAdded, PeerAddr, Status,
};

/// A peer is healthy when heard from within this long (with a sync stream open).
const HEALTHY_SEEN: Duration = Duration::from_secs(15);
/// A peer not heard from within this long is offline.
const OFFLINE_SEEN: Duration = Duration::from_secs(60);
/// A round trip slower than this makes a peer degraded.
const SLOW_RTT: Duration = Duration::from_secs(1);

/// Liveness (no token)
///
/// `200 {"status": "ok"}` while serving; `503 {"status": "shutting_down"}` while
/// stopping.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "node",
    security(()),
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "Stopping", body = Health,
            example = json!({"status": "shutting_down"})),
    )
)]
pub(super) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let failure = state.node.metrics().storage_failure;
    let (status, word) = if state.is_stopping() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    } else if failure.is_some() {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ok")
    };
    (
        status,
        Json(Health {
            status: word.to_owned(),
            reason: failure.map(|f| f.message),
        }),
    )
}

/// Why the store's writes fail now, if they do.
pub(crate) fn store_problem(state: &AppState) -> Option<crate::api::status::StoreProblem> {
    state
        .node
        .metrics()
        .storage_failure
        .map(|f| crate::api::status::StoreProblem {
            state: if f.full { "full" } else { "failing" }.to_owned(),
            message: f.message,
            since_ms: epoch_ms(f.since),
        })
}

/// The last rollback the store found, if any.
fn store_rollback(state: &AppState) -> Option<crate::api::status::StoreRollback> {
    state
        .node
        .metrics()
        .store_rollback
        .map(|r| crate::api::status::StoreRollback {
            message: r.message,
            documents: r.documents,
            store_wide: r.store_wide,
            detected_ms: epoch_ms(r.detected),
            at_this_start: r.at_this_start,
        })
}

pub(crate) fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One peer, as `/v1/peers` and `/v1/status` show it.
fn peer_json(status: &PeerStatus, now: SystemTime) -> Peer {
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
    // A peer that was connected and left (`peerdoc_node::DepartedPeer`).
    let departed = status.departed.as_ref().filter(|_| net.is_none());
    Peer {
        peer_id: status.peer.to_string(),
        name: None,
        role: None,
        addrs: net
            .map(|n| n.addrs.iter().map(ToString::to_string).collect())
            .or_else(|| departed.map(|d| d.addr.iter().map(ToString::to_string).collect()))
            .unwrap_or_default(),
        transport: net.map(|n| {
            match n.transport {
                TransportKind::Tcp => "tcp",
                TransportKind::Quic => "quic",
                TransportKind::Memory => "memory",
                _ => "other",
            }
            .to_owned()
        }),
        connected: net.is_some(),
        sync_stream,
        peerdoc: sync.is_some_and(|s| s.peerdoc),
        rtt_ms: net.and_then(|n| n.rtt).map(|d| d.as_secs_f64() * 1000.0),
        bytes_in: sync.map_or(0, |s| s.bytes_in),
        bytes_out: sync.map_or(0, |s| s.bytes_out),
        messages_in: sync.map_or(0, |s| s.messages_in),
        messages_out: sync.map_or(0, |s| s.messages_out),
        queued_syncs: sync.map_or(0, |s| wide(s.queued_syncs)),
        active_syncs: sync.map_or(0, |s| wide(s.active_syncs)),
        last_seen_ms: net
            .map(|n| epoch_ms(n.last_seen))
            .or_else(|| departed.map(|d| epoch_ms(d.last_seen))),
        connected_since_ms: net.map(|n| epoch_ms(n.connected_since)),
        departed: departed.is_some(),
        via_hub: None,
        missing_docs: Vec::new(),
        health: health.to_owned(),
        not_connected: status.last_failure.as_ref().map(|(why, _)| why.clone()),
        not_connected_since_ms: status.last_failure.as_ref().map(|(_, at)| epoch_ms(*at)),
        extra: serde_json::Map::new(),
    }
}

fn wide(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A peer with the device's team name and role, when the team knows it.
pub(crate) fn labelled_peer(state: &AppState, status: &PeerStatus, now: SystemTime) -> Peer {
    let mut peer = peer_json(status, now);
    if let Some(label) = state.team.as_ref().and_then(|t| t.label(&status.peer)) {
        peer.name = Some(label.name);
        peer.role = label.role.map(|r| r.to_string());
        if peer.not_connected.is_some() && peer.role.is_none() {
            peer.not_connected = Some("it was removed from the team".to_owned());
        }
    }
    peer
}

/// Every peer, labelled with its team name and the documents it misses (peerdoc's own
/// left out: nobody acts on them). A departed device that is no longer in the managed
/// team is not listed: it was removed.
fn peer_list(state: &AppState, statuses: &[PeerStatus], docs: &[DocumentSync]) -> Vec<Peer> {
    let now = SystemTime::now();
    let system = state.system_docs();
    let hubs = state.team.as_ref().map(|t| t.hubs()).unwrap_or_default();
    // Only a managed team removes devices; with a shared key (or `--open`) a departed
    // device has no role and stays listed until it returns.
    let managed = state
        .team
        .as_ref()
        .is_some_and(|t| t.mode() == crate::team::TeamMode::Managed);
    let mut peers: Vec<Peer> = statuses
        .iter()
        .map(|status| {
            let mut peer = labelled_peer(state, status, now);
            peer.missing_docs = docs
                .iter()
                .filter(|d| !system.contains(&d.id))
                .filter(|d| d.peers.iter().any(|p| p.peer == status.peer && !p.in_sync))
                .map(|d| d.id.to_string())
                .collect();
            peer
        })
        .filter(|p| !p.departed || !managed || p.role.is_some())
        .collect();
    // A member this device cannot reach syncs through a hub that it does reach.
    let hub = peers
        .iter()
        .find(|p| p.connected && p.sync_stream && hubs.iter().any(|h| h.to_string() == p.peer_id))
        .map(|p| p.name.clone().unwrap_or_else(|| p.peer_id.clone()));
    if let Some(hub) = hub {
        for peer in peers
            .iter_mut()
            .filter(|p| !p.connected && p.role.is_some())
        {
            peer.via_hub = Some(hub.clone());
        }
    }
    peers
}

/// Peers and their health
///
/// Every peer known: connected ones, those seen but not connected (a dial failed, or
/// it was refused here) with why, and those that left (`departed`, with `last_seen_ms`
/// and the documents they miss, `missing_docs`).
#[utoipa::path(
    get,
    path = "/v1/peers",
    operation_id = "peers",
    tag = "node",
    responses(
        (status = 200, description = "Peers", body = Vec<Peer>),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn peers(State(state): State<AppState>) -> Result<Json<Vec<Peer>>, ApiError> {
    let peers = state.node.peers().await?;
    let docs = state.node.sync_status().await?;
    Ok(Json(peer_list(&state, &peers, &docs)))
}

fn parse_peer_addr(text: &str) -> Result<peerdoc_node::Multiaddr, ApiError> {
    crate::config::peer_addr(text).map_err(ApiError::bad_request)
}

/// Keep dialing an address (remembered across restarts when in a team)
///
/// The daemon dials the address from now on, with backoff; in a team it is remembered
/// in `team.json` and dialed at every start (`remembered: true`). A bad address is
/// `400 bad_request` with the value in the message.
#[utoipa::path(
    post,
    path = "/v1/peers",
    operation_id = "addPeer",
    tag = "node",
    request_body = PeerAddr,
    responses(
        (status = 201, description = "Added", body = PeerAdded,
            example = json!({"addr": "/ip4/198.18.0.20/tcp/4001", "added": true, "remembered": true})),
        (status = 200, description = "Dialed already (`added: false`)", body = PeerAdded),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 413, response = super::openapi::TooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn add_peer(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PeerAddr>,
) -> Result<(StatusCode, Json<PeerAdded>), ApiError> {
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
        Json(PeerAdded {
            addr: addr.to_string(),
            added,
            remembered,
        }),
    ))
}

/// Stop dialing an address and forget it
///
/// `404 not_found` when the address was not dialed.
#[utoipa::path(
    delete,
    path = "/v1/peers",
    operation_id = "removePeer",
    tag = "node",
    request_body = PeerAddr,
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "Not a peer this device dials (`not_found`)", body = ErrorBody),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 413, response = super::openapi::TooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn remove_peer(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PeerAddr>,
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
fn doc_sync_json(doc: &DocumentSync, shown: &[Peer]) -> DocStatus {
    DocStatus {
        id: doc.id.to_string(),
        title: doc.title.clone().filter(|t| !t.is_empty()),
        priority: i64::from(doc.priority),
        heads: doc.heads.clone(),
        cloud_receipt: Some(super::receipts::status_name(doc.receipt).to_owned()),
        peers: doc
            .peers
            .iter()
            .filter(|p| p.connected || shown.iter().any(|s| s.peer_id == p.peer.to_string()))
            .map(|p| DocPeer {
                peer_id: p.peer.to_string(),
                in_sync: p.in_sync,
                missing: wide(p.missing),
                their_heads: p.their_heads.clone(),
                pending: p.pending,
                connected: p.connected,
            })
            .collect(),
        extra: serde_json::Map::new(),
    }
}

/// This device's status, peers and per-document sync state
///
/// Also: cloud receipts (is it safe to wipe this device?), open conflicts, cloud
/// endpoints and the team. `health` is `offline` when neither a peer nor a cloud endpoint is connected,
/// `degraded` when some connected peer is not healthy or documents are queued for sync,
/// else `healthy`. `docs` lists live documents with connected and departed peers.
/// `network` says what is wrong with the connections, in words.
#[utoipa::path(
    get,
    path = "/v1/status",
    operation_id = "status",
    tag = "node",
    params(("docs" = Option<bool>, Query, description = "`false` leaves out `docs` (a cheap status)")),
    responses(
        (status = 200, description = "Status", body = Status),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn status(
    State(state): State<AppState>,
    query: QueryPairs,
) -> Result<Json<Status>, ApiError> {
    query.only(&["docs"])?;
    let with_docs = query.flag("docs", true)?;
    let status = state.node.status().await?;
    let sync = state.node.sync_status().await?;
    let peers = peer_list(&state, &status.peers, &sync);
    let queued: u64 = peers.iter().map(|p| p.queued_syncs).sum();
    let connected: Vec<&Peer> = peers.iter().filter(|p| p.connected).collect();
    let cloud = state
        .config
        .cloud
        .as_ref()
        .map(crate::cloud::CloudStatus::snapshot)
        .unwrap_or_default()
        .iter()
        .map(crate::api::CloudEndpoint::from)
        .collect::<Vec<_>>();
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
    let receipts = super::receipts::summarise(&listed);
    let conflicts = conflicts_summary(&state, &listed).await;
    let team = match &state.team {
        Some(team) => Some(team.status().await),
        None => None,
    };
    let docs = with_docs.then(|| sync.iter().map(|d| doc_sync_json(d, &peers)).collect());
    Ok(Json(Status {
        peer_id: status.peer_id.to_string(),
        storage_id: status.storage_id.as_ref().map(ToString::to_string),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        listen_addrs: status
            .listen_addrs
            .iter()
            .map(ToString::to_string)
            .collect(),
        api_url: Some(state.config.api_url.clone()),
        documents: wide(status.documents),
        system_documents: wide(system_documents),
        deleted: wide(status.deleted),
        loaded: wide(status.loaded),
        storage_in_flight: wide(status.storage_in_flight),
        store_problem: store_problem(&state),
        store_rollback: store_rollback(&state),
        store_encryption: state.node.metrics().store_encryption.map(str::to_owned),
        store_bytes,
        health: health.to_owned(),
        peers,
        receipts: Some(receipts),
        conflicts: Some(conflicts),
        cloud,
        network,
        team,
        docs,
        extra: serde_json::Map::new(),
    }))
}

/// What is wrong with this device's connections, in words (`diagnose.rs`).
async fn network_problems(
    state: &AppState,
    peers: &[Peer],
    cloud: &[crate::api::CloudEndpoint],
) -> Vec<NetworkProblem> {
    let discovery = state.node.discovery().await.ok();
    let no_team = match &state.team {
        Some(team) => team.mode() == crate::team::TeamMode::Managed && !team.in_team().await,
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
        through_hub: peers
            .iter()
            .filter_map(|p| Some((p.name.clone()?, p.via_hub.clone()?)))
            .collect(),
    };
    super::diagnose::diagnose(&inputs)
        .into_iter()
        .map(|p| NetworkProblem {
            code: p.code.to_owned(),
            message: p.message,
        })
        .collect()
}

/// The most documents whose open conflicts the engine does not keep yet (logged before
/// it kept them, not changed since) that one `/v1/status` loads to count them; beyond
/// it they are listed as `unchecked`.
const MAX_CONFLICT_CHECKS: usize = 50;

/// The `conflicts` object of `/v1/status`: documents with fields holding concurrent
/// values now (open conflicts), most recently changed first.
async fn conflicts_summary(
    state: &AppState,
    listed: &[peerdoc_node::DocumentSummary],
) -> ConflictSummary {
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
                (wide(paths.len()), paths)
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
        docs.push(ConflictDoc {
            id: doc.id.to_string(),
            title: doc.title.clone().filter(|t| !t.is_empty()),
            open,
            paths,
        });
    }
    ConflictSummary {
        documents: wide(docs.len()),
        fields,
        docs,
        unchecked: wide(unchecked),
    }
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
