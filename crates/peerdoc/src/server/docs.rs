//! `/v1/docs…`: create, import, list, read, edit, export, delete, metadata, conflicts,
//! history.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use peerdoc_core::persist::ConflictRecordValue;
use peerdoc_node::{DocumentId, DocumentSummary};
use serde_json::{Value, json};

use super::error::{ApiJson, OctetStream, QueryPairs, parse_doc_id};
use super::{ApiError, AppState};
use crate::api::{
    ConflictRecord, ConflictValue, Conflicts, Created, CurrentConflict, DocContent, DocSummary,
    EditOp, EditRequest, ErrorBody, Heads, HistoryEntry, MetaUpdate, NewDocument,
};

/// A document as listed, its last change attributed to a device where the team knows
/// the actor.
fn summary_json(s: &DocumentSummary, state: &AppState) -> DocSummary {
    DocSummary {
        id: s.id.to_string(),
        url: s.id.to_url(),
        // An empty title is how a cleared one is stored.
        title: s.title.clone().filter(|t| !t.is_empty()),
        priority: i64::from(s.priority),
        size: s.size,
        created_ms: s.created_ms,
        last_change_ms: s.last_change_ms,
        deleted: s.deleted,
        heads: s.heads.clone(),
        cloud_receipt: Some(super::receipts::status_name(s.receipt).to_owned()),
        cloud_receipt_ms: s.receipt_ms,
        conflicts_logged: s.conflicts_logged,
        last_actor: s.last_actor.clone(),
        last_change_by: s
            .last_actor
            .as_deref()
            .and_then(|actor| device_name(state, actor)),
        extra: serde_json::Map::new(),
    }
}

fn created(id: DocumentId, heads: Vec<String>) -> Response {
    (
        StatusCode::CREATED,
        [(
            header::LOCATION,
            super::header_value(&format!("/v1/docs/{id}")),
        )],
        Json(Created {
            id: id.to_string(),
            url: id.to_url(),
            heads,
        }),
    )
        .into_response()
}

async fn heads_of(state: &AppState, id: DocumentId) -> Result<Vec<String>, ApiError> {
    let (_, heads) = state.node.read_with_heads(id).await?;
    Ok(heads.iter().map(ToString::to_string).collect())
}

/// List documents
///
/// Tombstones are left out unless `?deleted=true`; peerdoc's own documents (the team's
/// membership, the shared titles and priorities) unless `?system=true`.
#[utoipa::path(
    get,
    path = "/v1/docs",
    operation_id = "listDocs",
    tag = "documents",
    params(
        ("deleted" = Option<bool>, Query, description = "`true` lists deleted documents too"),
        ("system" = Option<bool>, Query, description = "`true` includes peerdoc's own documents (the team's membership, the shared titles and priorities)"),
    ),
    responses(
        (status = 200, description = "Documents", body = Vec<DocSummary>),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    query: QueryPairs,
) -> Result<Json<Vec<DocSummary>>, ApiError> {
    query.only(&["deleted", "system"])?;
    let deleted = query.flag("deleted", false)?;
    let system = query.flag("system", false)?;
    let docs = state.node.list().await?;
    let system_docs = state.system_docs();
    Ok(Json(
        docs.iter()
            .filter(|d| deleted || !d.deleted)
            .filter(|d| system || !system_docs.contains(&d.id))
            .map(|d| summary_json(d, &state))
            .collect(),
    ))
}

/// Create a document
///
/// Answers with `Location: /v1/docs/{id}`. `title` and `priority` are shared with every
/// device (see `PATCH /v1/docs/{id}/meta`).
#[utoipa::path(
    post,
    path = "/v1/docs",
    operation_id = "createDoc",
    tag = "documents",
    request_body = NewDocument,
    responses(
        (status = 201, description = "Created", body = Created,
            headers(("Location" = String, description = "`/v1/docs/{id}`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 413, response = super::openapi::TooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::Unprocessable),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewDocument>,
) -> Result<Response, ApiError> {
    let content = match body.content {
        Value::Null => json!({}),
        content => content,
    };
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

/// Import automerge `save()` bytes as a new document
///
/// An empty body, or bytes that are not an automerge document, is
/// `422 invalid_document`. Conflicts the imported document already holds are logged.
#[utoipa::path(
    post,
    path = "/v1/docs/import",
    operation_id = "importDoc",
    tag = "documents",
    params(
        ("title" = Option<String>, Query, description = "Its title, shared with every device"),
        ("priority" = Option<i32>, Query, description = "Its sync priority, shared with every device"),
    ),
    request_body(content = inline(super::openapi::AutomergeBytes), content_type = "application/octet-stream",
        description = "An automerge document's `save()` bytes"),
    responses(
        (status = 201, description = "Created", body = Created,
            headers(("Location" = String, description = "`/v1/docs/{id}`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 413, response = super::openapi::TooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::Unprocessable),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
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

/// Read a document (optionally as it was at some heads)
///
/// An empty `?heads=` is `400`; leave it out for the current version.
#[utoipa::path(
    get,
    path = "/v1/docs/{id}",
    operation_id = "readDoc",
    tag = "documents",
    params(
        ("id" = String, Path, description = "The document id (bs58check), or its `automerge:` URL"),
        ("heads" = Option<String>, Query, pattern = r"^[0-9a-fA-F]{64}(,[0-9a-fA-F]{64})*$",
            description = "Comma-separated hex change hashes: read the document as it was at those heads"),
    ),
    responses(
        (status = 200, description = "The document", body = DocContent),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 410, response = super::openapi::Gone),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Result<Json<DocContent>, ApiError> {
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
    Ok(Json(DocContent {
        id: id.to_string(),
        url: id.to_url(),
        heads,
        content,
    }))
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

/// Ask connected peers for a document not held here (automerge-repo's `find`)
///
/// Sends automerge-repo `request` to every connected peer and answers once the document
/// is here and durable; a document already here answers at once. For documents on a
/// stock sync server (which never lists what it holds); peerdoc peers reconcile
/// everything.
#[utoipa::path(
    post,
    path = "/v1/docs/{id}/fetch",
    operation_id = "fetchDoc",
    tag = "documents",
    params(("id" = String, Path, description = "The document id (bs58check), or its `automerge:` URL")),
    responses(
        (status = 200, description = "The document is here", body = Created),
        (status = 404, description = "No connected peer has it (`not_found`): each said `doc-unavailable` or closed, none answered within `node.find_timeout_ms` (10 s), or no peer is connected", body = ErrorBody),
        (status = 410, description = "A peer says it was deleted (`gone`)", body = ErrorBody),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn fetch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Created>, ApiError> {
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
    Ok(Json(Created {
        id: id.to_string(),
        url: id.to_url(),
        heads,
    }))
}

/// A document's automerge `save()` bytes
#[utoipa::path(
    get,
    path = "/v1/docs/{id}/export",
    operation_id = "exportDoc",
    tag = "documents",
    params(("id" = String, Path, description = "The document id (bs58check), or its `automerge:` URL")),
    responses(
        (status = 200, description = "The bytes", body = inline(super::openapi::AutomergeBytes), content_type = "application/octet-stream"),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 410, response = super::openapi::Gone),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn export(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_doc_id(&id)?;
    let bytes = state.node.export(id).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// Apply edit ops as one atomic change (all or nothing)
///
/// `422 invalid_change` when an op does not fit the document (wrong type at the path,
/// index out of range, missing key); nothing was changed then.
#[utoipa::path(
    patch,
    path = "/v1/docs/{id}",
    operation_id = "editDoc",
    tag = "documents",
    params(("id" = String, Path, description = "The document id (bs58check), or its `automerge:` URL")),
    request_body = EditRequest,
    responses(
        (status = 200, description = "The new heads", body = Heads),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 410, response = super::openapi::Gone),
        (status = 413, response = super::openapi::TooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::Unprocessable),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn edit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EditRequest>,
) -> Result<Json<Heads>, ApiError> {
    let id = parse_doc_id(&id)?;
    refuse_system_document(&state, id, "edited")?;
    for op in &body.ops {
        check_pointer(op.path())?;
    }
    let ops = body.ops.into_iter().map(EditOp::into).collect();
    let heads = state.node.edit(id, ops, body.message).await?;
    Ok(Json(Heads {
        heads: heads.iter().map(ToString::to_string).collect(),
    }))
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

/// Set a document's title and/or priority, for every device
///
/// An absent field is left as it is; `"title": null` clears the title. The daemon
/// mirrors the values into a document of its own (`2ZpaJgFemZpjw2yHtATyNm3wN4jx`, the
/// same on every device) that syncs like any other; two devices that set one field at
/// once: one value wins everywhere. A viewer's changes to it are applied by nobody.
#[utoipa::path(
    patch,
    path = "/v1/docs/{id}/meta",
    operation_id = "setMeta",
    tag = "documents",
    params(("id" = String, Path, description = "The document id (bs58check), or its `automerge:` URL")),
    request_body = MetaUpdate,
    responses(
        (status = 200, description = "The document's summary", body = DocSummary),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 410, response = super::openapi::Gone),
        (status = 413, response = super::openapi::TooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn set_meta(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MetaUpdate>,
) -> Result<Json<DocSummary>, ApiError> {
    let id = parse_doc_id(&id)?;
    refuse_system_document(&state, id, "given a title or priority")?;
    let title = body.title.map(Option::unwrap_or_default);
    // The shared copy first: the task that copies shared values into the catalog may
    // run at any moment, and must not find the old ones after the catalog has the new.
    state
        .share_meta(
            id,
            title.as_deref().map(|t| Some(t).filter(|t| !t.is_empty())),
            body.priority,
        )
        .await;
    state
        .node
        .set_meta(id, body.priority, title.clone())
        .await?;
    let docs = state.node.list().await?;
    let summary = docs
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::from(peerdoc_node::NodeError::DocumentNotFound(id)))?;
    Ok(Json(summary_json(summary, &state)))
}

/// Delete a document (a tombstone that syncs to every peer and wins)
///
/// Deleting a deleted document again is idempotent (`204`); every other endpoint
/// answers `410 deleted` for it. peerdoc's own documents (`?system=true` lists them)
/// cannot be deleted: `403 system_document`.
#[utoipa::path(
    delete,
    path = "/v1/docs/{id}",
    operation_id = "deleteDoc",
    tag = "documents",
    params(("id" = String, Path, description = "The document id (bs58check), or its `automerge:` URL")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_doc_id(&id)?;
    refuse_system_document(&state, id, "deleted")?;
    state.node.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `403 system_document` for peerdoc's own documents, which the API only reads: a
/// tombstone or an edit syncs to every device and wins, so the team's membership (the
/// node refuses a tombstone of that one too) or every shared title and priority would
/// be gone or broken everywhere. The daemon changes them through the team and meta
/// endpoints.
pub(super) fn refuse_system_document(
    state: &AppState,
    id: DocumentId,
    verb: &str,
) -> Result<(), ApiError> {
    if !state.system_docs().contains(&id) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "system_document",
        format!(
            "document {id} is one of peerdoc's own (the team's membership, or the shared \
             titles and priorities): it cannot be {verb} through the API; use the team \
             and meta endpoints"
        ),
    ))
}

/// A document's open conflicts and its conflict log
///
/// `current`: fields holding several concurrent values now; `log`: every conflict this
/// device ever saw. Each value's `device` is the team name of the device that wrote it,
/// when known.
#[utoipa::path(
    get,
    path = "/v1/docs/{id}/conflicts",
    operation_id = "conflicts",
    tag = "documents",
    params(("id" = String, Path, description = "The document id (bs58check), or its `automerge:` URL")),
    responses(
        (status = 200, description = "Conflicts", body = Conflicts),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 410, response = super::openapi::Gone),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn conflicts(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Conflicts>, ApiError> {
    let id = parse_doc_id(&id)?;
    let conflicts = state.node.conflicts(id).await?;
    let current = conflicts
        .current
        .iter()
        .map(|c| CurrentConflict {
            path: c.path.clone(),
            values: c
                .values
                .iter()
                .map(|v| ConflictValue {
                    value: v.value.clone(),
                    actor: v.actor.clone(),
                    device: device_name(&state, &v.actor),
                    change: v.change.map(|c| c.to_string()),
                    time: v.time,
                    winner: v.winner,
                })
                .collect(),
        })
        .collect();
    let log = conflicts
        .log
        .iter()
        .map(|record| conflict_record(record, |actor| device_name(&state, actor)))
        .collect();
    Ok(Json(Conflicts { current, log }))
}

/// A logged conflict, each value's author named by `device`.
pub(super) fn conflict_record(
    record: &peerdoc_core::persist::ConflictRecord,
    device: impl Fn(&str) -> Option<String>,
) -> ConflictRecord {
    let value = |v: &ConflictRecordValue| ConflictValue {
        value: v.value.clone(),
        actor: v.actor.clone(),
        device: device(&v.actor),
        change: v.change.clone(),
        time: v.time,
        winner: v.winner,
    };
    ConflictRecord {
        seq: record.seq,
        path: record.path.clone(),
        detected_ms: record.detected_ms,
        values: record.values.iter().map(value).collect(),
    }
}

/// The team name of the device that writes with this actor (hex), if known.
fn device_name(state: &AppState, actor: &str) -> Option<String> {
    state.team.as_ref()?.actor_name(actor)
}

/// A document's change history
///
/// Every change, each after its dependencies.
#[utoipa::path(
    get,
    path = "/v1/docs/{id}/history",
    operation_id = "history",
    tag = "documents",
    params(("id" = String, Path, description = "The document id (bs58check), or its `automerge:` URL")),
    responses(
        (status = 200, description = "History", body = Vec<HistoryEntry>),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 410, response = super::openapi::Gone),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let id = parse_doc_id(&id)?;
    let entries = state.node.history(id).await?;
    Ok(Json(
        entries
            .iter()
            .map(|e| HistoryEntry {
                hash: e.hash.to_string(),
                actor: e.actor.clone(),
                device: device_name(&state, &e.actor),
                seq: e.seq,
                // automerge change times are seconds since the epoch.
                time_ms: e.time.saturating_mul(1000),
                message: e.message.clone(),
                deps: e.deps.iter().map(ToString::to_string).collect(),
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
