//! `/v1/team…`: the team this device is in, its members and invites (`docs/teams.md`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::status::Role;

/// What [`TeamStatus::state`] says about this device.
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TeamState {
    /// No team yet: syncs with nobody.
    None,
    /// A member.
    Member,
    /// Removed from its team: keeps its copy of the documents, syncs with nobody.
    Removed,
    /// `--open`: syncs with any peerdoc, no team.
    Open,
    /// A team key file from before teams: every holder of the key is a full member.
    SharedKey,
}

/// The values of [`InviteInfo::status`].
#[derive(Debug, Clone, Copy, ToSchema)]
pub enum InviteState {
    /// Can be used.
    #[serde(rename = "active")]
    Active,
    /// Past its expiry.
    #[serde(rename = "expired")]
    Expired,
    /// Every use spent.
    #[serde(rename = "used up")]
    UsedUp,
    /// Withdrawn by an admin.
    #[serde(rename = "revoked")]
    Revoked,
}

/// `GET /v1/team`: this device's team, or what to do when it has none. `/v1/status`
/// carries the same object as `team`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
#[schema(example = json!({
    "state": "member",
    "summary": "\"Sam's tablet\" is an editor of team \"Hill Barn crew\"",
    "team_id": "5f0c9a1e2b3d4c5e", "name": "Hill Barn crew",
    "me": {"device": "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK",
           "name": "Sam's tablet", "role": "editor", "added_by": "Planner laptop",
           "added_at_ms": 1765058591000_u64, "this_device": true, "connected": false,
           "last_seen_ms": null, "revoked": null},
    "members": []
}))]
pub struct TeamStatus {
    /// `none` (no team yet: syncs with nobody), `member`, `removed` (this device was
    /// revoked), `open` (`--open`: syncs with any peerdoc, no team) or `shared_key`
    /// (a team key file from before teams: every holder of the key is a full member).
    #[schema(value_type = TeamState)]
    pub state: String,
    /// What it means for a person, in one sentence (what to do next when not a member).
    pub summary: String,
    /// The team's id (hex), when in one.
    pub team_id: Option<String>,
    /// The team's name.
    pub name: Option<String>,
    /// This device.
    pub me: Option<Member>,
    /// Every member ever added, revoked ones included (with `revoked` set).
    pub members: Vec<Member>,
}

/// One member device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Member {
    /// Its libp2p peer id.
    pub device: String,
    /// Its name, e.g. "Sam's tablet".
    pub name: String,
    /// `admin`, `editor` or `viewer`.
    #[schema(value_type = Role)]
    pub role: String,
    /// Name of the admin who added it (none for the team's founder).
    pub added_by: Option<String>,
    /// When it was added (ms since the epoch).
    pub added_at_ms: u64,
    /// Whether this is the device answering.
    pub this_device: bool,
    /// Connected to this device now.
    pub connected: bool,
    /// Last heard from (ms since the epoch), while connected or since.
    pub last_seen_ms: Option<u64>,
    /// When it was removed from the team, by whom.
    pub revoked: Option<Revoked>,
}

/// A revocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Revoked {
    /// Name of the admin who removed the device.
    pub by: String,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

/// `POST /v1/team`: create a team on this device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// The team's name, e.g. "Hill Barn crew".
    pub name: String,
    /// This device's name [default: `team.device_name`, else the host name].
    #[serde(default)]
    pub device_name: Option<String>,
}

/// `POST /v1/team/join`: join a team with an invite code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTeam {
    /// The code an admin's `peerdoc team invite` printed.
    pub code: String,
    /// This device's name (an invite made for a named device overrides it).
    #[serde(default)]
    pub device_name: Option<String>,
}

/// `POST /v1/team/invites`: invite a device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    /// `admin`, `editor` (the default) or `viewer`.
    #[serde(default)]
    #[schema(value_type = Option<Role>)]
    pub role: Option<String>,
    /// The name the new device gets.
    #[serde(default)]
    pub name: Option<String>,
    /// Seconds until the code stops working [default: 86,400, a day; at most ten
    /// years].
    #[serde(default)]
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub expires_in_secs: Option<u64>,
    /// How many devices may join with it [default: 1; at most 100].
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub uses: Option<u32>,
}

/// An invite, as `POST`/`GET /v1/team/invites` show it. The code is shown only to
/// the admin who made it (`POST`); listings leave it out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct InviteInfo {
    /// Identifies the invite without revealing it (hex).
    pub id: String,
    /// The code to read aloud or type, only in the answer to its creation.
    pub code: Option<String>,
    /// The role it grants.
    #[schema(value_type = Role)]
    pub role: String,
    /// The name it gives the device, if any.
    pub name: Option<String>,
    /// When it was made and when it expires (ms since the epoch).
    pub created_ms: u64,
    /// Expiry (ms since the epoch), if any.
    pub expires_ms: Option<u64>,
    /// Devices that may still join with it.
    pub uses_left: u32,
    /// `active`, `expired`, `used up` or `revoked`.
    #[schema(value_type = InviteState)]
    pub status: String,
    /// The addresses a joining device dials (this device's enrolment listener).
    pub addrs: Vec<String>,
    /// Path of its QR code (SVG) on this API.
    pub qr_svg: String,
}

/// `PATCH /v1/team/members/{device}`: rename a device or change its role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    /// Its new name.
    #[serde(default)]
    pub name: Option<String>,
    /// Its new role (admins only).
    #[serde(default)]
    #[schema(value_type = Option<Role>)]
    pub role: Option<String>,
}
