//! Team and device names: short, printable, trimmed.

use crate::TeamError;

/// Longest team or device name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Checks a team or device name and returns it trimmed.
///
/// A name has 1 to [`MAX_NAME_CHARS`] characters after trimming and no control characters.
pub fn validate_name(raw: &str) -> Result<String, TeamError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(TeamError::BadName("a name cannot be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(TeamError::BadName("a name has at most 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(TeamError::BadName(
            "a name cannot contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Whether a name taken from a signed op is exactly what [`validate_name`] would produce.
pub(crate) fn is_canonical(name: &str) -> bool {
    validate_name(name).is_ok_and(|valid| valid == name)
}

/// Makes a valid name out of whatever a joining device proposed: control characters become
/// spaces, the result is trimmed and cut to [`MAX_NAME_CHARS`]; an empty result becomes
/// `fallback`.
pub(crate) fn sanitize(raw: &str, fallback: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(4 * MAX_NAME_CHARS)
        .collect();
    let cut: String = cleaned.trim().chars().take(MAX_NAME_CHARS).collect();
    let name = cut.trim();
    if name.is_empty() {
        fallback.to_owned()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert_eq!(validate_name("  laptop "), Ok("laptop".to_owned()));
        assert!(validate_name("   ").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"é".repeat(64)).is_ok());
        assert!(validate_name(&"é".repeat(65)).is_err());
        assert!(is_canonical("laptop") && !is_canonical(" laptop"));
    }

    #[test]
    fn sanitizes() {
        assert_eq!(sanitize("a\tb\n", "device"), "a b");
        assert_eq!(sanitize("\u{7}\n ", "device"), "device");
        assert_eq!(sanitize(&"x".repeat(500), "device").len(), MAX_NAME_CHARS);
        assert!(validate_name(&sanitize(&format!("{}\u{1}y", " ".repeat(63)), "d")).is_ok());
    }
}
