//! The team routes' request and response bodies (`docs/api.md#team`), shared by the
//! server and the CLI client so the two cannot disagree.

use serde::{Deserialize, Serialize};

/// `GET /v1/team`: this device's team, or what to do when it has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamStatus {
    /// `none` (no team yet: syncs with nobody), `member`, `removed` (this device was
    /// revoked), `open` (`--open`: syncs with any peerdoc, no team) or `shared_key`
    /// (a team key file from before teams: every holder of the key is a full member).
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Member {
    /// Its libp2p peer id.
    pub device: String,
    /// Its name, e.g. "Sam's tablet".
    pub name: String,
    /// `admin`, `editor` or `viewer`.
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Revoked {
    /// Name of the admin who removed the device.
    pub by: String,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

/// `POST /v1/team`: create a team on this device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// The team's name, e.g. "Hill Barn crew".
    pub name: String,
    /// This device's name [default: `team.device_name`, else the host name].
    #[serde(default)]
    pub device_name: Option<String>,
}

/// `POST /v1/team/join`: join a team with an invite code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinTeam {
    /// The code an admin's `peerdoc team invite` printed.
    pub code: String,
    /// This device's name (an invite made for a named device overrides it).
    #[serde(default)]
    pub device_name: Option<String>,
}

/// `POST /v1/team/invites`: invite a device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    /// `admin`, `editor` (the default) or `viewer`.
    #[serde(default)]
    pub role: Option<String>,
    /// The name the new device gets.
    #[serde(default)]
    pub name: Option<String>,
    /// Seconds until the code stops working [default: 86,400, a day].
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
    /// How many devices may join with it [default: 1].
    #[serde(default)]
    pub uses: Option<u32>,
}

/// An invite, as `POST`/`GET /v1/team/invites` show it. The code is shown only to
/// the admin who made it (`POST`); listings leave it out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InviteInfo {
    /// Identifies the invite without revealing it (hex).
    pub id: String,
    /// The code to read aloud or type, only in the answer to its creation.
    pub code: Option<String>,
    /// The role it grants.
    pub role: String,
    /// The name it gives the device, if any.
    pub name: Option<String>,
    /// When it was made and when it expires (ms since the epoch).
    pub created_ms: u64,
    /// Expiry (ms since the epoch), if any.
    pub expires_ms: Option<u64>,
    /// Devices that may still join with it.
    pub uses_left: u32,
    /// `active`, `expired`, `used` or `revoked`.
    pub status: String,
    /// The addresses a joining device dials (this device's enrolment listener).
    pub addrs: Vec<String>,
    /// Path of its QR code (SVG) on this API.
    pub qr_svg: String,
}

/// `PATCH /v1/team/members/{device}`: rename a device or change its role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    /// Its new name.
    #[serde(default)]
    pub name: Option<String>,
    /// Its new role.
    #[serde(default)]
    pub role: Option<String>,
}
