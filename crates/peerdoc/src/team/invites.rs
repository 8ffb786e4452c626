//! Invites: making one (the code and its QR), listing and withdrawing them. Joining with
//! a code is `enrol.rs`; this is the admin's side of the API.

use axum::http::StatusCode;
use peerdoc_team::{InviteCode, InviteStatus, InviteTag, Role, TeamError};

use super::{
    DEFAULT_INVITE_SECS, MAX_INVITE_SECS, TeamService, conflict, internal, now_ms, os_rng,
    team_error,
};
use crate::api::{CreateInvite, InviteInfo};
use crate::server::ApiError;

impl TeamService {
    /// `POST /v1/team/invites`.
    pub async fn invite(&self, request: CreateInvite) -> Result<InviteInfo, ApiError> {
        let role: Role = match request.role.as_deref() {
            None => Role::Editor,
            Some(text) => text
                .parse()
                .map_err(|e: TeamError| ApiError::bad_request(e.to_string()))?,
        };
        let expires = request.expires_in_secs.unwrap_or(DEFAULT_INVITE_SECS);
        if expires == 0 {
            return Err(ApiError::bad_request("expires_in_secs must be positive"));
        }
        if expires > MAX_INVITE_SECS {
            return Err(ApiError::bad_request(format!(
                "expires_in_secs is at most {MAX_INVITE_SECS} (ten years)"
            )));
        }
        let uses = request.uses.unwrap_or(1);
        let addrs = self
            .enrol_addrs
            .read()
            .map(|a| a.clone())
            .unwrap_or_default();
        if addrs.is_empty() {
            return Err(conflict(
                "no_enrolment_address",
                "this device accepts no invites: its enrolment listener (team.enrol_listen) is not running",
            ));
        }
        let mut made = None;
        self.update(|file, keypair| {
            let mut rng = os_rng()?;
            let (invite, code) = file
                .team
                .new_invite(
                    keypair,
                    role,
                    request.name.as_deref(),
                    Some(expires.saturating_mul(1000)),
                    uses,
                    now_ms(),
                    &mut rng,
                    addrs.clone(),
                )
                .map_err(team_error)?;
            made = Some((invite, code));
            Ok(())
        })
        .await?;
        let (invite, code) = made.ok_or_else(|| internal("no invite made".into()))?;
        tracing::info!(invite = %invite.tag, role = %role, "invite created");
        let mut info = invite_info(&invite, now_ms());
        info.code = Some(code.to_string());
        info.addrs = code.addrs().iter().map(ToString::to_string).collect();
        Ok(info)
    }

    /// `GET /v1/team/invites`.
    pub async fn invites(&self) -> Result<Vec<InviteInfo>, ApiError> {
        self.require_managed()?;
        let guard = self.file.lock().await;
        let now = now_ms();
        Ok(guard
            .as_ref()
            .map(|f| {
                f.team
                    .invites(now)
                    .into_iter()
                    .map(|(i, _)| invite_info(i, now))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `DELETE /v1/team/invites/{id}`.
    pub async fn revoke_invite(&self, id: &str) -> Result<(), ApiError> {
        let tag: InviteTag = id
            .parse()
            .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such invite"))?;
        self.update(|file, _| {
            file.team
                .revoke_invite(&tag)
                .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such invite"))
        })
        .await
    }

    /// The code of an invite this device made, as an SVG QR code, while it can be used:
    /// a withdrawn, expired or used-up invite's code would only be refused when
    /// scanned, so it is `404` like an unknown one, with the reason.
    pub async fn invite_qr_svg(&self, id: &str) -> Result<String, ApiError> {
        self.require_managed()?;
        let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such invite");
        let tag: InviteTag = id.parse().map_err(|_| not_found())?;
        let guard = self.file.lock().await;
        let team = guard.as_ref().map(|f| &f.team).ok_or_else(not_found)?;
        let (invite, status) = team
            .invites(now_ms())
            .into_iter()
            .find(|(invite, _)| invite.tag == tag)
            .ok_or_else(not_found)?;
        if status != InviteStatus::Active {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("invite {id} is {status}: its code admits no one, so it has no QR code"),
            ));
        }
        let secret = invite.secret.clone();
        let addrs = self
            .enrol_addrs
            .read()
            .map(|a| a.clone())
            .unwrap_or_default();
        let code = InviteCode::new(secret, addrs).map_err(|e| internal(e.to_string()))?;
        Ok(code.qr_svg())
    }
}

fn invite_info(invite: &peerdoc_team::Invite, now: u64) -> InviteInfo {
    InviteInfo {
        id: invite.tag.to_string(),
        code: None,
        role: invite.role.to_string(),
        name: invite.name.clone(),
        created_ms: invite.created_ms,
        expires_ms: invite.expires_ms,
        uses_left: invite.uses_left,
        status: invite.status(now).to_string(),
        addrs: Vec::new(),
        qr_svg: format!("/v1/team/invites/{}/qr.svg", invite.tag),
    }
}
