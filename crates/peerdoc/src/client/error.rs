//! What can go wrong talking to the daemon.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Where the client's token came from, so a rejection can say what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` or `PEERDOC_TOKEN`.
    Given,
    /// The daemon's token file.
    File(PathBuf),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Given => f.write_str("--token/PEERDOC_TOKEN"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A failed call to the daemon's API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon answered with its JSON error shape (`docs/api.md`, "Errors").
    #[error("{message} ({code})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The machine-readable code, e.g. `not_found`.
        code: String,
        /// The daemon's explanation.
        message: String,
    },
    /// No daemon is serving this data directory: it has no `api.addr`.
    #[error(
        "no daemon is running for data dir {} (no {}); start one with `{}`",
        data_dir.display(),
        data_dir.join(super::API_ADDR_FILE).display(),
        run_hint(Some(data_dir))
    )]
    NotRunning {
        /// The data directory looked in.
        data_dir: PathBuf,
    },
    /// Nothing accepts connections at the daemon's URL.
    #[error(
        "cannot reach the daemon at {url} ({origin}): connection refused; is it running? \
         start it with `{}`",
        run_hint(data_dir.as_deref())
    )]
    Unreachable {
        /// The URL tried.
        url: String,
        /// Where that URL came from.
        origin: String,
        /// The data directory, when the URL came from it.
        data_dir: Option<PathBuf>,
    },
    /// The daemon refused the token (HTTP 401).
    #[error("{}", token_rejected(token))]
    TokenRejected {
        /// Where the token came from.
        token: TokenSource,
    },
    /// The token file exists (or should) but cannot be read.
    #[error(
        "cannot read the API token from {}: {source}; pass --token or PEERDOC_TOKEN, or \
         the daemon's --data-dir",
        path.display()
    )]
    ReadToken {
        /// The token file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token is empty or holds characters a header cannot carry.
    #[error("the API token from {token} is empty or not printable ASCII")]
    BadToken {
        /// Where the token came from.
        token: TokenSource,
    },
    /// A discovery file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The platform has no default data directory and none was given.
    #[error("no data directory: pass --data-dir or set PEERDOC_DATA_DIR")]
    NoDataDir,
    /// The API URL is not an `http://` URL.
    #[error("the API URL {url:?} ({origin}) is not an http:// URL")]
    BadApiUrl {
        /// The URL.
        url: String,
        /// Where it came from.
        origin: String,
    },
    /// The daemon answered with an error status but not its JSON error shape.
    #[error("the daemon answered {endpoint} with HTTP {status}: {body}")]
    UnexpectedStatus {
        /// The HTTP status.
        status: u16,
        /// The endpoint called.
        endpoint: String,
        /// The start of the body, for a human to read.
        body: String,
    },
    /// A successful response whose body is not what the API promises.
    #[error("unexpected response from {endpoint}: {detail}")]
    BadResponse {
        /// The endpoint called.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },
    /// A request body could not be encoded.
    #[error("cannot encode the request: {0}")]
    Encode(String),
    /// The connection failed other than by a refusal (reset, timeout, protocol error).
    #[error("request to {url} failed: {source}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What failed.
        #[source]
        source: ureq::Error,
    },
}

impl ClientError {
    /// The error a non-success response with this (possibly empty or foreign) body means.
    pub(super) fn from_error_body(status: u16, endpoint: &str, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct ApiError {
            code: String,
            message: String,
        }
        match serde_json::from_slice::<ApiError>(body) {
            Ok(ApiError { code, message }) => Self::Api {
                status,
                code,
                message,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let mut shown: String = text.chars().take(200).map(printable).collect();
                if shown.trim().is_empty() {
                    shown = "(no body)".to_owned();
                }
                Self::UnexpectedStatus {
                    status,
                    endpoint: endpoint.to_owned(),
                    body: shown,
                }
            }
        }
    }

    /// The daemon's error code, for [`ClientError::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The command that starts a daemon on `data_dir`.
fn run_hint(data_dir: Option<&std::path::Path>) -> String {
    match data_dir {
        Some(dir) if Some(dir) != super::default_data_dir().as_deref() => {
            format!("peerdoc run --data-dir {}", dir.display())
        }
        _ => "peerdoc run".to_owned(),
    }
}

fn token_rejected(token: &TokenSource) -> String {
    match token {
        TokenSource::File(path) => {
            format!("token rejected; is {} from this daemon?", path.display())
        }
        TokenSource::Given => {
            "token rejected; does --token/PEERDOC_TOKEN match this daemon's api.token?".to_owned()
        }
    }
}

/// A character safe to show on a terminal (control characters could move the cursor).
fn printable(c: char) -> char {
    if c.is_control() { ' ' } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_error_shape_is_surfaced_as_such() {
        let body = br#"{"code":"not_found","message":"no document 4NMN"}"#;
        let error = ClientError::from_error_body(404, "/v1/docs/x", body);
        assert_eq!(error.code(), Some("not_found"));
        assert_eq!(error.to_string(), "no document 4NMN (not_found)");
    }

    #[test]
    fn a_foreign_error_body_is_shown_without_control_characters() {
        let error = ClientError::from_error_body(502, "/v1/docs", b"bad\x1b[2Jgateway");
        assert_eq!(
            error.to_string(),
            "the daemon answered /v1/docs with HTTP 502: bad [2Jgateway"
        );
        let empty = ClientError::from_error_body(500, "/v1/docs", b"");
        assert!(empty.to_string().ends_with("(no body)"));
    }

    #[test]
    fn a_rejected_token_names_its_file() {
        let error = ClientError::TokenRejected {
            token: TokenSource::File(PathBuf::from("/d/api.token")),
        };
        assert_eq!(
            error.to_string(),
            "token rejected; is /d/api.token from this daemon?"
        );
    }

    #[test]
    fn not_running_names_the_data_dir_and_the_command() {
        let error = ClientError::NotRunning {
            data_dir: PathBuf::from("/tmp/pd"),
        };
        assert_eq!(
            error.to_string(),
            "no daemon is running for data dir /tmp/pd (no /tmp/pd/api.addr); start one with \
             `peerdoc run --data-dir /tmp/pd`"
        );
    }
}
