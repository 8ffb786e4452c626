//! `/v1/docs…`: create, import, list, read, edit, export, delete, metadata, conflicts,
//! history.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use peerdoc_node::{DocumentId, DocumentSummary, EditOp};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::error::{ApiJson, OctetStream, QueryPairs, parse_doc_id};
use super::{ApiError, AppState};

/// `POST /v1/docs` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    priority: Option<i32>,
}

/// `PATCH /v1/docs/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EditBody {
    ops: Vec<EditOp>,
    #[serde(default)]
    message: Option<String>,
}

/// `PATCH /v1/docs/{id}/meta` body. `title: null` clears the title.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetaBody {
    #[serde(default, deserialize_with = "present")]
    title: Option<Option<String>>,
    #[serde(default)]
    priority: Option<i32>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A document as listed.
#[derive(Debug, Serialize)]
pub(crate) struct DocSummaryJson {
    id: String,
    url: String,
    title: Option<String>,
    priority: i32,
    size: u64,
    created_ms: u64,
    last_change_ms: u64,
    deleted: bool,
    heads: Vec<String>,
    cloud_receipt: &'static str,
    cloud_receipt_ms: Option<u64>,
    conflicts_logged: u64,
    /// The actor (hex) of its newest change, and that device's name where the team
    /// knows it.
    last_actor: Option<String>,
    last_change_by: Option<String>,
}

impl DocSummaryJson {
    /// Names the device that changed it last.
    fn named(mut self, state: &AppState) -> Self {
        self.last_change_by = self
            .last_actor
            .as_deref()
            .and_then(|actor| device_name(state, actor));
        self
    }
}

impl From<&DocumentSummary> for DocSummaryJson {
    fn from(s: &DocumentSummary) -> Self {
        Self {
            id: s.id.to_string(),
            url: s.id.to_url(),
            // An empty title is how a cleared one is stored.
            title: s.title.clone().filter(|t| !t.is_empty()),
            priority: s.priority,
            size: s.size,
            created_ms: s.created_ms,
            last_change_ms: s.last_change_ms,
            deleted: s.deleted,
            heads: s.heads.clone(),
            cloud_receipt: super::receipts::status_name(s.receipt),
            cloud_receipt_ms: s.receipt_ms,
            conflicts_logged: s.conflicts_logged,
            last_actor: s.last_actor.clone(),
            last_change_by: None,
        }
    }
}

fn created(id: DocumentId, heads: Vec<String>) -> Response {
    (
        StatusCode::CREATED,
        [(
            header::LOCATION,
            super::header_value(&format!("/v1/docs/{id}")),
        )],
        Json(json!({"id": id.to_string(), "url": id.to_url(), "heads": heads})),
    )
        .into_response()
}

async fn heads_of(state: &AppState, id: DocumentId) -> Result<Vec<String>, ApiError> {
    let (_, heads) = state.node.read_with_heads(id).await?;
    Ok(heads.iter().map(ToString::to_string).collect())
}

/// `GET /v1/docs`.
pub(super) async fn list(
    State(state): State<AppState>,
    query: QueryPairs,
) -> Result<Json<Vec<DocSummaryJson>>, ApiError> {
    query.only(&["deleted", "system"])?;
    let deleted = query.flag("deleted", false)?;
    let system = query.flag("system", false)?;
    let docs = state.node.list().await?;
    let system_docs = state.system_docs();
    Ok(Json(
        docs.iter()
            .filter(|d| deleted || !d.deleted)
            .filter(|d| system || !system_docs.contains(&d.id))
            .map(|d| DocSummaryJson::from(d).named(&state))
            .collect(),
    ))
}

/// `POST /v1/docs`.
pub(super) async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let content = body.content.unwrap_or_else(|| json!({}));
    if !content.is_object() {
        return Err(ApiError::bad_json("content must be a JSON object"));
    }
    let id = state
        .node
        .create(content, body.priority.unwrap_or(0), body.title.clone())
        .await?;
    state
        .share_meta(id, body.title.as_deref().map(Some), body.priority)
        .await;
    let heads = heads_of(&state, id).await?;
    Ok(created(id, heads))
}

/// `POST /v1/docs/import`.
pub(super) async fn import(
    State(state): State<AppState>,
    query: QueryPairs,
    OctetStream(bytes): OctetStream,
) -> Result<Response, ApiError> {
    query.only(&["title", "priority"])?;
    let priority = match query.get("priority") {
        Some(p) => p.parse().map_err(|_| {
            ApiError::bad_request(format!("?priority= must be an integer, not {p:?}"))
        })?,
        None => 0,
    };
    let title = query.get("title").map(str::to_owned);
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_document",
            "the body is empty: send an automerge document's save() bytes",
        ));
    }
    let id = state
        .node
        .import(bytes.to_vec(), priority, title.clone())
        .await?;
    let shared_priority = query.get("priority").is_some().then_some(priority);
    state
        .share_meta(id, title.as_deref().map(Some), shared_priority)
        .await;
    let heads = heads_of(&state, id).await?;
    Ok(created(id, heads))
}

/// `GET /v1/docs/{id}`.
pub(super) async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let id = parse_doc_id(&id)?;
    query.only(&["heads"])?;
    let (content, heads) = match query.get("heads") {
        Some(list) => {
            let heads = parse_heads(list)?;
            let content = state.node.read_at(id, heads.clone()).await?;
            (content, heads)
        }
        None => state.node.read_with_heads(id).await?,
    };
    let heads: Vec<String> = heads.iter().map(ToString::to_string).collect();
    Ok(Json(json!({
        "id": id.to_string(), "url": id.to_url(), "heads": heads, "content": content,
    })))
}

fn parse_heads(list: &str) -> Result<Vec<automerge::ChangeHash>, ApiError> {
    let heads: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    if heads.is_empty() {
        return Err(ApiError::bad_request(
            "heads is empty: give one or more change hashes separated by commas, or leave \
             heads out to read the current version",
        ));
    }
    heads
        .into_iter()
        .map(|h| {
            h.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "heads: {h:?} is not a change hash (64 hex characters, as listed in a \
                     document's \"heads\")"
                ))
            })
        })
        .collect()
}

/// `POST /v1/docs/{id}/fetch`: ask connected peers for a document not held here.
pub(super) async fn fetch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_doc_id(&id)?;
    let heads = state.node.find(id).await.map_err(|error| match error {
        peerdoc_node::NodeError::DocumentNotFound(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("document {id} is not here and no connected peer has it"),
        ),
        other => other.into(),
    })?;
    let heads: Vec<String> = heads.iter().map(ToString::to_string).collect();
    Ok(Json(
        json!({"id": id.to_string(), "url": id.to_url(), "heads": heads}),
    ))
}

/// `GET /v1/docs/{id}/export`.
pub(super) async fn export(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_doc_id(&id)?;
    let bytes = state.node.export(id).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// `PATCH /v1/docs/{id}`.
pub(super) async fn edit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EditBody>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_doc_id(&id)?;
    for op in &body.ops {
        check_pointer(op_path(op))?;
    }
    let heads = state.node.edit(id, body.ops, body.message).await?;
    let heads: Vec<String> = heads.iter().map(ToString::to_string).collect();
    Ok(Json(json!({ "heads": heads })))
}

fn op_path(op: &EditOp) -> &str {
    match op {
        EditOp::Set { path, .. }
        | EditOp::Delete { path }
        | EditOp::Insert { path, .. }
        | EditOp::Remove { path, .. }
        | EditOp::Splice { path, .. }
        | EditOp::Increment { path, .. } => path,
    }
}

/// RFC 6901 syntax: empty, or `/`-separated tokens where `~` is followed by `0` or `1`.
/// Whether the tokens fit the document is the engine's call (422).
fn check_pointer(path: &str) -> Result<(), ApiError> {
    if path.is_empty() {
        return Ok(());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(ApiError::bad_path(format!(
            "{path:?} is not a JSON pointer: it must start with '/'"
        )));
    };
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(ApiError::bad_path(format!(
                "{path:?} is not a JSON pointer: '~' must be followed by '0' or '1'"
            )));
        }
    }
    Ok(())
}

/// `PATCH /v1/docs/{id}/meta`.
pub(super) async fn set_meta(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MetaBody>,
) -> Result<Json<DocSummaryJson>, ApiError> {
    let id = parse_doc_id(&id)?;
    let title = body.title.map(Option::unwrap_or_default);
    state
        .node
        .set_meta(id, body.priority, title.clone())
        .await?;
    state
        .share_meta(
            id,
            title.as_deref().map(|t| Some(t).filter(|t| !t.is_empty())),
            body.priority,
        )
        .await;
    let docs = state.node.list().await?;
    let summary = docs
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::from(peerdoc_node::NodeError::DocumentNotFound(id)))?;
    Ok(Json(DocSummaryJson::from(summary).named(&state)))
}

/// `DELETE /v1/docs/{id}`.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_doc_id(&id)?;
    state.node.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/docs/{id}/conflicts`.
pub(super) async fn conflicts(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_doc_id(&id)?;
    let conflicts = state.node.conflicts(id).await?;
    let mut body = json!({ "current": conflicts.current, "log": conflicts.log });
    // Every value's author, by device name where the team knows it.
    for list in ["current", "log"] {
        if let Some(Value::Array(items)) = body.get_mut(list) {
            for item in items {
                if let Some(Value::Array(values)) = item.get_mut("values") {
                    for value in values {
                        let device = value
                            .get("actor")
                            .and_then(Value::as_str)
                            .and_then(|actor| device_name(&state, actor));
                        if let Some(object) = value.as_object_mut() {
                            object.insert("device".into(), json!(device));
                        }
                    }
                }
            }
        }
    }
    Ok(Json(body))
}

/// The team name of the device that writes with this actor (hex), if known.
fn device_name(state: &AppState, actor: &str) -> Option<String> {
    state.team.as_ref()?.actor_name(actor)
}

/// `GET /v1/docs/{id}/history`.
pub(super) async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let id = parse_doc_id(&id)?;
    let entries = state.node.history(id).await?;
    Ok(Json(
        entries
            .iter()
            .map(|e| {
                json!({
                    "hash": e.hash.to_string(),
                    "actor": e.actor,
                    "device": device_name(&state, &e.actor),
                    "seq": e.seq,
                    // automerge change times are seconds since the epoch.
                    "time_ms": e.time.saturating_mul(1000),
                    "message": e.message,
                    "deps": e.deps.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers() {
        for good in ["", "/", "/a/b", "/a~0b/~1", "/list/-"] {
            assert!(check_pointer(good).is_ok(), "{good}");
        }
        for bad in ["a", "/a~", "/a~2", "a/b"] {
            assert_eq!(check_pointer(bad).unwrap_err().code, "bad_path", "{bad}");
        }
    }
}
