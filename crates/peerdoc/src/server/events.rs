//! `GET /v1/events`: node events as Server-Sent Events.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use peerdoc_node::{DocumentId, NodeEvent, Origin};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::error::{QueryPairs, parse_doc_id};
use super::{ApiError, AppState};
use crate::api::{ChangeEvent, ConflictEvent, DocumentEvent, LaggedEvent, PeerEvent};
use crate::team::TeamService;

/// How often an idle stream carries a `: keepalive` comment.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Server-Sent Events: changes, documents, conflicts, peers
///
/// The events are `change`, `created`, `deleted`, `conflict`, `peer_connected`,
/// `peer_disconnected` and `lagged`. Each event has an `event:` name and one JSON `data:` line, whose schema the
/// extension `x-events` names per event (`ChangeEvent`, `DocumentEvent`,
/// `ConflictEvent`, `PeerEvent`, `LaggedEvent`); a `: keepalive` comment comes every
/// 15 s. After `lagged` the client missed events and should re-read state.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "events",
    tag = "events",
    params(("doc" = Option<Vec<String>>, Query, style = Form, explode,
        description = "Only events of these documents (repeatable)")),
    responses(
        (status = 200, description = "An event stream", body = String, content_type = "text/event-stream"),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
    )
)]
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
                    Err(RecvError::Lagged(missed)) => sse("lagged", &LaggedEvent { missed }),
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), (receiver, stopping, filter, team)));
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keepalive")))
}

fn sse(name: &str, data: &impl Serialize) -> Event {
    // The API's types always serialise; an empty object would still be valid SSE.
    let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event(name).data(json)
}

/// `origin`, `peer` and `device` (the peer's team name) of a change.
fn origin_json(
    origin: &Origin,
    team: Option<&TeamService>,
) -> (String, Option<String>, Option<String>) {
    match origin {
        Origin::Local => ("local".to_owned(), None, None),
        Origin::Remote(peer) => (
            "remote".to_owned(),
            peer.map(|p| p.to_string()),
            peer.and_then(|p| name_of(team, &p)),
        ),
    }
}

/// A `created` or `deleted` event.
fn document_event(doc: &DocumentId, origin: &Origin, team: Option<&TeamService>) -> DocumentEvent {
    let (origin, peer, device) = origin_json(origin, team);
    DocumentEvent {
        doc: doc.to_string(),
        origin,
        peer,
        device,
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
            let data = ChangeEvent {
                doc: doc.to_string(),
                heads: heads.iter().map(ToString::to_string).collect(),
                origin,
                peer,
                device,
                paths: paths.clone(),
                patches: patch_json.clone(),
                truncated: *patches > patch_json.len(),
            };
            Some(sse("change", &data))
        }
        NodeEvent::DocumentCreated { doc, origin } if wanted(doc) => {
            Some(sse("created", &document_event(doc, origin, team)))
        }
        NodeEvent::DocumentDeleted { doc, origin } if wanted(doc) => {
            Some(sse("deleted", &document_event(doc, origin, team)))
        }
        NodeEvent::ConflictDetected { doc, record } if wanted(doc) => {
            let record = super::docs::conflict_record(record, |actor| {
                team.and_then(|t| t.actor_name(actor))
            });
            Some(sse(
                "conflict",
                &ConflictEvent {
                    doc: doc.to_string(),
                    record,
                },
            ))
        }
        NodeEvent::PeerConnected { peer, .. } => Some(sse(
            "peer_connected",
            &PeerEvent {
                peer_id: peer.to_string(),
                name: name_of(team, peer),
            },
        )),
        NodeEvent::PeerDisconnected { peer } => Some(sse(
            "peer_disconnected",
            &PeerEvent {
                peer_id: peer.to_string(),
                name: name_of(team, peer),
            },
        )),
        _ => None,
    }
}
