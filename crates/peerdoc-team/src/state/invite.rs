//! An invite as the inviter keeps it.

use std::fmt;

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::{InviteSecret, InviteTag, Role};

/// Most invites a team state keeps.
pub const MAX_INVITES: usize = 64;

/// Most joins one invite allows.
pub const MAX_INVITE_USES: u32 = 100;

/// An invite issued by this device. Its `Debug` output hides the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// Names the invite without revealing its secret.
    pub tag: InviteTag,
    /// The secret in the code; keys the enrolment handshake.
    pub secret: InviteSecret,
    /// The role given to devices joining with it.
    pub role: Role,
    /// The name given to the joining device; `None` keeps the name it proposes.
    pub name: Option<String>,
    /// When it was issued.
    pub created_ms: u64,
    /// When it stops working, if ever.
    pub expires_ms: Option<u64>,
    /// Joins left.
    pub uses_left: u32,
    /// Devices that joined with it.
    pub used_by: Vec<PeerId>,
    /// Whether an admin cancelled it.
    pub revoked: bool,
    /// The admin device that issued it.
    pub created_by: PeerId,
}

impl Invite {
    /// Whether the invite can still be used at `now_ms`, and if not, why.
    pub fn status(&self, now_ms: u64) -> InviteStatus {
        if self.revoked {
            InviteStatus::Revoked
        } else if self.expires_ms.is_some_and(|expires| now_ms >= expires) {
            InviteStatus::Expired
        } else if self.uses_left == 0 {
            InviteStatus::UsedUp
        } else {
            InviteStatus::Active
        }
    }
}

/// Whether an invite can still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteStatus {
    /// It can be used.
    Active,
    /// Its time is up.
    Expired,
    /// It was used as many times as allowed.
    UsedUp,
    /// An admin cancelled it.
    Revoked,
}

impl fmt::Display for InviteStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InviteStatus::Active => "active",
            InviteStatus::Expired => "expired",
            InviteStatus::UsedUp => "used up",
            InviteStatus::Revoked => "revoked",
        })
    }
}
