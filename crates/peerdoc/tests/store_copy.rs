//! `peerdoc store copy` as an operator runs it to move a sled cloud into PostgreSQL
//! (issue 16) and back: the documents a tablet synced to a cloud daemon (with their
//! sync states and a conflict) are served by `peerdoc run --store` after `--to`, byte
//! for byte what the sled store held, and by a sled daemon on a fresh data directory
//! after `--from`. And what it refuses: a running daemon, a destination with anything
//! in it, an unreachable database (one line), and a daemon on an unfinished copy,
//! which running the copy again finishes. A real PostgreSQL server the test starts
//! (Unix socket only) and real `peerdoc` processes.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;
#[path = "../../peerdoc-store-postgres/tests/support/pg.rs"]
mod pg;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Output, Stdio};

use automerge::transaction::{CommitOptions, Transactable as _};
use automerge::{ActorId, AutoCommit, ROOT};
use daemon::{Daemon, clean_command, content, eventually, free_port};
use peerdoc_core::{Storage as _, StorageKey, WriteBatch};
use peerdoc_store::{SledConfig, SledStorage, copy_marker_key};
use peerdoc_store_postgres::PostgresStorage;
use serde_json::{Value, json};

type Entries = BTreeMap<StorageKey, Vec<u8>>;

/// What a reader sees of a document: content, heads and conflicts (current and log).
fn served(daemon: &Daemon, id: &str) -> Value {
    let doc = daemon.client.get(&format!("/v1/docs/{id}")).ok(200);
    let conflicts = daemon
        .client
        .get(&format!("/v1/docs/{id}/conflicts"))
        .ok(200);
    json!({"content": doc["content"], "heads": doc["heads"], "conflicts": conflicts})
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

/// Every entry of a stopped daemon's sled store.
fn sled_entries(data_dir: &Path) -> Entries {
    let store = SledStorage::open(data_dir.join("store"), SledConfig::default()).expect("open");
    store.range(&[]).expect("range").into_iter().collect()
}

fn pg_store(pg: &pg::TestPostgres, database: &str) -> PostgresStorage {
    PostgresStorage::open(pg.config(database, "peerdoc")).expect("open the database")
}

fn pg_entries(pg: &pg::TestPostgres, database: &str) -> Entries {
    pg_store(pg, database)
        .range(&[])
        .expect("range")
        .into_iter()
        .collect()
}

/// `peerdoc store copy` on `data_dir` with `args`, and `PEERDOC_STORE` when given.
fn store_copy(data_dir: &Path, env_store: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = clean_command(&data_dir.with_extension("home"));
    if let Some(store) = env_store {
        cmd.env("PEERDOC_STORE", store);
    }
    cmd.args(["store", "copy", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run peerdoc store copy")
}

fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The one `peerdoc: ` line a failed command printed (exit code 1, nothing else).
fn failed(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("peerdoc: "), "{stderr}");
    lines[0].to_owned()
}

/// Starts `peerdoc run` on `data_dir` expecting it to refuse to start: exit code 1 and
/// one `peerdoc: ` line, which it returns. A daemon that starts instead fails the test
/// at once (rather than hanging it, as waiting for its exit would).
fn refused_start(data_dir: &Path, extra: &[&str]) -> String {
    let log = data_dir.with_extension("refused.log");
    let mut child = daemon::command(data_dir, &data_dir.with_extension("home"))
        .args(["--api-listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(File::create(&log).expect("log"))
        .spawn()
        .expect("spawn peerdoc run");
    let status = eventually("the daemon to stop", || {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if data_dir.join("api.addr").exists() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the daemon started: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        None
    });
    let stderr = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("peerdoc: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    errors[0].to_owned()
}

#[test]
fn a_sled_cloud_moves_into_postgres_and_back_with_every_document_intact() {
    let Some(pg) = pg::start_or_skip("store_copy") else {
        return;
    };
    pg.create_database("cloud");
    let conn = pg.connection_string("cloud");
    let dir = tempfile::tempdir().unwrap();
    let cloud_dir = dir.path().join("cloud");
    let cloud_listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());

    // A cloud on sled, with a tablet's documents synced to it (so sync states too).
    let mut cloud = Daemon::start("cloud", &cloud_dir, &cloud_listen, &[]);
    let tablet_dir = dir.path().join("tablet");
    let mut tablet = Daemon::start(
        "tablet",
        &tablet_dir,
        "/ip4/127.0.0.1/tcp/0",
        &[
            "--peer",
            &cloud.dial_addr(),
            "--set",
            "net.reconnect_cap=1000",
        ],
    );
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            tablet
                .client
                .create(json!({"table": n, "guests": ["Ada", "Grace"]})),
        );
    }
    tablet
        .client
        .patch(
            &format!("/v1/docs/{}", ids[0]),
            &json!({"ops": [{"op": "set", "path": "/guests/1", "value": "Hedy"}]}),
        )
        .ok(200);
    let imported = cloud.client.call(
        "POST",
        "/v1/docs/import?title=Florist",
        Some("application/octet-stream"),
        Some(conflicted_document()),
    );
    ids.push(imported.ok(201)["id"].as_str().expect("id").to_owned());
    for id in &ids[..5] {
        eventually("the cloud to have the tablet's documents", || {
            let on_tablet = content(&tablet, id)?;
            (content(&cloud, id)? == on_tablet).then_some(())
        });
    }
    let before: Vec<Value> = ids.iter().map(|id| served(&cloud, id)).collect();
    let florist = &before[5]["conflicts"];
    assert_eq!(florist["current"][0]["path"], "/florist/phone", "{florist}");
    assert!(
        !florist["log"].as_array().expect("log").is_empty(),
        "{florist}"
    );
    assert!(tablet.sigterm().success());
    assert!(cloud.sigterm().success());
    let on_sled = sled_entries(&cloud_dir);
    let sync_states = on_sled
        .keys()
        .filter(|k| k.components().get(1).is_some_and(|c| c == "sync-state"))
        .count();
    assert!(
        sync_states > 0,
        "no sync state to copy: {:?}",
        on_sled.keys()
    );

    // Into PostgreSQL, the connection string from the environment.
    let summary = succeeded(&store_copy(&cloud_dir, Some(&conn), &["--to"]));
    assert!(summary.contains("read back identical"), "{summary}");
    assert!(
        summary.contains(&format!("values     {} in ", on_sled.len())),
        "{summary}"
    );
    // The tablet's, the imported one, and the daemon's own (shared titles).
    let documents = on_sled
        .keys()
        .filter(|k| {
            k.components()
                .starts_with(&["peerdoc".into(), "meta".into()])
        })
        .count();
    assert!(documents > ids.len(), "{documents}");
    assert!(
        summary.contains(&format!("documents  {documents}\n")),
        "{summary}"
    );
    assert_eq!(pg_entries(&pg, "cloud"), on_sled, "the database differs");

    // The daemon on the database serves the same documents, and syncs new edits.
    let mut cloud = Daemon::start("cloud", &cloud_dir, &cloud_listen, &["--store", &conn]);
    assert!(
        cloud
            .log_text()
            .contains("documents are kept in PostgreSQL")
    );
    let on_pg: Vec<Value> = ids.iter().map(|id| served(&cloud, id)).collect();
    assert_eq!(on_pg, before);
    let tablet = Daemon::start(
        "tablet",
        &tablet_dir,
        "/ip4/127.0.0.1/tcp/0",
        &[
            "--peer",
            &cloud.dial_addr(),
            "--set",
            "net.reconnect_cap=1000",
        ],
    );
    tablet
        .client
        .patch(
            &format!("/v1/docs/{}", ids[1]),
            &json!({"ops": [{"op": "set", "path": "/table", "value": 11}]}),
        )
        .ok(200);
    eventually("the cloud on PostgreSQL to get the tablet's edit", || {
        (content(&cloud, &ids[1])?["table"] == 11).then_some(())
    });
    drop(tablet);
    let latest: Vec<Value> = ids.iter().map(|id| served(&cloud, id)).collect();
    assert!(cloud.sigterm().success());
    let in_database = pg_entries(&pg, "cloud");

    // And back, into a fresh data directory, the connection string as the flag's value.
    let back_dir = dir.path().join("back");
    let summary = succeeded(&store_copy(&back_dir, None, &["--from", &conn]));
    assert!(summary.contains("read back identical"), "{summary}");
    assert_eq!(
        sled_entries(&back_dir),
        in_database,
        "the sled copy differs"
    );
    let back = Daemon::start("back", &back_dir, "/ip4/127.0.0.1/tcp/0", &[]);
    let on_back: Vec<Value> = ids.iter().map(|id| served(&back, id)).collect();
    assert_eq!(on_back, latest);
}

#[test]
fn a_copy_refuses_a_running_daemon_a_full_destination_and_an_unreachable_database() {
    let Some(pg) = pg::start_or_skip("store_copy") else {
        return;
    };
    for database in ["empty", "busy"] {
        pg.create_database(database);
    }
    let empty = pg.connection_string("empty");
    let busy = pg.connection_string("busy");
    let dir = tempfile::tempdir().unwrap();
    let sled_dir = dir.path().join("sled");
    let schema_exists = |database: &str| {
        pg.sql(
            database,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'peerdoc'",
        )
        .trim()
            == "1"
    };

    // A running daemon: named, and nothing is written anywhere.
    let mut daemon = Daemon::start("sled", &sled_dir, "/ip4/127.0.0.1/tcp/0", &[]);
    let id = daemon.client.create(json!({"venue": "The Old Mill"}));
    let error = failed(&store_copy(&sled_dir, None, &["--to", &empty]));
    assert!(
        error.contains("in use by another peerdoc daemon") && error.contains("stop it first"),
        "{error}"
    );
    assert!(!schema_exists("empty"), "the copy touched the database");
    assert!(daemon.sigterm().success());

    // A database that holds a store already: refused, and left as it was.
    let busy_dir = dir.path().join("busy");
    let mut other = Daemon::start(
        "busy",
        &busy_dir,
        "/ip4/127.0.0.1/tcp/0",
        &["--store", &busy],
    );
    other.client.create(json!({"someone": "else"}));
    assert!(other.sigterm().success());
    let held = pg_entries(&pg, "busy");
    let error = failed(&store_copy(&sled_dir, Some(&busy), &["--to"]));
    assert!(
        error.contains("is not empty") && error.contains("nothing was written"),
        "{error}"
    );
    assert_eq!(pg_entries(&pg, "busy"), held);

    // --from into a data directory that has documents of its own: refused too.
    let before = sled_entries(&sled_dir);
    let error = failed(&store_copy(&sled_dir, None, &["--from", &busy]));
    assert!(error.contains("is not empty"), "{error}");
    assert_eq!(sled_entries(&sled_dir), before);

    // Nothing listening: one line that says so, promptly, without the password.
    let nowhere = format!(
        "postgres://peerdoc:hunter2@localhost/cloud?host={}/absent",
        pg.socket_dir().display()
    );
    let error = failed(&store_copy(&sled_dir, Some(&nowhere), &["--to"]));
    assert!(
        error.contains("cannot open the database: database unreachable"),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
    let error = failed(&store_copy(&sled_dir, None, &["--to"]));
    assert!(error.contains("PEERDOC_STORE"), "{error}");

    // An interrupted copy: the marker stays, and the database holds part of the store
    // (here, the first entry only, and one the source no longer has). No daemon starts
    // on it; copying again clears it and finishes.
    succeeded(&store_copy(&sled_dir, None, &["--to", &empty]));
    let store = pg_store(&pg, "empty");
    let mut half = WriteBatch::new();
    half.put(copy_marker_key(), b"peerdoc store copy (killed)".to_vec());
    half.put(
        StorageKey::new(["gone", "snapshot", "h"]),
        b"stale".to_vec(),
    );
    for (key, _) in store.range(&[]).unwrap().into_iter().skip(1) {
        half.delete(key);
    }
    store.write(half).unwrap();
    drop(store);
    let refused = refused_start(&dir.path().join("on-pg"), &["--store", &empty]);
    assert!(
        refused.contains("unfinished copy") && refused.contains("peerdoc store copy"),
        "{refused}"
    );
    let summary = succeeded(&store_copy(&sled_dir, None, &["--to", &empty]));
    assert!(summary.contains("restarted"), "{summary}");
    assert_eq!(pg_entries(&pg, "empty"), before);
    let on_pg = Daemon::start(
        "on-pg",
        &dir.path().join("on-pg"),
        "/ip4/127.0.0.1/tcp/0",
        &["--store", &empty],
    );
    assert_eq!(
        content(&on_pg, &id).expect("the document")["venue"],
        "The Old Mill"
    );
}

#[test]
fn an_encrypted_store_is_copied_with_the_daemons_secret_and_comes_back_encrypted() {
    let Some(pg) = pg::start_or_skip("store_copy") else {
        return;
    };
    pg.create_database("sealed");
    let conn = pg.connection_string("sealed");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secrets/store.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let made = clean_command(dir.path())
        .args(["store", "new-key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let key_file = format!("storage.key_file={:?}", key.display().to_string());
    let sealed = [
        "--set",
        "storage.encryption=\"key_file\"",
        "--set",
        key_file.as_str(),
    ];
    let tablet_dir = dir.path().join("tablet");
    let mut tablet = Daemon::start("tablet", &tablet_dir, "/ip4/127.0.0.1/tcp/0", &sealed);
    assert_eq!(tablet.status()["store_encryption"], "key");
    let id = tablet.client.create(json!({"secret": "The Old Mill"}));
    assert!(tablet.sigterm().success());

    // Without the secret the store does not open, and nothing reaches the database.
    let error = failed(&store_copy(&tablet_dir, None, &["--to", &conn]));
    assert!(error.contains("is encrypted"), "{error}");
    let mut with_secret = vec!["--to", conn.as_str()];
    with_secret.extend(sealed);
    succeeded(&store_copy(&tablet_dir, None, &with_secret));
    let in_database = pg_entries(&pg, "sealed");
    assert!(
        in_database
            .values()
            .any(|v| v.windows(12).any(|w| w == b"The Old Mill")),
        "the database holds the plain values"
    );

    // Back into a new data directory: created encrypted with the same secret.
    let back_dir = dir.path().join("back");
    let mut with_secret = vec!["--from", conn.as_str()];
    with_secret.extend(sealed);
    succeeded(&store_copy(&back_dir, None, &with_secret));
    let unsealed = SledStorage::open(back_dir.join("store"), SledConfig::default());
    assert!(
        unsealed
            .as_ref()
            .is_err_and(|e| e.to_string().contains("is encrypted")),
        "{unsealed:?}"
    );
    drop(unsealed);
    let back = Daemon::start("back", &back_dir, "/ip4/127.0.0.1/tcp/0", &sealed);
    assert_eq!(back.status()["store_encryption"], "key");
    assert_eq!(
        content(&back, &id).expect("the document")["secret"],
        "The Old Mill"
    );
}
