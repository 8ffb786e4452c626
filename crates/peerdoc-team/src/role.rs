//! What a member may do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::TeamError;

/// A member's role. Admins manage membership; editors change documents; viewers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May add, rename, re-role and remove devices, and write documents.
    Admin,
    /// May write documents.
    Editor,
    /// May only read documents.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Editor, Role::Viewer];

    /// Whether this role may change documents.
    pub fn can_write(self) -> bool {
        matches!(self, Role::Admin | Role::Editor)
    }

    /// Whether this role may change the team's membership.
    pub fn can_admin(self) -> bool {
        matches!(self, Role::Admin)
    }

    /// The lowercase name used in JSON, on the command line and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TeamError;

    /// Parses a role name, ignoring case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Role::ALL
            .into_iter()
            .find(|role| role.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| TeamError::UnknownRole(wanted.chars().take(32).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            assert_eq!(
                serde_json::to_string(&role).ok(),
                Some(format!("\"{role}\""))
            );
        }
        assert_eq!(" Editor ".parse::<Role>(), Ok(Role::Editor));
        let err = "owner".parse::<Role>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown role 'owner': use admin, editor or viewer")
        );
    }

    #[test]
    fn permissions() {
        assert!(Role::Admin.can_admin() && Role::Admin.can_write());
        assert!(!Role::Editor.can_admin() && Role::Editor.can_write());
        assert!(!Role::Viewer.can_admin() && !Role::Viewer.can_write());
    }
}
