//! The team's membership document: how signed membership operations reach every member.
//!
//! It is an ordinary automerge document whose id is the team id (16 bytes, the same on
//! every member), synced like any other: through reconciliation with every member, the
//! hub, the cloud. Its root maps each operation's id to the operation (JSON text), so
//! copies created independently (the founder's, a newcomer's) merge key by key.
//!
//! Nothing in it is trusted: every entry is verified and folded by
//! [`peerdoc_team::Membership`], and an entry that does not verify is ignored. Entries
//! are never removed from `team.json`, so an editor who deletes keys from the document
//! removes nothing: the next publish puts them back.

use std::sync::Arc;

use peerdoc_node::{DocumentId, EditOp, NodeError, NodeEvent, NodeHandle};
use peerdoc_team::{SignedOp, TeamState};
use serde_json::{Map, Value};
use tokio::sync::broadcast::error::RecvError;

use super::TeamService;

/// The membership document syncs before any other.
const TEAM_DOC_PRIORITY: i32 = 1_000_000;

/// Most entries read from the document; a team has far fewer operations.
const MAX_ENTRIES: usize = 10_000;

/// The membership document's id.
pub(crate) fn doc_id(team: &TeamState) -> DocumentId {
    DocumentId::from_bytes(*team.team_id().as_bytes())
}

fn entries(team: &TeamState) -> Map<String, Value> {
    team.ops()
        .iter()
        .filter_map(|op| {
            let text = serde_json::to_string(op).ok()?;
            Some((op.id().to_string(), Value::String(text)))
        })
        .collect()
}

/// Writes every operation the document lacks (creating it if this device has none).
pub(crate) async fn publish(node: &NodeHandle, team: &TeamState) {
    let id = doc_id(team);
    let wanted = entries(team);
    let result = match node.read(id).await {
        Ok(Value::Object(present)) => {
            let ops: Vec<EditOp> = wanted
                .into_iter()
                .filter(|(key, _)| !present.contains_key(key))
                .map(|(key, value)| EditOp::Set {
                    path: format!("/{key}"),
                    value,
                })
                .collect();
            if ops.is_empty() {
                return;
            }
            node.edit(id, ops, Some("team membership".into()))
                .await
                .map(|_| ())
        }
        Ok(_) => {
            tracing::warn!(doc = %id, "the team's membership document is not a map; left alone");
            return;
        }
        Err(NodeError::DocumentNotFound(_)) => node
            .create_at(
                id,
                Value::Object(wanted),
                TEAM_DOC_PRIORITY,
                Some(format!("Team {} (membership)", team.name())),
            )
            .await
            .map(|_| ()),
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        tracing::warn!(%error, "could not publish the team membership");
    }
}

/// The membership document's entries; `None` when there is no such document (yet) or
/// it is not a map.
pub(crate) async fn read_map(node: &NodeHandle, id: DocumentId) -> Option<Map<String, Value>> {
    match node.read(id).await {
        Ok(Value::Object(map)) => Some(map),
        Ok(_) => None,
        Err(NodeError::DocumentNotFound(_)) => None,
        Err(error) => {
            tracing::debug!(%error, "membership document not read");
            None
        }
    }
}

/// The signed operations among the document's entries (entries that do not parse are
/// skipped; verification happens in the fold).
fn ops_in(map: &Map<String, Value>) -> Vec<SignedOp> {
    map.iter()
        // Address records (`team/addrs.rs`) share the document; they are no ops.
        .filter(|(key, _)| !key.starts_with(super::addrs::KEY_PREFIX))
        .map(|(_, value)| value)
        .take(MAX_ENTRIES)
        .filter_map(|v| serde_json::from_str(v.as_str()?).ok())
        .collect()
}

/// Follows the membership document: whenever it changes (an admin's change synced in,
/// or a newcomer's copy merged), merges what it holds and publishes what it lacks.
///
/// Subscribes before it returns, and reads the document once first: a change that
/// arrives while the daemon starts (a peer connects at once) is never missed.
pub(crate) fn follow(service: Arc<TeamService>) {
    let mut events = service.node.subscribe();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let event = if std::mem::take(&mut first) {
                Err(RecvError::Lagged(0))
            } else {
                events.recv().await
            };
            let doc = match event {
                Ok(
                    NodeEvent::DocumentChanged { doc, .. } | NodeEvent::DocumentCreated { doc, .. },
                ) => Some(doc),
                Ok(_) => continue,
                // Missed events: read the document again to be sure.
                Err(RecvError::Lagged(_)) => None,
                Err(RecvError::Closed) => return,
            };
            // Most events are about other documents: compare ids before anything else.
            let Some(id) = service.team_doc() else {
                continue;
            };
            if doc.is_some_and(|d| d != id) {
                continue;
            }
            // Read once: the ops and the members' addresses come from the same copy.
            let map = read_map(&service.node, id).await.unwrap_or_default();
            let ops = ops_in(&map);
            let present: std::collections::HashSet<_> = ops.iter().map(SignedOp::id).collect();
            service.merge_ops(ops).await;
            let Some(file) = service.snapshot().await else {
                continue;
            };
            if file.team.ops().iter().any(|op| !present.contains(&op.id())) {
                publish(&service.node, &file.team).await;
            }
            // Members' addresses may have come with it (or members were removed).
            service.refresh_addrs(&file, Some(&map)).await;
        }
    });
}
