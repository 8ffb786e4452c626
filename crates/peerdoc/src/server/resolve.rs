//! `POST /v1/docs/{id}/conflicts/resolve`: settle an open conflict by keeping one of
//! its values (or writing a new one).
//!
//! The chosen value is written as a new change that supersedes every concurrent value
//! at the path, so every device ends up with it once the change syncs. The change's
//! message says what was kept and whose it was, so the document's history is the audit
//! trail; the conflict log keeps the record of the conflict itself.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use peerdoc_core::model::ConflictValue;
use peerdoc_core::repo::ChangeRequest;
use serde_json::Value;

use super::error::{ApiJson, parse_doc_id};
use super::{ApiError, AppState};
use crate::api::{ErrorBody, ResolveRequest, Resolved};

/// Shortest change-hash prefix accepted for `keep`.
const MIN_HASH_PREFIX: usize = 6;
/// Longest value shown in the change message.
const MESSAGE_VALUE_CHARS: usize = 60;

/// Settle an open conflict: keep one value, or write a new one
///
/// `keep` names the value by its change hash (or a prefix of at least 6 hex
/// characters) or by its device's name; `value` writes another value instead. The value is written as one new change that supersedes every concurrent value there,
/// so every device ends up with it once the change syncs. The change's message says
/// what was kept and whose it was (`resolve the conflict at /florist/phone: keep
/// "555-0101" (Sam's tablet)`), so the history is the audit trail; the conflict log
/// keeps the conflict's record. `400` when both or neither of `keep` and `value` are
/// given.
#[utoipa::path(
    post,
    path = "/v1/docs/{id}/conflicts/resolve",
    operation_id = "resolveConflict",
    tag = "documents",
    params(("id" = String, Path, description = "The document id (bs58check), or its `automerge:` URL")),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "Resolved", body = Resolved),
        (status = 409, description = "Nothing is in conflict at `path` (`no_conflict`): settled already", body = ErrorBody),
        (status = 422, description = "`keep` names none of the values (`unknown_choice`: the message lists them) or more than one (`ambiguous_choice`)", body = ErrorBody),
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
pub(super) async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ResolveRequest>,
) -> Result<Json<Resolved>, ApiError> {
    let id = parse_doc_id(&id)?;
    super::docs::refuse_system_document(&state, id, "resolved")?;
    if body.keep.is_some() == body.value.is_some() {
        return Err(ApiError::bad_request(
            "give either \"keep\" (one value's change hash, or its device's name) or \
             \"value\" (a new value), not both",
        ));
    }
    let conflicts = state.node.conflicts(id).await?;
    let Some(conflict) = conflicts.current.iter().find(|c| c.path == body.path) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_conflict",
            format!(
                "there is no open conflict at {} in this document (settled already?); \
                 GET /v1/docs/{id}/conflicts lists the open ones",
                body.path
            ),
        ));
    };
    let name = |v: &ConflictValue| {
        state
            .team
            .as_ref()
            .and_then(|t| t.actor_name(&v.actor))
            .unwrap_or_else(|| v.actor.chars().take(8).collect())
    };
    let (value, whose) = match (&body.keep, &body.value) {
        (Some(keep), None) => {
            let chosen = choose(&conflict.values, keep, &name)?;
            (chosen.value.clone(), Some(name(chosen)))
        }
        (_, value) => (value.clone().unwrap_or_default(), None),
    };
    let message = match &whose {
        Some(device) => format!(
            "resolve the conflict at {}: keep {} ({device})",
            body.path,
            short(&value)
        ),
        None => format!(
            "resolve the conflict at {}: write {}",
            body.path,
            short(&value)
        ),
    };
    let heads = state
        .node
        .change(
            id,
            ChangeRequest::Resolve {
                path: body.path.clone(),
                value: value.clone(),
            },
            Some(message),
        )
        .await?;
    Ok(Json(Resolved {
        heads: heads.iter().map(ToString::to_string).collect(),
        path: body.path,
        kept: value,
        device: whose,
    }))
}

/// The value `keep` names: a change hash (or a prefix of at least 6 characters) or the
/// name of the device that wrote it, matching exactly one value.
fn choose<'a>(
    values: &'a [ConflictValue],
    keep: &str,
    name: &dyn Fn(&ConflictValue) -> String,
) -> Result<&'a ConflictValue, ApiError> {
    let keep = keep.trim();
    let by_hash: Vec<&ConflictValue> =
        if keep.len() >= MIN_HASH_PREFIX && keep.chars().all(|c| c.is_ascii_hexdigit()) {
            let lower = keep.to_ascii_lowercase();
            values
                .iter()
                .filter(|v| v.change.is_some_and(|c| c.to_string().starts_with(&lower)))
                .collect()
        } else {
            Vec::new()
        };
    let matches = if by_hash.is_empty() {
        values
            .iter()
            .filter(|v| name(v).eq_ignore_ascii_case(keep))
            .collect()
    } else {
        by_hash
    };
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_choice",
            format!(
                "{keep:?} is none of the values in conflict here; name one by its change hash \
                 (at least {MIN_HASH_PREFIX} characters) or its device: {}",
                values
                    .iter()
                    .map(|v| format!(
                        "{} ({})",
                        v.change.map(|c| c.to_string()).unwrap_or_default(),
                        name(v)
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ambiguous_choice",
            format!("{keep:?} matches more than one value here; give more of the change hash"),
        )),
    }
}

/// A value on one line, cut for a change message.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= MESSAGE_VALUE_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MESSAGE_VALUE_CHARS - 1).collect();
    cut.push('…');
    cut
}
