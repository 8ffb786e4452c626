//! The API fuzzed: schemathesis (installed by `.ci/setup` from PyPI, pinned there) reads
//! the OpenAPI document a real `peerdoc run` daemon serves on 127.0.0.1 and sends it
//! requests generated from that document, valid and invalid, with a fixed seed and a
//! bounded number of examples per operation. Any 5xx, any status the document does not
//! list for that operation, any content type it does not list (an error that is not
//! JSON among them) and any body that does not fit its schema fails the test.
//!
//! `api_schema.rs` drives each route through answers chosen by hand; this finds the
//! inputs nobody thought of. The daemon is in a team, so the team routes answer for
//! real, and holds a few documents and invites whose ids the fuzzer is given besides
//! the ones it makes up (a made-up document id is almost never valid).
//!
//! The token reaches schemathesis through its environment and a config file that names
//! the variable (`${FUZZ_API_TOKEN}`), never on a command line, and schemathesis masks
//! `Authorization` in what it prints. Outside CI a missing schemathesis skips the test;
//! with `CI=true` it fails. Replay a run with the seed it prints: `FUZZ_SEED=<n>`;
//! `FUZZ_MAX_EXAMPLES=<n>` runs more examples per operation, `FUZZ_CHECKS=all` every
//! check schemathesis has (see [`CHECKS`] for why CI runs fewer).

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;
#[path = "support/interop.rs"]
mod interop;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use automerge::transaction::Transactable as _;
use daemon::Daemon;
use serde_json::json;

/// The seed of the CI run: the same generated requests every time, but for those the
/// stateful phase derives from the daemon's answers (new ids, times), so the count of
/// test cases varies by a few percent between runs.
const SEED: u64 = 20_251_402;
/// Examples per operation and phase: about a minute on a 2-vCPU VM (docs/api.md).
const MAX_EXAMPLES: u32 = 300;
/// The checks: no 5xx, every answer as documented (status, content type, body), and
/// what was deleted is gone while what was created is there (the stateful phase).
///
/// Not `positive_data_acceptance`/`negative_data_rejection`: a request the schema admits
/// can still be refused for what no schema says (a document id's checksum, an edit that
/// does not fit the document, a deleted document), and `?deleted` alone means `true`.
/// docs/api.md lists what they report.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,use_after_free,ensure_resource_availability";

/// Operations left out (by operation id), each for a reason the fuzzer cannot respect.
const EXCLUDED: &[&str] = &[
    // `POST /v1/peers`: the daemon would dial whatever address the fuzzer makes up, and
    // the test's traffic must stay on loopback. api_errors.rs and api_schema.rs check
    // its answers.
    "addPeer",
    // `GET /v1/events`: a stream that does not end, so every valid request would wait
    // for the request timeout. api_schema.rs checks its errors and each event's schema.
    "events",
    // Left in: `POST /v1/team/join` dials the address in an invite code, but a device
    // already in a team refuses it (409) before it reads the code.
];

/// The schemathesis of `.ci/setup`, else one on the PATH; `None` (after
/// [`interop::skip_or_fail`]) when there is none.
fn schemathesis() -> Option<PathBuf> {
    let venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/venv-schemathesis/bin/schemathesis");
    let found = if venv.is_file() {
        Some(venv)
    } else if interop::tool_works("schemathesis") {
        Some(PathBuf::from("schemathesis"))
    } else {
        None
    };
    if found.is_none() {
        interop::skip_or_fail(
            "the API fuzz test needs schemathesis (`bash .ci/setup` installs it into \
             .ci/venv-schemathesis)",
        );
    }
    found
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// A document in which two actors set `/phone` concurrently: an open conflict.
fn conflicted_document() -> Vec<u8> {
    let mut sam = automerge::AutoCommit::new();
    sam.put(automerge::ROOT, "phone", "555-0100").expect("put");
    let mut ana = sam.fork();
    sam.put(automerge::ROOT, "phone", "555-0101").expect("put");
    ana.put(automerge::ROOT, "phone", "555-0102").expect("put");
    sam.merge(&mut ana).expect("merge");
    sam.save()
}

/// What the fuzzer is given to pick from besides what it makes up.
struct Known {
    /// Documents to read, edit and resolve.
    docs: Vec<String>,
    /// A document for `DELETE /v1/docs/{id}` alone, so the others stay.
    doomed: String,
    /// Invites to show as a QR code.
    invites: Vec<String>,
    /// An invite for `DELETE /v1/team/invites/{id}` alone.
    doomed_invite: String,
    /// This device's id, to rename (never to remove: see the config).
    device: String,
    /// A peer address this device dials, to stop dialing.
    peer: String,
}

/// A team, documents (one with an open conflict), invites.
fn populate(daemon: &Daemon) -> Known {
    let c = &daemon.client;
    c.post(
        "/v1/team",
        &json!({"name": "Fuzz crew", "device_name": "Fuzz laptop"}),
    )
    .ok(201);
    let mut docs: Vec<String> = [
        json!({"title": "Run of show", "guests": ["Ada", "Grace"], "n": {"$counter": 1}}),
        json!({"notes": "", "list": [1, 2, 3], "nested": {"a": {"b": true}}}),
        json!({}),
    ]
    .into_iter()
    .map(|content| c.create(content))
    .collect();
    let imported = c.call(
        "POST",
        "/v1/docs/import?title=Florist",
        Some("application/octet-stream"),
        Some(conflicted_document()),
    );
    docs.push(imported.ok(201)["id"].as_str().expect("id").to_owned());
    let doomed = c.create(json!({"bye": true}));
    let invite = |role: &str| -> String {
        let made = c.post("/v1/team/invites", &json!({"role": role})).ok(201);
        made["id"].as_str().expect("invite id").to_owned()
    };
    let invites = vec![invite("editor"), invite("viewer")];
    let doomed_invite = invite("viewer");
    // Nothing listens on the discard port; the daemon redials it, on loopback.
    let peer = c.post("/v1/peers", &json!({"addr": "127.0.0.1:9"})).ok(201)["addr"]
        .as_str()
        .expect("addr")
        .to_owned();
    let device = c.get("/v1/status?docs=false").ok(200)["peer_id"]
        .as_str()
        .expect("peer id")
        .to_owned();
    Known {
        docs,
        doomed,
        invites,
        doomed_invite,
        device,
        peer,
    }
}

fn toml_list(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// `schemathesis.toml` for this run. The token is `${FUZZ_API_TOKEN}`, which
/// schemathesis reads from its environment.
fn config(known: &Known, seed: u64, max_examples: u32) -> String {
    format!(
        r#"# Written by crates/peerdoc/tests/api_fuzz.rs for one run.
seed = {seed}
workers = 1
request-timeout = 30
headers = {{ Authorization = "Bearer ${{FUZZ_API_TOKEN}}" }}

[generation]
max-examples = {max_examples}
# Nothing kept between runs: the seed alone says what is sent.
database = "none"

[dictionaries.documents]
values = {docs}
[dictionaries.doomed]
values = [{doomed:?}]
[dictionaries.invites]
values = {invites}
[dictionaries.doomed-invite]
values = [{doomed_invite:?}]
[dictionaries.device]
values = [{device:?}]
[dictionaries.peer]
values = [{peer:?}]

[[operations]]
include-path-regex = "^/v1/docs/\\{{id\\}}"
exclude-method = "DELETE"
parameters = {{ "path.id" = {{ dictionary = "documents", probability = 0.7 }} }}

[[operations]]
include-path = "/v1/docs/{{id}}"
include-method = "DELETE"
parameters = {{ "path.id" = {{ dictionary = "doomed", probability = 0.3 }} }}

[[operations]]
include-path = "/v1/team/invites/{{id}}/qr.svg"
parameters = {{ "path.id" = {{ dictionary = "invites", probability = 0.7 }} }}

[[operations]]
include-path = "/v1/team/invites/{{id}}"
parameters = {{ "path.id" = {{ dictionary = "doomed-invite", probability = 0.3 }} }}

# Renamed, never removed: removing this device would end its part in the team and
# turn every later team request into the same 409.
[[operations]]
include-path = "/v1/team/members/{{device}}"
include-method = "PATCH"
parameters = {{ "path.device" = {{ dictionary = "device", probability = 0.7 }} }}

[[operations]]
include-operation-id = "removePeer"
parameters = {{ "body.addr" = {{ dictionary = "peer", probability = 0.3 }} }}
"#,
        docs = toml_list(&known.docs),
        doomed = known.doomed,
        invites = toml_list(&known.invites),
        doomed_invite = known.doomed_invite,
        device = known.device,
        peer = known.peer,
    )
}

/// Runs the fuzzer and returns its exit status and its output.
fn run_schemathesis(
    binary: &Path,
    dir: &Path,
    schema_url: &str,
    token: &str,
    checks: &str,
) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir)
        .env("FUZZ_API_TOKEN", token)
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .arg("run")
        .arg(schema_url)
        .args(["--checks", checks])
        .arg("--no-color");
    for operation in EXCLUDED {
        cmd.args(["--exclude-operation-id", operation]);
    }
    let printed: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    eprintln!("running {} {}", binary.display(), printed.join(" "));
    let output = cmd.stdin(Stdio::null()).output().expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

#[test]
fn the_fuzzed_api_answers_as_documented_and_never_5xx() {
    let Some(binary) = schemathesis() else {
        return;
    };
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let seed = env_number("FUZZ_SEED", SEED);
    let max_examples = env_number("FUZZ_MAX_EXAMPLES", MAX_EXAMPLES);
    let checks = std::env::var("FUZZ_CHECKS").unwrap_or_else(|_| CHECKS.to_owned());

    let tmp = tempfile::tempdir().expect("tempdir");
    let mut daemon = Daemon::start_in_team_mode(
        "fuzzed",
        &tmp.path().join("data"),
        "/ip4/127.0.0.1/tcp/0",
        &[],
    );
    let known = populate(&daemon);
    let token = daemon.client.token.clone().expect("token");
    let work = tmp.path().join("schemathesis");
    std::fs::create_dir_all(&work).expect("work dir");
    std::fs::write(
        work.join("schemathesis.toml"),
        config(&known, seed, max_examples),
    )
    .expect("config");

    let started = Instant::now();
    let schema_url = format!("{}/v1/openapi.json", daemon.client.base);
    let (status, output) = run_schemathesis(&binary, &work, &schema_url, &token, &checks);
    let took = started.elapsed();
    assert!(
        !output.contains(&token),
        "the token appeared in schemathesis's output"
    );
    println!("{output}");
    let figures = test_cases(&output);
    println!(
        "{version}: seed {seed}, {max_examples} examples per operation and phase, \
         {figures}, {:.0} s",
        took.as_secs_f64()
    );

    // Still up and answering: the run ended nothing.
    let health = daemon.client.get("/health");
    assert_eq!(
        health.status,
        200,
        "health after the run: {}",
        health.text()
    );
    assert!(
        status.success(),
        "schemathesis found failures, listed above with a curl command that reproduces \
         each (seed {seed}: FUZZ_SEED={seed} replays the run)"
    );
    let exit = daemon.sigterm();
    assert!(exit.success(), "the daemon's exit: {exit}");
    assert_no_panic(&daemon.log_text());
}

/// Schemathesis's count of test cases, the line after `Test cases:`, e.g.
/// `7557 generated, 7557 passed`.
fn test_cases(output: &str) -> String {
    let mut lines = output.lines().map(str::trim);
    lines
        .find(|line| *line == "Test cases:")
        .and_then(|_| lines.next())
        .map_or_else(
            || "no count of test cases".to_owned(),
            |line| format!("test cases: {line}"),
        )
}

fn assert_no_panic(log: &str) {
    assert!(
        !log.contains("panicked"),
        "the daemon panicked during the run:\n{log}"
    );
}
