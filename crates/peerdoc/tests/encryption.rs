//! Encryption at rest as a user meets it: a device whose store is encrypted keeps none of
//! its documents readable in its data directory, starts only with its passphrase (a clear
//! error otherwise), and an existing plain device is encrypted with `peerdoc store
//! encrypt`. Real `peerdoc run` daemons on 127.0.0.1, mDNS off.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use daemon::{Daemon, command, run_expecting_failure};
use serde_json::{Value, json};

const MARKER: &str = "Okafor-Hartley rehearsal dinner, gate code 4471";

/// Every file under `dir` holding `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}

/// A private file holding `text`, in a directory beside (not inside) the data directory.
fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let path = secrets.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn passphrase_args(file: &Path) -> Vec<String> {
    vec![
        "--set".into(),
        "storage.encryption=\"passphrase\"".into(),
        "--set".into(),
        format!("storage.passphrase_file={:?}", file.display().to_string()),
    ]
}

fn start(name: &'static str, dir: &Path, args: &[String]) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(name, dir, "/ip4/127.0.0.1/tcp/0", &args)
}

/// A document whose title and a field hold the marker, each in a change small enough
/// that automerge stores it uncompressed: a plain store shows it in its files (the other
/// test checks that), so finding nothing in an encrypted one means something.
fn create_marked(daemon: &Daemon) -> String {
    let id = daemon.client.create(json!({"guests": 80}));
    daemon
        .client
        .patch(
            &format!("/v1/docs/{id}"),
            &json!({"ops": [{"op": "set", "path": "/title", "value": MARKER}]}),
        )
        .ok(200);
    daemon
        .client
        .patch(&format!("/v1/docs/{id}/meta"), &json!({"title": MARKER}))
        .ok(200);
    id
}

fn content(daemon: &Daemon, id: &str) -> Value {
    daemon.client.get(&format!("/v1/docs/{id}")).ok(200)["content"].clone()
}

/// `peerdoc --data-dir DIR <args…>` with the tests' clean environment.
fn peerdoc(data_dir: &Path, args: &[String]) -> std::process::Output {
    daemon::clean_command(&data_dir.with_extension("home"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run peerdoc")
}

#[test]
fn an_encrypted_device_keeps_nothing_readable_and_starts_only_with_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tablet");
    let right = secret_file(dir.path(), "passphrase", "the old mill, 14 june\n");
    let mut tablet = start("tablet", &data, &passphrase_args(&right));
    assert_eq!(tablet.status()["store_encryption"], "passphrase");
    let id = create_marked(&tablet);
    assert!(tablet.sigterm().success());

    let readable = files_containing(&data, MARKER.as_bytes());
    assert!(readable.is_empty(), "plain text in {readable:?}");

    // A wrong passphrase, no passphrase, a passphrase file others can read, and one
    // inside the data directory: each a one-line error, nothing started.
    let home = data.with_extension("home");
    let wrong = secret_file(dir.path(), "wrong", "the old mill, 15 june\n");
    let line = run_expecting_failure(command(&data, &home).args(passphrase_args(&wrong)));
    assert!(line.contains("wrong passphrase"), "{line}");
    let line = run_expecting_failure(&mut command(&data, &home));
    assert!(line.contains("is encrypted"), "{line}");
    let line = run_expecting_failure(
        command(&data, &home)
            .args(["--set", "storage.encryption=\"passphrase\""])
            .stdin(Stdio::null()),
    );
    assert!(line.contains("PEERDOC_STORAGE_PASSPHRASE"), "{line}");
    let open = secret_file(dir.path(), "open", "the old mill, 14 june\n");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let line = run_expecting_failure(command(&data, &home).args(passphrase_args(&open)));
    assert!(line.contains("chmod 600"), "{line}");
    let inside = data.join("passphrase");
    std::fs::copy(&right, &inside).unwrap();
    let line = run_expecting_failure(command(&data, &home).args(passphrase_args(&inside)));
    assert!(line.contains("inside the data directory"), "{line}");
    std::fs::remove_file(&inside).unwrap();

    // From the environment, as a service manager would pass it.
    let line = run_expecting_failure(
        command(&data, &home)
            .args(["--set", "storage.encryption=\"passphrase\""])
            .env("PEERDOC_STORAGE_PASSPHRASE", "not it"),
    );
    assert!(line.contains("wrong passphrase"), "{line}");

    let tablet = start("tablet", &data, &passphrase_args(&right));
    let doc = content(&tablet, &id);
    assert_eq!(doc["title"], MARKER);
    assert_eq!(doc["guests"], 80);
    assert!(tablet.client.get("/v1/status").ok(200)["store_rollback"].is_null());
}

#[test]
fn store_encrypt_turns_a_plain_device_into_an_encrypted_one_without_losing_a_document() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("laptop");
    let mut laptop = start("laptop", &data, &[]);
    assert!(laptop.status()["store_encryption"].is_null());
    let ids: Vec<String> = (0..5).map(|_| create_marked(&laptop)).collect();

    let key = dir.path().join("secrets/store.key");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let made = peerdoc(
        &data,
        &["store".into(), "new-key".into(), key.display().to_string()],
    );
    assert!(made.status.success(), "{made:?}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = peerdoc(
        &data,
        &["store".into(), "new-key".into(), key.display().to_string()],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));

    let mut encrypt: Vec<String> = vec!["store".into(), "encrypt".into()];
    encrypt.extend([
        "--set".into(),
        "storage.encryption=\"key_file\"".into(),
        "--set".into(),
        format!("storage.key_file={:?}", key.display().to_string()),
    ]);
    // Not while the daemon has the directory.
    let busy = peerdoc(&data, &encrypt);
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("in use"),
        "{busy:?}"
    );
    assert!(laptop.sigterm().success());
    let readable = files_containing(&data, MARKER.as_bytes());
    assert!(
        readable.iter().any(|p| p.ends_with("store/db")),
        "a plain store shows the marker: {readable:?}"
    );

    let done = peerdoc(&data, &encrypt);
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{done:?}");
    assert!(
        said.contains("encrypted the store") && said.contains("with a key"),
        "{said}"
    );
    let readable = files_containing(&data, MARKER.as_bytes());
    assert!(readable.is_empty(), "plain text left in {readable:?}");
    let twice = peerdoc(&data, &encrypt);
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already encrypted"));

    let laptop = start("laptop", &data, &encrypt[2..]);
    assert_eq!(laptop.status()["store_encryption"], "key");
    for id in &ids {
        assert_eq!(content(&laptop, id)["title"], MARKER);
    }
}
