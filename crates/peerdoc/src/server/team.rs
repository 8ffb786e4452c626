//! `/v1/team…`: the team this device is in, invites, members; and the guard that
//! refuses writes on a viewer device.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiJson;
use super::{ApiError, AppState};
use crate::api::{
    CreateInvite, CreateTeam, ErrorBody, InviteInfo, JoinTeam, TeamStatus, UpdateMember,
};
use crate::team::TeamService;

fn service(state: &AppState) -> Result<&Arc<TeamService>, ApiError> {
    state.team.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this server has no team (an embedder's node)",
        )
    })
}

/// This device's team and its members, or what to do without one
#[utoipa::path(
    get,
    path = "/v1/team",
    operation_id = "team",
    tag = "team",
    responses(
        (status = 200, description = "The team", body = TeamStatus),
        (status = 401, response = super::openapi::Unauthorized),
    )
)]
pub(super) async fn status(State(state): State<AppState>) -> Result<Json<TeamStatus>, ApiError> {
    Ok(Json(service(&state)?.status().await))
}

/// Create a team; this device becomes its first admin
#[utoipa::path(
    post,
    path = "/v1/team",
    operation_id = "createTeam",
    tag = "team",
    request_body = CreateTeam,
    responses(
        (status = 201, description = "The team", body = TeamStatus),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 409, response = super::openapi::Conflict),
        (status = 413, response = super::openapi::TooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
    )
)]
pub(super) async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateTeam>,
) -> Result<(StatusCode, Json<TeamStatus>), ApiError> {
    let team = service(&state)?;
    team.create(&body.name, body.device_name).await?;
    Ok((StatusCode::CREATED, Json(team.status().await)))
}

/// Join a team with an invite code (the daemon dials the inviting device)
///
/// Answers once joined. `400 bad_invite_code` for a typo; `403 invite_refused` for a
/// code used, expired or withdrawn, or a device removed (the message says which);
/// `409 inviter_unreachable` lists every address in the code with what each said.
#[utoipa::path(
    post,
    path = "/v1/team/join",
    operation_id = "joinTeam",
    tag = "team",
    request_body = JoinTeam,
    responses(
        (status = 200, description = "The team", body = TeamStatus),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 409, response = super::openapi::Conflict),
        (status = 413, response = super::openapi::TooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
    )
)]
pub(super) async fn join(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<JoinTeam>,
) -> Result<Json<TeamStatus>, ApiError> {
    let team = service(&state)?;
    team.join(&body.code, body.device_name).await?;
    Ok(Json(team.status().await))
}

/// The invites this device made (without their codes)
#[utoipa::path(
    get,
    path = "/v1/team/invites",
    operation_id = "invites",
    tag = "team",
    responses(
        (status = 200, description = "Invites", body = Vec<InviteInfo>),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 409, response = super::openapi::Conflict),
    )
)]
pub(super) async fn invites(
    State(state): State<AppState>,
) -> Result<Json<Vec<InviteInfo>>, ApiError> {
    Ok(Json(service(&state)?.invites().await?))
}

/// Invite a device (admins): the code, shown only here
#[utoipa::path(
    post,
    path = "/v1/team/invites",
    operation_id = "createInvite",
    tag = "team",
    request_body = CreateInvite,
    responses(
        (status = 201, description = "The invite, with its code", body = InviteInfo),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 409, response = super::openapi::Conflict),
        (status = 413, response = super::openapi::TooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
    )
)]
pub(super) async fn create_invite(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateInvite>,
) -> Result<(StatusCode, Json<InviteInfo>), ApiError> {
    let invite = service(&state)?.invite(body).await?;
    Ok((StatusCode::CREATED, Json(invite)))
}

/// Withdraw an invite
#[utoipa::path(
    delete,
    path = "/v1/team/invites/{id}",
    operation_id = "revokeInvite",
    tag = "team",
    params(("id" = String, Path, description = "The invite's id (hex)")),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 404, description = "No such invite (`not_found`)", body = ErrorBody),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 409, response = super::openapi::Conflict),
    )
)]
pub(super) async fn revoke_invite(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    service(&state)?.revoke_invite(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An invite's code as a QR code, while the invite can be used
#[utoipa::path(
    get,
    path = "/v1/team/invites/{id}/qr.svg",
    operation_id = "inviteQr",
    tag = "team",
    params(("id" = String, Path, description = "The invite's id (hex)")),
    responses(
        (status = 200, description = "SVG", body = String, content_type = "image/svg+xml"),
        (status = 404, description = "No such invite, or one that admits no one any more: \
            withdrawn, expired or used up (`not_found`, the message says which)", body = ErrorBody),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 409, response = super::openapi::Conflict),
    )
)]
pub(super) async fn invite_qr(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let svg = service(&state)?.invite_qr_svg(&id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}

/// Rename a device or change its role
///
/// A device may rename only itself unless it is an admin (`403 not_admin`);
/// `409 last_admin` keeps a team from losing its last admin.
#[utoipa::path(
    patch,
    path = "/v1/team/members/{device}",
    operation_id = "updateMember",
    tag = "team",
    params(("device" = String, Path, description = "A member's name (any case) or peer id")),
    request_body = UpdateMember,
    responses(
        (status = 200, description = "The team", body = TeamStatus),
        (status = 404, description = "No such member (`unknown_device`)", body = ErrorBody),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 409, response = super::openapi::Conflict),
        (status = 413, response = super::openapi::TooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
    )
)]
pub(super) async fn update_member(
    State(state): State<AppState>,
    Path(device): Path<String>,
    ApiJson(body): ApiJson<UpdateMember>,
) -> Result<Json<TeamStatus>, ApiError> {
    let team = service(&state)?;
    team.update_member(&device, body).await?;
    Ok(Json(team.status().await))
}

/// Remove a device from the team: every member refuses it from then on
#[utoipa::path(
    delete,
    path = "/v1/team/members/{device}",
    operation_id = "revokeMember",
    tag = "team",
    params(("device" = String, Path, description = "A member's name (any case) or peer id")),
    responses(
        (status = 200, description = "The team", body = TeamStatus),
        (status = 404, description = "No such member (`unknown_device`)", body = ErrorBody),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 409, response = super::openapi::Conflict),
    )
)]
pub(super) async fn revoke_member(
    State(state): State<AppState>,
    Path(device): Path<String>,
) -> Result<Json<TeamStatus>, ApiError> {
    let team = service(&state)?;
    team.revoke(&device).await?;
    Ok(Json(team.status().await))
}

/// Refuses document writes with 403 `read_only` on a device that may only read (a
/// viewer, or a device removed from its team): its changes would be refused by every
/// member anyway, so the app hears it now rather than never seeing them spread.
pub(super) async fn refuse_writes_when_read_only(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let writes = request.method() != Method::GET && request.method() != Method::HEAD;
    let path = request.uri().path();
    let document_write = writes && path.starts_with("/v1/docs") && !path.ends_with("/fetch");
    if document_write && let Some(reason) = state.team.as_ref().and_then(|t| t.read_only_reason()) {
        return ApiError::new(StatusCode::FORBIDDEN, "read_only", reason).into_response();
    }
    next.run(request).await
}
