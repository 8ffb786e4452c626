//! The client subcommands, end to end: the `peerdoc` binary against a real daemon
//! (`peerdoc run`, mDNS off, API and libp2p on 127.0.0.1 only), checking text output,
//! `--json` output and every error path.
//!
//! Longer than the ~800-line rule: one test per subcommand and its error paths, sharing
//! one daemon harness at the top; it reads as the CLI reference (`docs/cli.md`) does, and
//! a split by subcommand would only spread that harness over several files.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use automerge::transaction::CommitOptions;
use automerge::transaction::Transactable as _;
use automerge::{ActorId, AutoCommit, Automerge, ROOT};
use predicates::prelude::*;
use serde_json::{Value, json};
use tempfile::TempDir;

/// A hang guard, not a speed target.
const TIMEOUT: Duration = Duration::from_secs(60);
const BIN: &str = env!("CARGO_BIN_EXE_peerdoc");

/// A running `peerdoc run` on a fresh data directory; killed when dropped.
struct Daemon {
    dir: TempDir,
    child: Child,
}

impl Daemon {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a daemon with extra `peerdoc run` arguments (e.g. `--peer`).
    fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");
        let mut command = std::process::Command::new(BIN);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PEERDOC_") {
                command.env_remove(name);
            }
        }
        let child = command
            // No config file from the user's own config directory.
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("PEERDOC_TEAM_OPEN", "true")
            .args(["run", "--no-mdns", "--api-listen", "127.0.0.1:0"])
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--log", "warn"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn peerdoc run");
        let mut daemon = Self { dir, child };
        let started = Instant::now();
        while !daemon.data_dir().join("api.addr").exists() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("the daemon exited with {status}: {}", daemon.log());
            }
            assert!(started.elapsed() < TIMEOUT, "no api.addr: {}", daemon.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("daemon.log")).unwrap_or_default()
    }

    /// Stops the daemon as Ctrl-C or a service manager would (SIGTERM), and waits.
    fn stop(&mut self) {
        signal(&self.child, "-TERM");
        let status = self.child.wait().expect("wait for the daemon");
        assert!(
            status.success(),
            "the daemon stopped with {status}: {}",
            self.log()
        );
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `peerdoc --data-dir <this daemon's dir>`, with no discovery from the environment.
    fn peerdoc(&self) -> Command {
        peerdoc_in(self.data_dir())
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.peerdoc().args(args).output().expect("run peerdoc");
        assert!(
            output.status.success(),
            "peerdoc {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 stdout")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        serde_json::from_str(&self.ok(&with_json)).expect("stdout is JSON")
    }

    /// A new document with this content; its id.
    fn new_doc(&self, content: &Value) -> String {
        self.ok(&["doc", "new", &content.to_string()])
            .trim()
            .to_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal (`-TERM`, `-INT`) to a child process.
fn signal(child: &Child, which: &str) {
    let sent = std::process::Command::new("kill")
        .args([which, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill {which} failed");
}

/// Reads a child's stdout lines on a thread, so a test can wait for them with a guard.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn peerdoc_in(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerdoc"));
    command
        .env_remove("PEERDOC_API_URL")
        .env_remove("PEERDOC_TOKEN")
        .env_remove("PEERDOC_DATA_DIR")
        .arg("--data-dir")
        .arg(data_dir)
        .timeout(TIMEOUT);
    command
}

/// A valid document id that no daemon has.
const UNKNOWN_ID: &str = "4NMNnkMhL8jXrdJ9jamS58PAVdXu";

// ---- status and peers ----

#[test]
fn status_shows_identity_documents_and_health() {
    let daemon = Daemon::start();
    daemon.new_doc(&json!({"a": 1}));
    daemon
        .peerdoc()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"(?m)^peer id +12D3Koo\w+$").expect("regex"))
        .stdout(predicate::str::is_match(r"(?m)^documents +1 \(0 deleted").expect("regex"))
        .stdout(predicate::str::contains(
            "health     offline (no peer or cloud connected)",
        ))
        .stdout(predicate::str::contains(
            "wipe?      NOT safe to wipe: 1 document of 1 not confirmed by any cloud",
        ));
    let status = daemon.json(&["status"]);
    assert_eq!(status["documents"], 1);
    assert_eq!(status["receipts"]["safe_to_wipe"], false);
    assert_eq!(status["receipts"]["unconfirmed"], 1);
    assert!(
        status["peer_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("12D3Koo"))
    );
    assert_eq!(status["health"], "offline");
}

#[test]
fn peers_without_any_says_so() {
    let daemon = Daemon::start();
    daemon
        .peerdoc()
        .arg("peers")
        .assert()
        .success()
        .stdout("no peers known\n");
    assert_eq!(daemon.json(&["peers"]), json!([]));
}

/// Polls `check` until it returns something (a hang guard, not a speed target).
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(started.elapsed() < TIMEOUT, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn peers_and_status_show_a_connected_peer_and_what_it_is_missing() {
    let a = Daemon::start();
    let status = a.json(&["status"]);
    let a_addr = format!(
        "{}/p2p/{}",
        status["listen_addrs"][0]
            .as_str()
            .expect("a listen address"),
        status["peer_id"].as_str().expect("a peer id")
    );
    let b = Daemon::start_with(&["--peer", &a_addr]);
    let b_id = b.json(&["status"])["peer_id"]
        .as_str()
        .expect("a peer id")
        .to_owned();

    let peer = eventually("b connects to a with a sync stream", || {
        let peers = a.json(&["peers"]);
        peers
            .as_array()?
            .iter()
            .find(|p| p["peer_id"] == b_id.as_str() && p["sync_stream"] == true)
            .cloned()
    });
    assert_eq!(peer["connected"], true, "{peer}");
    let text = a.ok(&["peers"]);
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("PEER ID ") && h.contains("HEALTH")),
        "{text}"
    );
    let row = lines.next().unwrap_or_default();
    assert!(row.starts_with(&b_id), "peer ids are printed whole: {text}");
    assert!(row.contains(", syncing"), "{text}");

    let id = a.new_doc(&json!({"florist": "Petal & Stem"}));
    let synced = eventually("the new document reaches b", || {
        let text = a.ok(&["status"]);
        text.contains("sync: every peer has every document, as far as this device knows")
            .then_some(text)
    });
    assert!(
        synced.contains("peers      1 connected, 1 known"),
        "{synced}"
    );
    assert_eq!(
        b.ok(&["doc", "get", &id, "/florist"]),
        "\"Petal & Stem\"\n",
        "b has it"
    );
    let status = a.json(&["status"]);
    let doc = status["docs"]
        .as_array()
        .and_then(|docs| docs.iter().find(|d| d["id"] == id.as_str()))
        .expect("the document in status");
    assert_eq!(doc["peers"][0]["peer_id"], b_id.as_str(), "{status}");
    assert_eq!(doc["peers"][0]["in_sync"], true, "{status}");
}

// ---- doc new / list / get ----

#[test]
fn new_prints_the_id_and_list_shows_it() {
    let daemon = Daemon::start();
    let id = daemon.ok(&[
        "doc",
        "new",
        r#"{"title": "Run of show"}"#,
        "--title",
        "Barn wedding",
        "--priority",
        "-3",
    ]);
    let id = id.trim();
    assert!(
        peerdoc_core::DocumentId::parse(id).is_ok(),
        "a bare id: {id:?}"
    );

    let list = daemon.ok(&["doc", "list"]);
    let mut lines = list.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("ID  "), "{list}");
    assert!(
        header.contains("TITLE") && header.contains("PRIORITY"),
        "{list}"
    );
    let row = lines.next().unwrap_or_default();
    assert!(
        row.starts_with(&format!("{id}  Barn wedding  -3")),
        "{list}"
    );

    let docs = daemon.json(&["doc", "list"]);
    assert_eq!(docs[0]["id"], id);
    assert_eq!(docs[0]["url"], format!("automerge:{id}"));
    assert_eq!(docs[0]["title"], "Barn wedding");
    assert_eq!(docs[0]["priority"], -3);

    let created = daemon.json(&["doc", "new"]);
    assert!(
        created["id"].is_string() && created["heads"].is_array(),
        "{created}"
    );
}

#[test]
fn list_without_documents_says_so() {
    let daemon = Daemon::start();
    daemon
        .peerdoc()
        .args(["doc", "list"])
        .assert()
        .success()
        .stdout("no documents\n");
    assert_eq!(daemon.json(&["doc", "list"]), json!([]));
}

#[test]
fn new_reads_content_from_stdin_and_files() {
    let daemon = Daemon::start();
    let id = daemon
        .peerdoc()
        .args(["doc", "new", "-"])
        .write_stdin(r#"{"from": "stdin"}"#)
        .output()
        .expect("run");
    assert!(id.status.success());
    let id = String::from_utf8_lossy(&id.stdout).trim().to_owned();
    assert_eq!(
        daemon.json(&["doc", "get", &id])["content"],
        json!({"from": "stdin"})
    );

    let file = daemon.data_dir().join("content.json");
    std::fs::write(&file, r#"{"from": "file"}"#).expect("write");
    let id = daemon.ok(&["doc", "new", &format!("@{}", file.display())]);
    assert_eq!(
        daemon.json(&["doc", "get", id.trim()])["content"],
        json!({"from": "file"})
    );
}

#[test]
fn new_rejects_content_that_is_not_a_json_object() {
    let daemon = Daemon::start();
    daemon
        .peerdoc()
        .args(["doc", "new", "[1, 2]"])
        .assert()
        .code(1)
        .stderr("peerdoc: the content must be a JSON object, not an array\n");
    daemon
        .peerdoc()
        .args(["doc", "new", "{\"a\":"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "peerdoc: invalid JSON content: ",
        ));
    daemon
        .peerdoc()
        .args(["doc", "new", "@/nonexistent/content.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "peerdoc: cannot read /nonexistent/content.json: No such file",
        ));
    assert_eq!(
        daemon.json(&["doc", "list"]),
        json!([]),
        "nothing was created"
    );
}

#[test]
fn get_prints_pretty_json_and_extracts_pointers() {
    let daemon = Daemon::start();
    let id = daemon.new_doc(&json!({"guests": [{"name": "Ada"}], "title": "Barn"}));
    let text = daemon.ok(&["doc", "get", &id]);
    let content: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        content,
        json!({"guests": [{"name": "Ada"}], "title": "Barn"})
    );
    assert!(text.contains("\n  \"guests\": ["), "pretty printed: {text}");

    let url = format!("automerge:{id}");
    assert_eq!(
        daemon.ok(&["doc", "get", &url, "/guests/0/name"]),
        "\"Ada\"\n"
    );
    assert_eq!(
        daemon.ok(&["doc", "get", &id, "/guests/0"]),
        "{\n  \"name\": \"Ada\"\n}\n"
    );

    let full = daemon.json(&["doc", "get", &id]);
    assert_eq!(full["id"], id.as_str());
    assert_eq!(full["url"], url.as_str());
    assert!(
        full["heads"].as_array().is_some_and(|h| h.len() == 1),
        "{full}"
    );
    assert_eq!(full["content"]["title"], "Barn");
}

#[test]
fn get_at_heads_reads_the_past() {
    let daemon = Daemon::start();
    let id = daemon.new_doc(&json!({"n": 1}));
    let before = daemon.json(&["doc", "get", &id])["heads"][0]
        .as_str()
        .expect("a head")
        .to_owned();
    daemon.ok(&["doc", "set", &id, "/n", "2"]);
    assert_eq!(daemon.ok(&["doc", "get", &id, "/n"]), "2\n");
    assert_eq!(
        daemon.ok(&["doc", "get", &id, "/n", "--heads", &before]),
        "1\n"
    );
}

#[test]
fn get_errors_on_missing_paths_bad_pointers_and_unknown_documents() {
    let daemon = Daemon::start();
    let id = daemon.new_doc(&json!({"guests": []}));
    daemon
        .peerdoc()
        .args(["doc", "get", &id, "/guests/3"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(format!("peerdoc: no value at /guests/3 in document {id}\n"));
    daemon
        .peerdoc()
        .args(["doc", "get", &id, "guests"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("\"guests\" is not a JSON pointer"));
    daemon
        .peerdoc()
        .args(["doc", "get", UNKNOWN_ID])
        .assert()
        .code(1)
        .stderr(
            predicate::str::starts_with("peerdoc: ")
                .and(predicate::str::ends_with("(not_found)\n")),
        );
}

// ---- doc set ----

#[test]
fn set_takes_json_bare_words_stdin_and_files() {
    let daemon = Daemon::start();
    let id = daemon.new_doc(&json!({}));
    let out = daemon.ok(&["doc", "set", &id, "/count", "42", "-m", "count them"]);
    assert!(
        out.starts_with(&format!("set /count in {id} (heads ")),
        "{out}"
    );
    daemon.ok(&["doc", "set", &id, "/florist", r#"{"phone": "555-0101"}"#]);
    daemon.ok(&["doc", "set", &id, "/word", "Hello"]);
    daemon.ok(&["doc", "set", &id, "/phone", "555-0199"]);
    daemon
        .peerdoc()
        .args(["doc", "set", &id, "/piped", "-"])
        .write_stdin("[1, \"two\"]\n")
        .assert()
        .success();
    let file = daemon.data_dir().join("value.json");
    std::fs::write(&file, "{\"from\": \"file\"}\n").expect("write");
    daemon.ok(&["doc", "set", &id, "/filed", &format!("@{}", file.display())]);
    let heads = daemon.json(&["doc", "set", &id, "/last", "true"]);
    assert!(heads["heads"].is_array(), "{heads}");

    assert_eq!(
        daemon.json(&["doc", "get", &id])["content"],
        json!({
            "count": 42, "florist": {"phone": "555-0101"}, "word": "Hello",
            "phone": "555-0199", "piped": [1, "two"], "filed": {"from": "file"}, "last": true
        })
    );
    let history = daemon.json(&["doc", "history", &id]);
    assert!(
        history
            .as_array()
            .is_some_and(|h| h.iter().any(|c| c["message"] == "count them")),
        "{history}"
    );
}

#[test]
fn set_rejects_invalid_json_unreadable_files_and_impossible_edits() {
    let daemon = Daemon::start();
    let id = daemon.new_doc(&json!({"list": []}));
    daemon
        .peerdoc()
        .args(["doc", "set", &id, "/a", "{\"open\": "])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("peerdoc: invalid JSON value: "));
    daemon
        .peerdoc()
        .args(["doc", "set", &id, "/a", "@/nonexistent/value.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "peerdoc: cannot read /nonexistent/value.json: ",
        ));
    daemon
        .peerdoc()
        .args(["doc", "set", &id, "a", "1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not a JSON pointer"));
    daemon
        .peerdoc()
        .args(["doc", "set", &id, "/list/7", "1"])
        .assert()
        .code(1)
        .stderr(predicate::str::ends_with("(invalid_change)\n"));
    assert_eq!(
        daemon.json(&["doc", "get", &id])["content"],
        json!({"list": []})
    );
}

// ---- doc delete ----

#[test]
fn delete_is_final_and_listed_only_on_request() {
    let daemon = Daemon::start();
    let id = daemon.new_doc(&json!({}));
    daemon
        .peerdoc()
        .args(["doc", "delete", &id])
        .assert()
        .success()
        .stdout(format!("deleted {id}\n"));
    assert_eq!(daemon.json(&["doc", "list"]), json!([]));
    let all = daemon.json(&["doc", "list", "--deleted"]);
    assert_eq!(all[0]["deleted"], true);
    let text = daemon.ok(&["doc", "list", "--deleted"]);
    assert!(
        text.lines().next().is_some_and(|h| h.ends_with("DELETED")),
        "{text}"
    );
    assert!(
        text.contains(&id) && text.trim_end().ends_with("yes"),
        "{text}"
    );
    daemon
        .peerdoc()
        .args(["doc", "get", &id])
        .assert()
        .code(1)
        .stderr(predicate::str::ends_with("(deleted)\n"));

    let other = daemon.new_doc(&json!({}));
    assert_eq!(
        daemon.json(&["doc", "delete", &other]),
        json!({"id": other, "deleted": true})
    );
}

// ---- doc import / export ----

#[test]
fn export_and_import_round_trip() {
    let daemon = Daemon::start();
    let id = daemon.new_doc(&json!({"vendors": [{"name": "Florist"}]}));
    let file = daemon.data_dir().join("doc.automerge");
    let out = daemon.ok(&["doc", "export", &id, "-o", &file.display().to_string()]);
    assert!(
        out.starts_with(&format!("exported {id} to {}", file.display())),
        "{out}"
    );
    let bytes = std::fs::read(&file).expect("exported file");
    assert!(
        Automerge::load(&bytes).is_ok(),
        "the export is an automerge document"
    );

    // To stdout, the same bytes.
    let piped = daemon
        .peerdoc()
        .args(["doc", "export", &id])
        .output()
        .expect("run");
    assert!(piped.status.success());
    assert_eq!(piped.stdout, bytes);

    let copy = daemon.ok(&[
        "doc",
        "import",
        &file.display().to_string(),
        "--title",
        "Copy",
    ]);
    let copy = copy.trim();
    assert_ne!(copy, id);
    assert_eq!(
        daemon.json(&["doc", "get", copy])["content"],
        json!({"vendors": [{"name": "Florist"}]})
    );
    let listed = daemon.json(&["doc", "list"]);
    assert!(
        listed
            .as_array()
            .is_some_and(|docs| docs.iter().any(|d| d["id"] == copy && d["title"] == "Copy")),
        "{listed}"
    );

    let from_stdin = daemon
        .peerdoc()
        .args(["--json", "doc", "import", "-"])
        .write_stdin(bytes)
        .output()
        .expect("run");
    assert!(
        from_stdin.status.success(),
        "{}",
        String::from_utf8_lossy(&from_stdin.stderr)
    );
    let created: Value = serde_json::from_slice(&from_stdin.stdout).expect("JSON");
    assert!(
        created["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("automerge:"))
    );
}

#[test]
fn import_rejects_unreadable_files_and_non_automerge_bytes() {
    let daemon = Daemon::start();
    daemon
        .peerdoc()
        .args(["doc", "import", "/nonexistent/doc.automerge"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "peerdoc: cannot read /nonexistent/doc.automerge: No such file",
        ));
    let garbage = daemon.data_dir().join("garbage.bin");
    std::fs::write(&garbage, b"this is not automerge").expect("write");
    daemon
        .peerdoc()
        .args(["doc", "import", &garbage.display().to_string()])
        .assert()
        .code(1)
        .stderr(predicate::str::ends_with("(invalid_document)\n"));
    assert_eq!(daemon.json(&["doc", "list"]), json!([]));
}

#[test]
fn fetch_answers_at_once_for_a_document_held_and_not_found_without_peers() {
    let daemon = Daemon::start();
    let id = daemon.new_doc(&json!({"a": 1}));
    daemon
        .peerdoc()
        .args(["doc", "fetch", &id])
        .assert()
        .success()
        .stdout(format!("{id}\n"));
    daemon
        .peerdoc()
        .args(["doc", "fetch", UNKNOWN_ID])
        .assert()
        .code(1)
        .stderr(predicate::str::ends_with("(not_found)\n"));
}

#[test]
fn a_failed_export_leaves_no_file() {
    let daemon = Daemon::start();
    let file = daemon.data_dir().join("never.automerge");
    daemon
        .peerdoc()
        .args([
            "doc",
            "export",
            UNKNOWN_ID,
            "-o",
            &file.display().to_string(),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::ends_with("(not_found)\n"));
    assert!(!file.exists());
}

// ---- doc history / conflicts ----

#[test]
fn history_lists_every_change() {
    let daemon = Daemon::start();
    let id = daemon.new_doc(&json!({"n": 1}));
    daemon.ok(&["doc", "set", &id, "/n", "2", "--message", "second try"]);
    let text = daemon.ok(&["doc", "history", &id]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("HASH "), "{text}");
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[2].ends_with("second try"), "{text}");
    let history = daemon.json(&["doc", "history", &id]);
    let hash = history[1]["hash"].as_str().expect("hash");
    assert_eq!(hash.len(), 64);
    assert!(
        lines[2].starts_with(hash),
        "hashes are printed whole: {text}"
    );
    assert_eq!(history[1]["deps"][0], history[0]["hash"]);
}

/// Automerge bytes of a document whose `/florist/phone` two devices set concurrently.
fn conflicted_document() -> Vec<u8> {
    let mut base = AutoCommit::new().with_actor(ActorId::from(vec![1u8; 16]));
    let florist = base
        .put_object(ROOT, "florist", automerge::ObjType::Map)
        .expect("put");
    base.put(&florist, "phone", "555-0100").expect("put");
    base.commit_with(CommitOptions::default().with_time(1_763_774_000));
    let mut planner = base.fork().with_actor(ActorId::from(vec![2u8; 16]));
    let mut assistant = base.fork().with_actor(ActorId::from(vec![3u8; 16]));
    planner.put(&florist, "phone", "555-0101").expect("put");
    planner.commit_with(CommitOptions::default().with_time(1_763_774_100));
    assistant.put(&florist, "phone", "555-0199").expect("put");
    assistant.commit_with(CommitOptions::default().with_time(1_763_774_100));
    planner.merge(&mut assistant).expect("merge");
    planner.save()
}

#[test]
fn conflicts_show_concurrent_values() {
    let daemon = Daemon::start();
    let file = daemon.data_dir().join("conflicted.automerge");
    std::fs::write(&file, conflicted_document()).expect("write");
    let id = daemon.ok(&["doc", "import", &file.display().to_string()]);
    let id = id.trim();

    let text = daemon.ok(&["doc", "conflicts", id]);
    assert!(
        text.starts_with("conflicts now:\n/florist/phone\n"),
        "{text}"
    );
    assert!(
        text.contains("\"555-0101\"") && text.contains("\"555-0199\""),
        "{text}"
    );
    let report = daemon.json(&["doc", "conflicts", id]);
    let values = report["current"][0]["values"].as_array().expect("values");
    assert_eq!(values.len(), 2, "{report}");
    assert_eq!(values.iter().filter(|v| v["winner"] == true).count(), 1);
    assert!(report["log"].is_array());

    let calm = daemon.new_doc(&json!({"a": 1}));
    daemon
        .peerdoc()
        .args(["doc", "conflicts", &calm])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("no conflicts now\n"));
}

// ---- doc watch ----

/// Runs `make_event` until the watcher prints a line (it subscribes asynchronously, so
/// the first events may come before it listens); returns that line.
fn first_line(lines: &mpsc::Receiver<String>, mut make_event: impl FnMut(u32)) -> String {
    let started = Instant::now();
    for attempt in 0.. {
        make_event(attempt);
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(250)) {
            return line;
        }
        assert!(started.elapsed() < TIMEOUT, "the watcher printed nothing");
    }
    unreachable!()
}

fn spawn_watch(daemon: &Daemon, args: &[&str]) -> Child {
    std::process::Command::new(BIN)
        .env_remove("PEERDOC_API_URL")
        .env_remove("PEERDOC_TOKEN")
        .arg("--data-dir")
        .arg(daemon.data_dir())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn peerdoc doc watch")
}

#[test]
fn watch_prints_changes_as_they_happen_and_ctrl_c_ends_it_cleanly() {
    let daemon = Daemon::start();
    let id = daemon.new_doc(&json!({"n": 0}));
    let other = daemon.new_doc(&json!({"n": 0}));
    let mut watch = spawn_watch(&daemon, &["doc", "watch", &id]);
    let lines = lines_of(&mut watch);
    let mut make_changes = |n: u32| {
        // Changes to a document not watched must not show.
        daemon.ok(&["doc", "set", &other, "/n", &n.to_string()]);
        daemon.ok(&["doc", "set", &id, "/n", &n.to_string()]);
    };
    let mut line = first_line(&lines, &mut make_changes);
    // The creation's own change (no paths) may still be on its way when watching starts.
    if line == format!("change             {id}  local") {
        line = first_line(&lines, &mut make_changes);
    }
    assert_eq!(line, format!("change             {id}  local  /n"));

    signal(&watch, "-INT");
    let status = watch.wait().expect("wait for watch");
    assert!(
        status.success(),
        "Ctrl-C ends watch with exit code 0, not {status}"
    );
}

#[test]
fn watch_json_prints_one_object_per_line_and_ends_when_the_daemon_stops() {
    let mut daemon = Daemon::start();
    let mut watch = spawn_watch(&daemon, &["--json", "doc", "watch"]);
    let lines = lines_of(&mut watch);
    // The watcher may start listening between a document's `created` and its first
    // `change`: read until a `created` shows, checking every line on the way.
    let started = Instant::now();
    let mut seen_created = false;
    while !seen_created {
        assert!(started.elapsed() < TIMEOUT, "no created event");
        daemon.new_doc(&json!({}));
        while let Ok(line) = lines.recv_timeout(Duration::from_millis(250)) {
            let event: Value = serde_json::from_str(&line).expect("a JSON object per line");
            let doc = event["data"]["doc"].as_str().expect("a doc id");
            assert!(peerdoc_core::DocumentId::parse(doc).is_ok(), "{event}");
            assert_eq!(event["data"]["origin"], "local", "{event}");
            if event["event"] == "created" {
                seen_created = true;
                break;
            }
            assert_eq!(event["event"], "change", "{event}");
        }
    }

    daemon.stop();
    let status = watch.wait().expect("wait for watch");
    assert!(
        status.success(),
        "the stream's end is a clean exit, not {status}"
    );
}

// ---- errors every command shares ----

#[test]
fn bad_ids_are_rejected_before_any_request() {
    // No daemon at all: the id check must come first.
    let empty = tempfile::tempdir().expect("temp dir");
    for args in [
        vec!["doc", "get", "not-an-id"],
        vec!["doc", "set", "4NMNnkMhL8jXrdJ9jamS58PAVdXv", "/a", "1"],
        vec!["doc", "delete", "automerge:abc"],
        vec!["doc", "export", "0OIl"],
        vec!["doc", "history", ""],
        vec!["doc", "conflicts", "x"],
        vec!["doc", "watch", UNKNOWN_ID, "nope"],
    ] {
        peerdoc_in(empty.path())
            .args(&args)
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicate::str::starts_with("peerdoc: document id ").and(
                predicate::str::contains(
                    "expected an id like 4NMNnkMhL8jXrdJ9jamS58PAVdXu or an automerge: URL",
                ),
            ));
    }
}

#[test]
fn commands_without_a_daemon_say_how_to_start_one() {
    let empty = tempfile::tempdir().expect("temp dir");
    let dir = empty.path().display().to_string();
    for args in [
        vec!["status"],
        vec!["peers"],
        vec!["doc", "list"],
        vec!["doc", "get", UNKNOWN_ID],
    ] {
        peerdoc_in(empty.path())
            .args(&args)
            .assert()
            .code(1)
            .stderr(format!(
                "peerdoc: no daemon is running for data dir {dir} (no {dir}/api.addr); \
                 start one with `peerdoc run --data-dir {dir}`\n"
            ));
    }
}

#[test]
fn a_stale_address_file_is_reported_as_a_daemon_not_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Bind and drop a listener: its port now refuses connections.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    std::fs::write(
        dir.path().join("api.addr"),
        format!("http://127.0.0.1:{port}\n"),
    )
    .expect("write");
    std::fs::write(dir.path().join("api.token"), "x".repeat(64)).expect("write");
    peerdoc_in(dir.path())
        .arg("status")
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(format!(
            "peerdoc: cannot reach the daemon at http://127.0.0.1:{port} (from {}): connection refused; is it running? start it with `peerdoc run --data-dir {}`",
            dir.path().join("api.addr").display(),
            dir.path().display()
        )));
}

#[test]
fn a_wrong_token_is_rejected_with_where_it_came_from() {
    let daemon = Daemon::start();
    daemon
        .peerdoc()
        .args(["--token", &"f".repeat(64), "status"])
        .assert()
        .code(1)
        .stderr(
            "peerdoc: token rejected; does --token/PEERDOC_TOKEN match this daemon's api.token?\n",
        );

    // Another data dir pointing at this daemon, holding some other daemon's token.
    let other = tempfile::tempdir().expect("temp dir");
    let addr = std::fs::read_to_string(daemon.data_dir().join("api.addr")).expect("api.addr");
    std::fs::write(other.path().join("api.addr"), addr).expect("write");
    let token_file: PathBuf = other.path().join("api.token");
    std::fs::write(&token_file, "e".repeat(64)).expect("write");
    peerdoc_in(other.path())
        .args(["doc", "list"])
        .assert()
        .code(1)
        .stderr(format!(
            "peerdoc: token rejected; is {} from this daemon?\n",
            token_file.display()
        ));

    // The right token by flag and URL by environment work from anywhere.
    let token = std::fs::read_to_string(daemon.data_dir().join("api.token")).expect("token");
    let url = std::fs::read_to_string(daemon.data_dir().join("api.addr")).expect("addr");
    peerdoc_in(other.path())
        .env("PEERDOC_API_URL", url.trim())
        .env("PEERDOC_TOKEN", token.trim())
        .args(["doc", "list"])
        .assert()
        .success();
}

#[test]
fn usage_errors_exit_with_2() {
    let daemon = Daemon::start();
    daemon
        .peerdoc()
        .args(["doc", "set", UNKNOWN_ID])
        .assert()
        .code(2);
    daemon
        .peerdoc()
        .args(["doc", "frobnicate"])
        .assert()
        .code(2);
}
