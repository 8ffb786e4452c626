//! The first hour with peerdoc, as a new user meets it: the "ready" line, client
//! commands that wait for a daemon that is starting, `peerdoc id`, `config show`, a
//! listen port that survives restarts, the log file, completions, help without Rust
//! markup, errors in words, shared titles and priorities, and the conflict summary.
//!
//! Real `peerdoc` processes on loopback with mDNS off (`support/daemon.rs`). The one test
//! of the default listen addresses binds the daemon's default port on every interface,
//! closed (no team, so nobody can connect) and with mDNS off; nothing is sent anywhere.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use daemon::{Daemon, eventually};
use serde_json::{Value, json};

/// `peerdoc --data-dir DIR ARGS…` as a user runs it: clean environment, no user config.
fn peerdoc(data_dir: &Path, args: &[&str]) -> Output {
    peerdoc_with_env(data_dir, args, &[])
}

fn peerdoc_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = data_dir.with_extension("home");
    daemon::clean_command(&home)
        .envs(env.iter().copied())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run peerdoc")
}

fn ok(data_dir: &Path, args: &[&str]) -> String {
    let output = peerdoc(data_dir, args);
    assert!(
        output.status.success(),
        "peerdoc {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn a_client_command_right_after_run_waits_and_the_daemon_says_ready() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("a");
    let home = data.with_extension("home");
    let out = dir.path().join("a.out");
    let mut child = daemon::command(&data, &home)
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // No wait at all, as in `peerdoc run & peerdoc status`: the client waits for it.
    let status = peerdoc(&data, &["--json", "status"]);
    let _guard = Killed(&mut child);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: Value = serde_json::from_slice(&status.stdout).expect("json");
    let peer_id = status["peer_id"].as_str().expect("peer id").to_owned();

    let ready = eventually("the ready line", || {
        std::fs::read_to_string(&out)
            .ok()?
            .lines()
            .find(|l| l.starts_with("peerdoc ready:"))
            .map(str::to_owned)
    });
    let api = status["api_url"].as_str().expect("api url");
    assert!(
        ready.starts_with(&format!(
            "peerdoc ready: API {api}  address /ip4/127.0.0.1/tcp/"
        )),
        "{ready}"
    );
    assert!(ready.ends_with(&format!("/p2p/{peer_id}")), "{ready}");

    // `peerdoc id`: the peer id, then the addresses to dial, the ready line's first.
    let id = ok(&data, &["id"]);
    let mut lines = id.lines();
    assert_eq!(lines.next(), Some(peer_id.as_str()), "{id}");
    let first = lines.next().expect("an address");
    assert!(ready.ends_with(first), "{ready} / {id}");
    let json: Value = serde_json::from_str(&ok(&data, &["--json", "id"])).expect("json");
    assert_eq!(json["addrs"][0], first);
}

/// Kills a child when dropped.
struct Killed<'a>(&'a mut std::process::Child);

impl Drop for Killed<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn no_daemon_at_all_fails_quickly_with_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = peerdoc(&dir.path().join("none"), &["status"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no daemon is running"), "{stderr}");
    assert!(stderr.contains("peerdoc run"), "{stderr}");
}

#[test]
fn config_show_names_where_each_value_came_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("a");
    let file = dir.path().join("peerdoc.toml");
    std::fs::write(&file, "[api]\nlisten = \"127.0.0.1:7555\"\n").expect("config file");
    let file_arg = file.display().to_string();
    let output = peerdoc_with_env(
        &data,
        &[
            "config",
            "show",
            "--config",
            &file_arg,
            "--no-mdns",
            "--peer",
            "127.0.0.1:4101",
            "--set",
            "node.max_docs_in_memory=77",
        ],
        &[("PEERDOC_NODE_COMPACTION_THRESHOLD", "9")],
    );
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("net.enable_mdns"),
        "net.enable_mdns = false # flag --no-mdns"
    );
    // --no-mdns once dropped the default QUIC listener: the rest of [net] stays default.
    assert_eq!(
        line("net.listen_addrs"),
        "net.listen_addrs = [\"/ip4/0.0.0.0/tcp/7410\", \"/ip4/0.0.0.0/udp/7410/quic-v1\"] # default"
    );
    // IP:PORT is accepted for a peer, as `peerdoc peers add` accepts it.
    assert_eq!(
        line("net.peers"),
        "net.peers = [\"/ip4/127.0.0.1/tcp/4101\"] # flag --peer"
    );
    assert_eq!(
        line("node.max_docs_in_memory"),
        "node.max_docs_in_memory = 77 # --set"
    );
    assert_eq!(
        line("node.compaction_threshold"),
        "node.compaction_threshold = 9 # environment PEERDOC_NODE_COMPACTION_THRESHOLD"
    );
    assert_eq!(
        line("api.listen"),
        format!("api.listen = \"127.0.0.1:7555\" # file {}", file.display())
    );
    assert!(
        text.starts_with(&format!("# config file: {}\n", file.display())),
        "{text}"
    );

    let shown: Value = serde_json::from_str(&ok(
        &data,
        &["--json", "config", "show", "--profile", "cloud"],
    ))
    .expect("json");
    let mdns = shown
        .as_array()
        .expect("array")
        .iter()
        .find(|k| k["key"] == "net.enable_mdns")
        .expect("net.enable_mdns");
    assert_eq!(mdns["origin"], "profile cloud", "{mdns}");

    // A bad address names itself and where it came from.
    let bad = peerdoc(&data, &["config", "show", "--peer", "nonsense:addr"]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("\"nonsense:addr\" is not an address"),
        "{stderr}"
    );
    assert!(stderr.contains("flag --peer"), "{stderr}");
}

#[test]
fn a_second_daemon_on_one_directory_is_refused_in_words() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("a");
    let _first = Daemon::start("first", &data, "/ip4/127.0.0.1/tcp/0", &[]);
    let home = data.with_extension("home");
    let second = daemon::command(&data, &home)
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .output()
        .expect("run");
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("is in use by another peerdoc"), "{stderr}");
    assert!(!stderr.contains("Os {"), "Rust debug text: {stderr}");
    assert!(!stderr.contains("kind:"), "Rust debug text: {stderr}");
}

/// The TCP port in a status's listen addresses.
fn tcp_port(status: &Value) -> u16 {
    status["listen_addrs"]
        .as_array()
        .expect("listen addrs")
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.split("/tcp/").nth(1)?.split('/').next()?.parse().ok())
        .expect("a TCP address")
}

#[test]
fn the_default_listen_port_survives_restarts_even_for_a_second_daemon() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // Closed (no team) and mDNS off: listening on every interface lets nobody in.
    let mut first = Daemon::start_in_team_mode("a", &a, "", &[]);
    let mut second = Daemon::start_in_team_mode("b", &b, "", &[]);
    let (port_a, port_b) = (tcp_port(&first.status()), tcp_port(&second.status()));
    assert_ne!(port_a, port_b);
    assert_eq!(
        std::fs::read_to_string(a.join("net.port"))
            .expect("net.port")
            .trim(),
        port_a.to_string()
    );
    assert!(first.sigterm().success());
    assert!(second.sigterm().success());
    // Either order: each gets its own port back.
    let second = Daemon::start_in_team_mode("b", &b, "", &[]);
    let first = Daemon::start_in_team_mode("a", &a, "", &[]);
    assert_eq!(tcp_port(&first.status()), port_a);
    assert_eq!(tcp_port(&second.status()), port_b);
}

#[test]
fn the_log_file_gets_the_log_and_is_private() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("a");
    let log = dir.path().join("logs/peerdoc.log");
    let log_arg = log.display().to_string();
    let mut daemon = Daemon::start(
        "a",
        &data,
        "/ip4/127.0.0.1/tcp/0",
        &["--log-file", &log_arg],
    );
    assert!(daemon.sigterm().success());
    let text = std::fs::read_to_string(&log).expect("log file");
    assert!(text.contains("peerdoc daemon running"), "{text}");
    assert!(text.contains("stopped"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&log).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A log file that cannot be written is an error at start, naming it.
    let bad = daemon::command(&dir.path().join("b"), &dir.path().join("b.home"))
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .args(["--log-file", "/proc/peerdoc/nowhere.log"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("cannot write the log file /proc/peerdoc/nowhere.log"),
        "{stderr}"
    );
}

#[test]
fn completions_and_help_read_as_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("a");
    let bash = ok(&data, &["completions", "bash"]);
    assert!(
        bash.contains("_peerdoc()") && bash.contains("team"),
        "{bash}"
    );
    for shell in ["zsh", "fish"] {
        assert!(ok(&data, &["completions", shell]).contains("peerdoc"));
    }
    let help = ok(&data, &["run", "--help"]);
    assert!(!help.contains('`'), "rustdoc markup in run --help:\n{help}");
    for client_only in ["--json", "--token", "--api-url"] {
        assert!(!help.contains(client_only), "{client_only} in run --help");
    }
    assert!(help.contains("--log-file"), "{help}");
    assert!(ok(&data, &["status", "--help"]).contains("--json"));
}

#[test]
fn titles_and_priorities_reach_every_device() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Daemon::start("a", &dir.path().join("a"), "/ip4/127.0.0.1/tcp/0", &[]);
    let b = Daemon::start(
        "b",
        &dir.path().join("b"),
        "/ip4/127.0.0.1/tcp/0",
        &["--peer", &a.dial_addr()],
    );
    let created = a
        .client
        .post(
            "/v1/docs",
            &json!({"content": {"x": 1}, "title": "Run of show", "priority": 7}),
        )
        .ok(201);
    let id = created["id"].as_str().expect("id").to_owned();
    let meta_on = |daemon: &Daemon| -> Option<(String, i64)> {
        let docs = daemon.client.get("/v1/docs").ok(200);
        let doc = docs.as_array()?.iter().find(|d| d["id"] == id.as_str())?;
        Some((doc["title"].as_str()?.to_owned(), doc["priority"].as_i64()?))
    };
    eventually("the title on b", || {
        meta_on(&b).filter(|m| *m == ("Run of show".to_owned(), 7))
    });
    // A change on b (through the CLI) reaches a.
    let b_dir = dir.path().join("b");
    let shown = ok(
        &b_dir,
        &[
            "doc",
            "meta",
            &id,
            "--title",
            "Run of show v2",
            "--priority",
            "9",
        ],
    );
    assert!(shown.contains("Run of show v2"), "{shown}");
    eventually("the new title on a", || {
        meta_on(&a).filter(|m| *m == ("Run of show v2".to_owned(), 9))
    });
    let a_dir = dir.path().join("a");
    let shown = ok(&a_dir, &["doc", "meta", &id]);
    assert!(shown.contains("title     Run of show v2"), "{shown}");
    assert!(shown.contains("priority  9"), "{shown}");
    // The document that carries them is the daemon's own: listed only on request.
    let listed = ok(&a_dir, &["doc", "list"]);
    assert!(!listed.contains("shared titles"), "{listed}");
    let listed = ok(&a_dir, &["doc", "list", "--system"]);
    assert!(
        listed.contains("peerdoc: shared titles and priorities"),
        "{listed}"
    );
}

/// Automerge bytes of a document with one conflicted field.
fn conflicted_document() -> Vec<u8> {
    use automerge::transaction::Transactable as _;
    use automerge::{ActorId, AutoCommit, ROOT};
    let mut base = AutoCommit::new().with_actor(ActorId::from(vec![1u8; 16]));
    base.put(ROOT, "table", "Ana").expect("put");
    base.commit();
    let mut other = base.fork().with_actor(ActorId::from(vec![2u8; 16]));
    base.put(ROOT, "table", "Ben").expect("put");
    other.put(ROOT, "table", "Cai").expect("put");
    base.merge(&mut other).expect("merge");
    base.save()
}

#[test]
fn status_summarises_open_conflicts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("a");
    let daemon = Daemon::start("a", &data, "/ip4/127.0.0.1/tcp/0", &[]);
    let text = ok(&data, &["status"]);
    assert!(text.contains("conflicts  none open"), "{text}");
    let file = dir.path().join("seating.automerge");
    std::fs::write(&file, conflicted_document()).expect("write");
    let id = ok(
        &data,
        &[
            "doc",
            "import",
            &file.display().to_string(),
            "--title",
            "Seating",
        ],
    );
    let id = id.trim();
    let status = daemon.status();
    assert_eq!(status["conflicts"]["documents"], 1, "{status}");
    assert_eq!(status["conflicts"]["docs"][0]["paths"], json!(["/table"]));
    let text = ok(&data, &["status"]);
    assert!(
        text.contains("conflicts  1 field open in 1 document"),
        "{text}"
    );
    assert!(text.contains(&format!("  {id}  Seating  /table")), "{text}");
    // A choice that is none of the values is refused, naming the ones there are.
    let wrong = peerdoc(&data, &["doc", "resolve", id, "/table", "--keep", "nobody"]);
    assert_eq!(wrong.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("\"nobody\" is none of the values"),
        "{stderr}"
    );
    assert!(stderr.contains("(unknown_choice)"), "{stderr}");
    // Settled from the CLI by keeping the value automerge did not show.
    let conflicts = daemon
        .client
        .get(&format!("/v1/docs/{id}/conflicts"))
        .ok(200);
    let loser = conflicts["current"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .find(|v| v["winner"] == false)
        .expect("a losing value")
        .clone();
    let prefix = &loser["change"].as_str().expect("hash")[..6];
    let said = ok(&data, &["doc", "resolve", id, "/table", "--keep", prefix]);
    assert!(
        said.starts_with(&format!("kept {} (", loser["value"])),
        "{said}"
    );
    assert_eq!(daemon.client.read(id)["content"]["table"], loser["value"]);
    let text = ok(&data, &["status"]);
    assert!(text.contains("conflicts  none open"), "{text}");
}

#[test]
fn json_output_keeps_every_field_the_daemon_sends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("a");
    let daemon = Daemon::start("a", &data, "/ip4/127.0.0.1/tcp/0", &[]);
    daemon.client.create(json!({"a": 1}));
    let list: Value = serde_json::from_str(&ok(&data, &["--json", "doc", "list"])).expect("json");
    assert_eq!(list[0]["cloud_receipt"], "unconfirmed", "{list}");
    let status: Value = serde_json::from_str(&ok(&data, &["--json", "status"])).expect("json");
    assert_eq!(
        status["docs"][0]["cloud_receipt"], "unconfirmed",
        "{status}"
    );
    assert!(status["conflicts"].is_object(), "{status}");
}

#[test]
fn a_client_keeps_waiting_while_the_daemon_says_it_is_starting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("a");
    std::fs::create_dir_all(&data).expect("dir");
    // A live process (this test) says a daemon is starting; none ever answers.
    std::fs::write(
        data.join("api.starting"),
        format!("{}\n", std::process::id()),
    )
    .expect("marker");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_peerdoc"))
        .env_remove("PEERDOC_API_URL")
        .arg("--data-dir")
        .arg(&data)
        .arg("status")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    // Past the 1 s a client waits without a marker, it is still waiting.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the client gave up after {:?}",
        started.elapsed()
    );
    let _ = child.kill();
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("waiting for the daemon"), "{stderr}");
}

/// The codes of `daemon`'s `network` problems in `/v1/status`.
fn network_codes(daemon: &Daemon) -> Vec<String> {
    daemon.status()["network"]
        .as_array()
        .expect("network")
        .iter()
        .filter_map(|p| p["code"].as_str().map(str::to_owned))
        .collect()
}

/// A device alone says why, in words, in `/v1/status` and `peerdoc status`: no way to
/// find anyone, an address nobody answers at, a device with another team key.
#[test]
fn status_says_in_words_why_nobody_is_connected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lonely = Daemon::start(
        "lonely",
        &dir.path().join("lonely"),
        "/ip4/127.0.0.1/tcp/0",
        &[],
    );
    eventually("mDNS off and no address", || {
        network_codes(&lonely)
            .contains(&"no_discovery".to_owned())
            .then_some(())
    });

    let nobody = format!("/ip4/127.0.0.1/tcp/{}", daemon::free_port());
    let dead = Daemon::start(
        "dead",
        &dir.path().join("dead"),
        "/ip4/127.0.0.1/tcp/0",
        &["--peer", &nobody],
    );
    eventually("nothing answers there", || {
        network_codes(&dead)
            .contains(&"addresses_dead".to_owned())
            .then_some(())
    });

    let (ours, theirs) = (dir.path().join("ours.key"), dir.path().join("theirs.key"));
    std::fs::write(&ours, "1a".repeat(32)).expect("key");
    std::fs::write(&theirs, "2b".repeat(32)).expect("key");
    let other_team = Daemon::start(
        "other-team",
        &dir.path().join("other-team"),
        "/ip4/127.0.0.1/tcp/0",
        &["--team-key-file", theirs.to_str().expect("utf-8")],
    );
    let addr = other_team.dial_addr();
    let ours_data = dir.path().join("ours");
    let keyed = Daemon::start(
        "ours",
        &ours_data,
        "/ip4/127.0.0.1/tcp/0",
        &[
            "--team-key-file",
            ours.to_str().expect("utf-8"),
            "--peer",
            &addr,
        ],
    );
    eventually("another team's key", || {
        network_codes(&keyed)
            .contains(&"another_team_key".to_owned())
            .then_some(())
    });
    let text = ok(&ours_data, &["status"]);
    assert!(
        text.contains("network    a device answered with another team key"),
        "{text}"
    );
}
