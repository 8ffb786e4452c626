//! A blocking client of the daemon's HTTP API (`docs/api.md`).
//!
//! [`Discovery`] finds the daemon the way the CLI does (flags and environment, else the
//! files `peerdoc run` writes into its data directory); [`Client`] has one typed method
//! per endpoint. Every failure is a [`ClientError`]: the daemon's own `{code, message}`
//! errors come back as [`ClientError::Api`], and nothing the server sends can panic the
//! client.
//!
//! ```no_run
//! use peerdoc::client::{Client, Discovery};
//!
//! let client = Client::discover(&Discovery::default())?;
//! for doc in client.list_docs(false)? {
//!     println!("{} {}", doc.id, doc.title.as_deref().unwrap_or("-"));
//! }
//! # Ok::<(), peerdoc::client::ClientError>(())
//! ```

mod error;
mod events;
mod team;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use peerdoc_core::DocumentId;
use peerdoc_core::model::EditOp;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ureq::http::{Response, StatusCode};
use ureq::{Body, SendBody};

pub use self::error::{ClientError, TokenSource};
pub use self::events::{Event, EventStream, ServerEvent};
// The bodies are the server's own types (`crate::api`), read leniently.
pub use crate::api::{
    CloudEndpoint, ConflictDoc, ConflictRecord, ConflictSummary, ConflictValue, Conflicts, Created,
    CurrentConflict, DocContent, DocPeer, DocStatus, DocSummary, Heads, HistoryEntry, MetaUpdate,
    NetworkProblem, NewDocument, Peer, PeerAdded, Receipts, Resolved, SessionLink, Status,
};

/// The file, inside the data directory, holding the URL the daemon's API serves on.
pub const API_ADDR_FILE: &str = crate::daemon::ADDR_FILE;
/// The file, inside the data directory, holding the API's bearer token.
pub const API_TOKEN_FILE: &str = crate::daemon::TOKEN_FILE;

/// The most bytes of JSON read from one response; a document's JSON view can be much
/// larger than its automerge bytes (the API's body limit is 64 MiB), so this is generous,
/// but bounded.
const MAX_JSON_BYTES: u64 = 512 * 1024 * 1024;
/// The most bytes of an error body read before giving up on its `{code, message}`.
const MAX_ERROR_BYTES: u64 = 64 * 1024;
/// How long to wait for a TCP connection to a daemon on this machine. There is no
/// timeout on the response: a large import can take the daemon a while, and giving up on
/// a write the daemon goes on to complete would invite a duplicate on retry (the daemon
/// answers `busy` rather than queueing without bound; Ctrl-C stops waiting).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Client::discover_waiting`] waits for a daemon that says it is starting
/// (opening a large store takes a while).
pub const WAIT_FOR_START: Duration = Duration::from_secs(60);
/// How long [`Client::discover_waiting`] waits when no daemon says it is starting.
pub const WAIT_FOR_LAUNCH: Duration = Duration::from_secs(1);

/// Whether `<data_dir>/api.starting` names a process that is still alive (on systems
/// without `/proc`, whether the file exists).
fn starting(data_dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(data_dir.join(crate::daemon::STARTING_FILE)) else {
        return false;
    };
    let proc = Path::new("/proc");
    if !proc.is_dir() {
        return true;
    }
    text.trim()
        .parse::<u32>()
        .is_ok_and(|pid| proc.join(pid.to_string()).exists())
}

/// Where to find the daemon: each field overrides what the data directory says.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The daemon's data directory (`--data-dir`); `None` means the platform default.
    pub data_dir: Option<PathBuf>,
    /// The API's URL (`--api-url`); `None` means read `<data_dir>/api.addr`.
    pub api_url: Option<String>,
    /// The bearer token (`--token`); `None` means read `<data_dir>/api.token`.
    pub token: Option<String>,
}

/// The platform's default data directory (Linux: `$XDG_DATA_HOME/peerdoc`, i.e.
/// `~/.local/share/peerdoc`), the same the daemon uses; `None` when the platform has no
/// home directory.
pub fn default_data_dir() -> Option<PathBuf> {
    crate::config::default_data_dir()
}

/// A connection to one daemon's API. Cheap to keep; requests reuse connections.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    base_url: String,
    authorization: String,
    token_source: TokenSource,
    data_dir: Option<PathBuf>,
    url_from_file: bool,
}

impl Client {
    /// Finds the daemon as `docs/api.md` says: the URL from `discovery.api_url`, else
    /// `<data_dir>/api.addr`; the token from `discovery.token`, else
    /// `<data_dir>/api.token`. Sends nothing.
    ///
    /// # Errors
    /// [`ClientError::NotRunning`] when there is no `api.addr` (no daemon has started on
    /// that data directory, or it stopped cleanly), [`ClientError::ReadFile`] when a file is
    /// there but unreadable, [`ClientError::BadApiUrl`] for a URL that is not `http://`.
    pub fn discover(discovery: &Discovery) -> Result<Self, ClientError> {
        let data_dir = match &discovery.data_dir {
            Some(dir) => Some(dir.clone()),
            None => default_data_dir(),
        };
        let (base_url, url_from_file) = match &discovery.api_url {
            Some(url) => (url.clone(), false),
            None => {
                let dir = data_dir.as_deref().ok_or(ClientError::NoDataDir)?;
                let path = dir.join(API_ADDR_FILE);
                match fs::read_to_string(&path) {
                    Ok(text) => (text.trim().to_owned(), true),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(ClientError::NotRunning {
                            data_dir: dir.to_path_buf(),
                        });
                    }
                    Err(source) => return Err(ClientError::ReadFile { path, source }),
                }
            }
        };
        let (token, token_source) = match &discovery.token {
            Some(token) => (token.trim().to_owned(), TokenSource::Given),
            None => {
                let dir = data_dir.as_deref().ok_or(ClientError::NoDataDir)?;
                let path = dir.join(API_TOKEN_FILE);
                let token = fs::read_to_string(&path)
                    .map_err(|source| ClientError::ReadToken {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_owned();
                (token, TokenSource::File(path))
            }
        };
        Self::connect_with(base_url, &token, token_source, data_dir, url_from_file)
    }

    /// [`Client::discover`], waiting for a daemon that is starting: up to
    /// [`WAIT_FOR_START`] when the data directory says one is starting (`api.starting`
    /// names a live process), else up to [`WAIT_FOR_LAUNCH`] for one launched a moment
    /// ago (`peerdoc run &` followed by a client command). `waiting` is called once
    /// when a daemon that says it is starting has not answered for 300 ms, so the caller
    /// can say what it waits for.
    ///
    /// # Errors
    /// As [`Client::discover`], after the wait.
    pub fn discover_waiting(
        discovery: &Discovery,
        mut waiting: impl FnMut(&Path),
    ) -> Result<Self, ClientError> {
        let began = std::time::Instant::now();
        let mut told = false;
        loop {
            match Self::discover(discovery) {
                Err(ClientError::NotRunning { data_dir }) => {
                    let starting = starting(&data_dir);
                    let limit = if starting {
                        WAIT_FOR_START
                    } else {
                        WAIT_FOR_LAUNCH
                    };
                    if began.elapsed() >= limit {
                        return Err(ClientError::NotRunning { data_dir });
                    }
                    // Silent for a daemon only launched (most often: none at all).
                    if starting && !told && began.elapsed() >= Duration::from_millis(300) {
                        told = true;
                        waiting(&data_dir);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// A client of the daemon at `base_url` (e.g. `http://127.0.0.1:7420`) using `token`.
    ///
    /// # Errors
    /// [`ClientError::BadApiUrl`] when `base_url` is not an `http://` URL, or the token
    /// cannot go in a header.
    pub fn new(base_url: &str, token: &str) -> Result<Self, ClientError> {
        Self::connect_with(base_url.to_owned(), token, TokenSource::Given, None, false)
    }

    fn connect_with(
        base_url: String,
        token: &str,
        token_source: TokenSource,
        data_dir: Option<PathBuf>,
        url_from_file: bool,
    ) -> Result<Self, ClientError> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let valid = base_url
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
        if !valid {
            return Err(ClientError::BadApiUrl {
                url: base_url,
                origin: origin_of_url(url_from_file, data_dir.as_deref()),
            });
        }
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::BadToken {
                token: token_source,
            });
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .user_agent(concat!("peerdoc/", env!("CARGO_PKG_VERSION")))
            .max_redirects(0)
            .build()
            .new_agent();
        Ok(Self {
            agent,
            base_url,
            authorization: format!("Bearer {token}"),
            token_source,
            data_dir,
            url_from_file,
        })
    }

    /// The URL of the daemon's API.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /v1/status`; `docs: false` asks for the cheap form without per-document sync.
    pub fn status(&self, docs: bool) -> Result<Status, ClientError> {
        let path = "/v1/status";
        let request = self
            .get(path)
            .query("docs", if docs { "true" } else { "false" });
        self.json(path, request.call())
    }

    /// `GET /v1/peers`.
    pub fn peers(&self) -> Result<Vec<Peer>, ClientError> {
        let path = "/v1/peers";
        self.json(path, self.get(path).call())
    }

    /// `GET /v1/docs`, tombstones included when `deleted`.
    pub fn list_docs(&self, deleted: bool) -> Result<Vec<DocSummary>, ClientError> {
        self.list_docs_with(deleted, false)
    }

    /// `GET /v1/docs`, tombstones included when `deleted`, the daemon's own documents
    /// when `system`.
    pub fn list_docs_with(
        &self,
        deleted: bool,
        system: bool,
    ) -> Result<Vec<DocSummary>, ClientError> {
        let path = "/v1/docs";
        let mut request = self.get(path);
        if deleted {
            request = request.query("deleted", "true");
        }
        if system {
            request = request.query("system", "true");
        }
        self.json(path, request.call())
    }

    /// `POST /v1/docs`: a new document with this content.
    pub fn create_doc(&self, doc: &NewDocument) -> Result<Created, ClientError> {
        let path = "/v1/docs";
        let body = to_json_body(doc)?;
        let request = self.post(path).content_type("application/json");
        self.json(path, request.send(&body[..]))
    }

    /// `POST /v1/docs/import`: a new document from automerge `save()` bytes read from
    /// `bytes`; `len`, when known, is sent as `Content-Length` (else the body is chunked).
    pub fn import_doc(
        &self,
        bytes: impl Read + 'static,
        len: Option<u64>,
        title: Option<&str>,
        priority: Option<i32>,
    ) -> Result<Created, ClientError> {
        let path = "/v1/docs/import";
        let mut request = self.post(path).content_type("application/octet-stream");
        if let Some(title) = title {
            request = request.query("title", title);
        }
        if let Some(priority) = priority {
            request = request.query("priority", priority.to_string());
        }
        if let Some(len) = len {
            request = request.header("content-length", len.to_string());
        }
        self.json(path, request.send(SendBody::from_owned_reader(bytes)))
    }

    /// `GET /v1/docs/{id}`, as of `heads` when not empty.
    pub fn get_doc(&self, id: &DocumentId, heads: &[String]) -> Result<DocContent, ClientError> {
        let path = format!("/v1/docs/{id}");
        let mut request = self.get(&path);
        if !heads.is_empty() {
            request = request.query("heads", heads.join(","));
        }
        self.json(&path, request.call())
    }

    /// `GET /v1/docs/{id}/export`: the document's automerge bytes, as a stream.
    pub fn export_doc(&self, id: &DocumentId) -> Result<Export, ClientError> {
        let path = format!("/v1/docs/{id}/export");
        let response = self.send(&path, self.get(&path).call())?;
        let len = response.body().content_length();
        Ok(Export {
            len,
            body: Box::new(response.into_body().into_reader()),
        })
    }

    /// `PATCH /v1/docs/{id}`: applies `ops` as one atomic change.
    pub fn edit_doc(
        &self,
        id: &DocumentId,
        ops: &[EditOp],
        message: Option<&str>,
    ) -> Result<Heads, ClientError> {
        let path = format!("/v1/docs/{id}");
        let body = to_json_body(&crate::api::EditRequest {
            ops: ops.iter().cloned().map(Into::into).collect(),
            message: message.map(str::to_owned),
        })?;
        let request = self.patch(&path).content_type("application/json");
        self.json(&path, request.send(&body[..]))
    }

    /// `PATCH /v1/docs/{id}/meta`: changes the title and/or priority.
    pub fn set_meta(&self, id: &DocumentId, meta: &MetaUpdate) -> Result<DocSummary, ClientError> {
        let path = format!("/v1/docs/{id}/meta");
        let body = to_json_body(meta)?;
        let request = self.patch(&path).content_type("application/json");
        self.json(&path, request.send(&body[..]))
    }

    /// `DELETE /v1/docs/{id}`: deletes the document everywhere.
    pub fn delete_doc(&self, id: &DocumentId) -> Result<(), ClientError> {
        let path = format!("/v1/docs/{id}");
        let request = self
            .agent
            .delete(self.url(&path))
            .header("authorization", &self.authorization);
        self.send(&path, request.call()).map(drop)
    }

    /// `POST /v1/docs/{id}/fetch`: ask the daemon's peers for a document it lacks.
    pub fn fetch_doc(&self, id: &DocumentId) -> Result<Created, ClientError> {
        let path = format!("/v1/docs/{id}/fetch");
        self.json(&path, self.post(&path).send_empty())
    }

    /// `GET /v1/docs/{id}/conflicts`.
    pub fn conflicts(&self, id: &DocumentId) -> Result<Conflicts, ClientError> {
        let path = format!("/v1/docs/{id}/conflicts");
        self.json(&path, self.get(&path).call())
    }

    /// `POST /v1/docs/{id}/conflicts/resolve`: settles the conflict at `path` by keeping
    /// the value `keep` names (its change hash or a prefix, or its device's name) or by
    /// writing `value`.
    pub fn resolve_conflict(
        &self,
        id: &DocumentId,
        path: &str,
        keep: Option<&str>,
        value: Option<&serde_json::Value>,
    ) -> Result<Resolved, ClientError> {
        let url_path = format!("/v1/docs/{id}/conflicts/resolve");
        let body = to_json_body(&crate::api::ResolveRequest {
            path: path.to_owned(),
            keep: keep.map(str::to_owned),
            value: value.cloned(),
        })?;
        let request = self.post(&url_path).content_type("application/json");
        self.json(&url_path, request.send(&body[..]))
    }

    /// `POST /v1/session/link`: a one-time link that signs a browser in to the dashboard.
    pub fn dashboard_link(&self) -> Result<String, ClientError> {
        let path = "/v1/session/link";
        let answer: SessionLink = self.json(path, self.post(path).send_empty())?;
        if answer.url.is_empty() {
            return Err(ClientError::BadResponse {
                endpoint: path.to_owned(),
                detail: "no url in the answer".to_owned(),
            });
        }
        Ok(answer.url)
    }

    /// `GET /v1/docs/{id}/history`.
    pub fn history(&self, id: &DocumentId) -> Result<Vec<HistoryEntry>, ClientError> {
        let path = format!("/v1/docs/{id}/history");
        self.json(&path, self.get(&path).call())
    }

    /// `GET /v1/events`: the server-sent event stream, for these documents only when
    /// `docs` is not empty. The stream has no read timeout (the daemon sends a keepalive
    /// every 15 s); it ends when the daemon closes it.
    pub fn events(&self, docs: &[DocumentId]) -> Result<EventStream, ClientError> {
        let path = "/v1/events";
        let mut request = self.get(path).header("accept", "text/event-stream");
        for doc in docs {
            request = request.query("doc", doc.to_string());
        }
        let response = self.send(path, request.call())?;
        Ok(EventStream::new(
            self.url(path),
            response.into_body().into_reader(),
        ))
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let path = "/metrics";
        let mut response = self.send(path, self.get(path).call())?;
        let bytes =
            read_limited(&mut response, MAX_JSON_BYTES).map_err(|e| self.transport(path, e))?;
        String::from_utf8(bytes).map_err(|_| ClientError::BadResponse {
            endpoint: path.to_owned(),
            detail: "the body is not UTF-8".to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn get(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        self.agent
            .get(self.url(path))
            .header("authorization", &self.authorization)
    }

    fn post(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        self.agent
            .post(self.url(path))
            .header("authorization", &self.authorization)
    }

    fn patch(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        self.agent
            .patch(self.url(path))
            .header("authorization", &self.authorization)
    }

    /// Turns a sent request's outcome into a successful response or the error it means.
    fn send(
        &self,
        path: &str,
        outcome: Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>, ClientError> {
        let mut response = outcome.map_err(|e| self.transport(path, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::TokenRejected {
                token: self.token_source.clone(),
            });
        }
        let body = read_limited(&mut response, MAX_ERROR_BYTES).unwrap_or_default();
        Err(ClientError::from_error_body(status.as_u16(), path, &body))
    }

    /// Sends, then reads a JSON body of type `T`.
    fn json<T: DeserializeOwned>(
        &self,
        path: &str,
        outcome: Result<Response<Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut response = self.send(path, outcome)?;
        let bytes =
            read_limited(&mut response, MAX_JSON_BYTES).map_err(|e| self.transport(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse {
            endpoint: path.to_owned(),
            detail: e.to_string(),
        })
    }

    fn transport(&self, path: &str, error: ureq::Error) -> ClientError {
        let refused = match &error {
            ureq::Error::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::AddrNotAvailable
            ),
            ureq::Error::ConnectionFailed => true,
            _ => false,
        };
        if refused {
            return ClientError::Unreachable {
                url: self.base_url.clone(),
                origin: origin_of_url(self.url_from_file, self.data_dir.as_deref()),
                data_dir: self.data_dir.clone(),
            };
        }
        ClientError::Transport {
            url: self.url(path),
            source: error,
        }
    }
}

/// A document's automerge bytes as the daemon streams them.
pub struct Export {
    /// The byte count, when the daemon announced it.
    pub len: Option<u64>,
    /// The bytes.
    pub body: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Where the URL came from, for error messages.
fn origin_of_url(from_file: bool, data_dir: Option<&Path>) -> String {
    match (from_file, data_dir) {
        (true, Some(dir)) => format!("from {}", dir.join(API_ADDR_FILE).display()),
        _ => "from --api-url/PEERDOC_API_URL".to_owned(),
    }
}

fn to_json_body(value: &impl Serialize) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(value).map_err(|e| ClientError::Encode(e.to_string()))
}

fn read_limited(response: &mut Response<Body>, limit: u64) -> Result<Vec<u8>, ureq::Error> {
    response.body_mut().with_config().limit(limit).read_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discover_in(
        dir: &Path,
        api_url: Option<&str>,
        token: Option<&str>,
    ) -> Result<Client, ClientError> {
        Client::discover(&Discovery {
            data_dir: Some(dir.to_path_buf()),
            api_url: api_url.map(str::to_owned),
            token: token.map(str::to_owned),
        })
    }

    #[test]
    fn discovery_reads_the_data_dir_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write = |name: &str, text: &str| {
            fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"));
        };
        assert!(matches!(
            discover_in(dir.path(), None, None),
            Err(ClientError::NotRunning { .. })
        ));
        write(API_ADDR_FILE, "http://127.0.0.1:7420/\n");
        assert!(matches!(
            discover_in(dir.path(), None, None),
            Err(ClientError::ReadToken { .. })
        ));
        write(API_TOKEN_FILE, "abc\n");
        let client = discover_in(dir.path(), None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(client.base_url(), "http://127.0.0.1:7420");
        assert_eq!(client.authorization, "Bearer abc");
        let client = discover_in(dir.path(), Some("http://[::1]:9"), Some("xyz"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(client.base_url(), "http://[::1]:9");
        assert_eq!(client.authorization, "Bearer xyz");
    }

    #[test]
    fn unusable_urls_and_tokens_are_refused_before_any_request() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::write(dir.path().join(API_ADDR_FILE), "").unwrap_or_else(|e| panic!("{e}"));
        let error = discover_in(dir.path(), None, Some("t")).err();
        assert!(
            matches!(&error, Some(ClientError::BadApiUrl { url, .. }) if url.is_empty()),
            "{error:?}"
        );
        assert!(matches!(
            Client::new("https://example.invalid", "t"),
            Err(ClientError::BadApiUrl { .. })
        ));
        assert!(matches!(
            Client::new("http://127.0.0.1:1", "two words"),
            Err(ClientError::BadToken { .. })
        ));
    }
}
