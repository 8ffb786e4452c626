//! The team routes of the client: `/v1/team…` (`docs/api.md#teams`).

use super::{Client, ClientError, to_json_body};
use crate::api::{
    CreateInvite, CreateTeam, InviteInfo, JoinTeam, PeerAdded, PeerAddr, TeamStatus, UpdateMember,
};

impl Client {
    /// `POST /v1/peers`: keep dialing `addr`.
    pub fn add_peer(&self, addr: &str) -> Result<PeerAdded, ClientError> {
        let path = "/v1/peers";
        let body = to_json_body(&PeerAddr {
            addr: addr.to_owned(),
        })?;
        let request = self.post(path).content_type("application/json");
        self.json(path, request.send(&body[..]))
    }

    /// `DELETE /v1/peers`: stop dialing `addr`.
    pub fn remove_peer(&self, addr: &str) -> Result<(), ClientError> {
        let path = "/v1/peers";
        let body = to_json_body(&PeerAddr {
            addr: addr.to_owned(),
        })?;
        let request = self
            .agent
            .delete(self.url(path))
            .header("authorization", &self.authorization)
            .force_send_body()
            .content_type("application/json");
        self.send(path, request.send(&body[..])).map(drop)
    }

    /// `GET /v1/team`.
    pub fn team(&self) -> Result<TeamStatus, ClientError> {
        let path = "/v1/team";
        self.json(path, self.get(path).call())
    }

    /// `POST /v1/team`: a new team with this device as its first admin.
    pub fn create_team(&self, request: &CreateTeam) -> Result<TeamStatus, ClientError> {
        let path = "/v1/team";
        let body = to_json_body(request)?;
        let request = self.post(path).content_type("application/json");
        self.json(path, request.send(&body[..]))
    }

    /// `POST /v1/team/join`: joins with an invite code (the daemon dials the inviter).
    pub fn join_team(&self, request: &JoinTeam) -> Result<TeamStatus, ClientError> {
        let path = "/v1/team/join";
        let body = to_json_body(request)?;
        let request = self.post(path).content_type("application/json");
        self.json(path, request.send(&body[..]))
    }

    /// `POST /v1/team/invites`.
    pub fn create_invite(&self, request: &CreateInvite) -> Result<InviteInfo, ClientError> {
        let path = "/v1/team/invites";
        let body = to_json_body(request)?;
        let request = self.post(path).content_type("application/json");
        self.json(path, request.send(&body[..]))
    }

    /// `GET /v1/team/invites`.
    pub fn invites(&self) -> Result<Vec<InviteInfo>, ClientError> {
        let path = "/v1/team/invites";
        self.json(path, self.get(path).call())
    }

    /// `DELETE /v1/team/invites/{id}`.
    pub fn revoke_invite(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/team/invites/{id}");
        let request = self
            .agent
            .delete(self.url(&path))
            .header("authorization", &self.authorization);
        self.send(&path, request.call()).map(drop)
    }

    /// `PATCH /v1/team/members/{device}`: rename a device or change its role.
    pub fn update_member(
        &self,
        device: &str,
        update: &UpdateMember,
    ) -> Result<TeamStatus, ClientError> {
        let path = format!("/v1/team/members/{}", encode_segment(device));
        let body = to_json_body(update)?;
        let request = self.patch(&path).content_type("application/json");
        self.json(&path, request.send(&body[..]))
    }

    /// `DELETE /v1/team/members/{device}`: removes a device from the team.
    pub fn revoke_member(&self, device: &str) -> Result<TeamStatus, ClientError> {
        let path = format!("/v1/team/members/{}", encode_segment(device));
        let request = self
            .agent
            .delete(self.url(&path))
            .header("authorization", &self.authorization);
        self.json(&path, request.call())
    }
}

/// Percent-encodes a device name or id for one path segment.
fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
