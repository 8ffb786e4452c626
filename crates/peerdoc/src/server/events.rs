//! `GET /v1/events`: node events as Server-Sent Events.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use peerdoc_node::{DocumentId, NodeEvent, Origin};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::error::{QueryPairs, parse_doc_id};
use super::{ApiError, AppState};
use crate::team::TeamService;

/// How often an idle stream carries a `: keepalive` comment.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/events[?doc=<id>…]`.
pub(super) async fn events(
    State(state): State<AppState>,
    query: QueryPairs,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    query.only(&["doc"])?;
    let filter: BTreeSet<DocumentId> = query
        .all("doc")
        .map(parse_doc_id)
        .collect::<Result<_, _>>()?;
    let receiver = state.node.subscribe();
    let stopping = state.stopping.clone();
    let team = state.team.clone();
    let stream = futures::stream::unfold(
        (receiver, stopping, filter, team),
        |(mut receiver, mut stopping, filter, team)| async move {
            loop {
                if *stopping.borrow() {
                    return None;
                }
                let received = tokio::select! {
                    received = receiver.recv() => received,
                    _ = stopping.changed() => return None,
                };
                let event = match received {
                    Ok(event) => match to_sse(&event, &filter, team.as_deref()) {
                        Some(event) => event,
                        None => continue,
                    },
                    Err(RecvError::Lagged(missed)) => sse("lagged", &json!({ "missed": missed })),
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), (receiver, stopping, filter, team)));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keepalive")))
}

fn sse(name: &str, data: &Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// `origin`, `peer` and `device` (the peer's team name) of a change.
fn origin_json(origin: &Origin, team: Option<&TeamService>) -> (&'static str, Value, Value) {
    match origin {
        Origin::Local => ("local", Value::Null, Value::Null),
        Origin::Remote(peer) => (
            "remote",
            peer.map_or(Value::Null, |p| Value::String(p.to_string())),
            json!(peer.and_then(|p| name_of(team, &p))),
        ),
    }
}

fn name_of(team: Option<&TeamService>, peer: &peerdoc_node::PeerId) -> Option<String> {
    team?.label(peer).map(|label| label.name)
}

/// The SSE form of a node event, if it passes the filter and is one the API carries.
fn to_sse(
    event: &NodeEvent,
    filter: &BTreeSet<DocumentId>,
    team: Option<&TeamService>,
) -> Option<Event> {
    let wanted = |doc: &DocumentId| filter.is_empty() || filter.contains(doc);
    match event {
        NodeEvent::DocumentChanged {
            doc,
            heads,
            origin,
            patches,
            patch_json,
            paths,
            ..
        } if wanted(doc) => {
            let (origin, peer, device) = origin_json(origin, team);
            let mut data = json!({
                "doc": doc.to_string(),
                "heads": heads.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "origin": origin,
                "peer": peer,
                "device": device,
                "paths": paths,
                "patches": patch_json,
            });
            if *patches > patch_json.len() {
                data["truncated"] = Value::Bool(true);
            }
            Some(sse("change", &data))
        }
        NodeEvent::DocumentCreated { doc, origin } if wanted(doc) => {
            let (origin, peer, device) = origin_json(origin, team);
            Some(sse(
                "created",
                &json!({"doc": doc.to_string(), "origin": origin, "peer": peer, "device": device}),
            ))
        }
        NodeEvent::DocumentDeleted { doc, origin } if wanted(doc) => {
            let (origin, peer, device) = origin_json(origin, team);
            Some(sse(
                "deleted",
                &json!({"doc": doc.to_string(), "origin": origin, "peer": peer, "device": device}),
            ))
        }
        NodeEvent::ConflictDetected { doc, record } if wanted(doc) => Some(sse(
            "conflict",
            &json!({"doc": doc.to_string(), "record": record}),
        )),
        NodeEvent::PeerConnected { peer, .. } => Some(sse(
            "peer_connected",
            &json!({"peer_id": peer.to_string(), "name": name_of(team, peer)}),
        )),
        NodeEvent::PeerDisconnected { peer } => Some(sse(
            "peer_disconnected",
            &json!({"peer_id": peer.to_string(), "name": name_of(team, peer)}),
        )),
        _ => None,
    }
}
