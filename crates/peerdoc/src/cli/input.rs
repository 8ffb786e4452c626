//! What the user hands a command: document ids, JSON pointers, and values given inline,
//! on stdin (`-`) or in a file (`@file`). All of it is checked before any request.

use std::io::Read as _;
use std::path::Path;

use peerdoc_core::DocumentId;
use serde_json::Value;

use super::error::CliError;

/// A document id or `automerge:` URL, checked with its checksum.
pub(super) fn document_id(text: &str) -> Result<DocumentId, CliError> {
    DocumentId::parse(text.trim()).map_err(CliError::BadDocumentId)
}

/// A JSON pointer (RFC 6901): empty (the whole document) or starting with `/`.
pub(super) fn pointer(text: &str) -> Result<&str, CliError> {
    if text.is_empty() || text.starts_with('/') {
        Ok(text)
    } else {
        Err(CliError::BadPointer(text.to_owned()))
    }
}

/// The text an argument stands for: itself, stdin for `-`, a file's content for `@file`.
pub(super) fn text_argument(argument: &str) -> Result<String, CliError> {
    if argument == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| CliError::ReadInput {
                what: "stdin".to_owned(),
                source,
            })?;
        return Ok(text);
    }
    if let Some(path) = argument.strip_prefix('@') {
        return read_file(Path::new(path));
    }
    Ok(argument.to_owned())
}

fn read_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::ReadInput {
        what: path.display().to_string(),
        source,
    })
}

/// A value for `doc set`: JSON, or else, for text that does not try to be JSON (it does
/// not start with `{`, `[` or `"`), that text as a string, without a final line break.
pub(super) fn value(text: &str) -> Result<Value, CliError> {
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(error) => {
            let bare = text.strip_suffix('\n').unwrap_or(text);
            let bare = bare.strip_suffix('\r').unwrap_or(bare);
            let tries_json = bare.trim_start().starts_with(['{', '[', '"']);
            if bare.trim().is_empty() || tries_json {
                Err(CliError::InvalidValue(error))
            } else {
                Ok(Value::String(bare.to_owned()))
            }
        }
    }
}

/// The content for `doc new`: a JSON object.
pub(super) fn content(text: &str) -> Result<Value, CliError> {
    let content: Value = serde_json::from_str(text).map_err(CliError::InvalidContent)?;
    if content.is_object() {
        Ok(content)
    } else {
        Err(CliError::ContentNotObject(json_kind(&content)))
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> Value {
        value(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn values_are_json_else_bare_words_are_strings() {
        assert_eq!(ok("42"), json!(42));
        assert_eq!(ok("{\"a\": [1, true]}"), json!({"a": [1, true]}));
        assert_eq!(ok("\"quoted\""), json!("quoted"));
        assert_eq!(ok("Hello"), json!("Hello"));
        assert_eq!(ok("555-0101"), json!("555-0101"));
        assert_eq!(ok("two words\n"), json!("two words"));
        assert_eq!(ok("null"), Value::Null);
    }

    #[test]
    fn text_that_tries_to_be_json_must_be_json() {
        for bad in ["{\"a\":", "[1,", "\"open", "", "  \n"] {
            assert!(
                matches!(value(bad), Err(CliError::InvalidValue(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn content_must_be_an_object() {
        assert_eq!(
            content("{\"title\": \"x\"}").ok(),
            Some(json!({"title": "x"}))
        );
        assert!(matches!(
            content("[1]"),
            Err(CliError::ContentNotObject("an array"))
        ));
        assert!(matches!(content("{"), Err(CliError::InvalidContent(_))));
    }

    #[test]
    fn pointers_start_with_a_slash() {
        assert!(pointer("/a/0").is_ok());
        assert!(pointer("").is_ok());
        assert!(pointer("title").is_err());
    }
}
