//! RFC 6901 JSON pointers: parsing, escaping and resolving them against a document.

use automerge::{ObjId, ObjType, ReadDoc, Value};

use super::ModelError;

/// A parsed JSON pointer that remembers its source text, so errors can quote the prefix
/// that failed.
#[derive(Debug, Clone)]
pub(crate) struct Pointer<'a> {
    source: &'a str,
    /// Unescaped reference tokens.
    tokens: Vec<String>,
    /// Byte offset in `source` where each token ends, for error prefixes.
    ends: Vec<usize>,
}

impl<'a> Pointer<'a> {
    /// Parses `source`: `""` is the root, every other pointer starts with `/`;
    /// `~1` is `/` and `~0` is `~`, any other `~` is an error.
    pub(crate) fn parse(source: &'a str) -> Result<Self, ModelError> {
        let mut tokens = Vec::new();
        let mut ends = Vec::new();
        if source.is_empty() {
            return Ok(Self {
                source,
                tokens,
                ends,
            });
        }
        let Some(rest) = source.strip_prefix('/') else {
            return Err(invalid(source, "a non-empty pointer must start with '/'"));
        };
        let mut offset = 1;
        for raw in rest.split('/') {
            offset += raw.len();
            tokens.push(
                unescape(raw).ok_or_else(|| {
                    invalid(&source[..offset], "'~' must be followed by '0' or '1'")
                })?,
            );
            ends.push(offset);
            offset += 1;
        }
        Ok(Self {
            source,
            tokens,
            ends,
        })
    }

    /// The tokens, unescaped.
    #[cfg(test)]
    pub(crate) fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The pointer text up to and including token `count - 1` (`""` for 0).
    pub(crate) fn prefix(&self, count: usize) -> String {
        match count.checked_sub(1).and_then(|i| self.ends.get(i)) {
            Some(&end) => self.source[..end].to_owned(),
            None => String::new(),
        }
    }

    /// Splits off the last token: the parent's tokens and the last one, or `None` for root.
    pub(crate) fn split_last(&self) -> Option<(&[String], &str)> {
        self.tokens
            .split_last()
            .map(|(last, parent)| (parent, last.as_str()))
    }
}

/// Escapes one key as a pointer token (`~` → `~0`, `/` → `~1`).
pub(crate) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Appends one escaped token to a pointer.
pub(crate) fn push_token(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", escape(token))
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn invalid(path: &str, reason: &'static str) -> ModelError {
    ModelError::InvalidPointer {
        path: path.to_owned(),
        reason,
    }
}

/// Parses an array index token: `0` or a number without leading zeros.
pub(crate) fn parse_index(token: &str) -> Option<usize> {
    let digits_only = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// A short name for an object type, for error messages.
pub(crate) fn type_name(obj_type: ObjType) -> &'static str {
    match obj_type {
        ObjType::Map | ObjType::Table => "map",
        ObjType::List => "list",
        ObjType::Text => "text",
    }
}

/// Where a token lands inside a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot<'t> {
    /// A key of a map.
    Key(&'t str),
    /// An existing element (or a position, for inserts) of a list or text.
    Index(usize),
    /// `-`: one past the last element.
    End,
}

/// Interprets `token` as a slot of a container of type `obj_type`. `path` is for errors.
pub(crate) fn slot<'t>(
    obj_type: ObjType,
    token: &'t str,
    path: &str,
) -> Result<Slot<'t>, ModelError> {
    match obj_type {
        ObjType::Map | ObjType::Table => Ok(Slot::Key(token)),
        ObjType::List | ObjType::Text => {
            if token == "-" {
                Ok(Slot::End)
            } else {
                parse_index(token).map(Slot::Index).ok_or_else(|| {
                    invalid(
                        path,
                        "a list index must be '-' or a number without leading zeros",
                    )
                })
            }
        }
    }
}

/// Walks `tokens` (the first `tokens.len()` tokens of `pointer`) from the root and returns
/// the map or list they lead to.
pub(crate) fn resolve_container(
    doc: &impl ReadDoc,
    pointer: &Pointer<'_>,
    tokens: &[String],
) -> Result<(ObjId, ObjType), ModelError> {
    let mut obj = ObjId::Root;
    let mut obj_type = ObjType::Map;
    for (i, token) in tokens.iter().enumerate() {
        let path = pointer.prefix(i + 1);
        let found = match slot(obj_type, token, &path)? {
            Slot::Key(key) => doc.get(&obj, key)?,
            Slot::Index(index) => {
                let len = doc.length(&obj);
                if index >= len {
                    return Err(ModelError::IndexOutOfBounds { path, index, len });
                }
                doc.get(&obj, index)?
            }
            Slot::End => {
                return Err(invalid(&path, "'-' names no existing element"));
            }
        };
        match found {
            None => return Err(ModelError::PathNotFound { path }),
            Some((Value::Object(t @ (ObjType::Map | ObjType::Table | ObjType::List)), id)) => {
                obj = id;
                obj_type = t;
            }
            Some(_) => return Err(ModelError::NotAContainer { path }),
        }
    }
    Ok((obj, obj_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc6901_examples() {
        let p = Pointer::parse("/a~1b/m~0n/0").unwrap();
        assert_eq!(p.tokens(), ["a/b", "m~n", "0"]);
        assert_eq!(p.prefix(2), "/a~1b/m~0n");
        assert_eq!(p.prefix(0), "");
        assert!(Pointer::parse("").unwrap().tokens().is_empty());
        assert_eq!(Pointer::parse("/").unwrap().tokens(), [""]);
    }

    #[test]
    fn rejects_bad_pointers() {
        assert!(matches!(
            Pointer::parse("a/b"),
            Err(ModelError::InvalidPointer { .. })
        ));
        match Pointer::parse("/ok/b~2") {
            Err(ModelError::InvalidPointer { path, .. }) => assert_eq!(path, "/ok/b~2"),
            other => panic!("{other:?}"),
        }
        assert!(Pointer::parse("/x~").is_err());
    }

    #[test]
    fn indexes_follow_rfc6901() {
        assert_eq!(parse_index("0"), Some(0));
        assert_eq!(parse_index("12"), Some(12));
        assert_eq!(parse_index("01"), None);
        assert_eq!(parse_index("-1"), None);
        assert_eq!(parse_index(""), None);
        assert_eq!(parse_index("99999999999999999999999"), None);
    }

    #[test]
    fn escape_round_trips() {
        let key = "a/~b";
        let p = push_token("", key);
        assert_eq!(p, "/a~1~0b");
        assert_eq!(Pointer::parse(&p).unwrap().tokens(), [key]);
    }
}
