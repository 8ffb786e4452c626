//! The README's five-minute tour, run as written in bash: two daemons on loopback (mDNS
//! off, the ports the README names), a team, an invite code, a document synced and
//! edited on both. Only the first two lines change: the test does not build a release
//! binary, and `peerdoc` is this build's binary. `set -e` makes any failing command
//! fail the test. Everything the script starts runs in its own process group, killed at
//! the end whatever happened.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HANG_GUARD: Duration = Duration::from_secs(120);

/// The first ```sh block after the tour's heading.
fn tour() -> String {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## A five-minute tour")
        .nth(1)
        .expect("the README has a tour");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the tour has a sh block");
    block.to_owned()
}

#[test]
fn the_readme_tour_works_as_written() {
    let script = tour();
    let mut lines = script.lines();
    assert_eq!(lines.next(), Some("cargo build --release -p peerdoc"));
    assert_eq!(
        lines.next(),
        Some("alias peerdoc=$PWD/target/release/peerdoc")
    );
    let rest: Vec<&str> = lines.collect();
    let bin = env!("CARGO_BIN_EXE_peerdoc");
    let script = format!(
        "set -e\nshopt -s expand_aliases\nalias peerdoc={bin}\n{}\n",
        rest.join("\n")
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut cmd = Command::new("bash");
    for (key, _) in std::env::vars() {
        if key.starts_with("PEERDOC_") {
            cmd.env_remove(key);
        }
    }
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    let mut child = cmd
        .arg("-c")
        .arg(&script)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("TMPDIR", dir.path())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout"))
        .stderr(std::fs::File::create(&err).expect("stderr"))
        .spawn()
        .expect("bash");
    let group = child.id();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > HANG_GUARD {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The daemons got SIGTERM from the script; give them a moment, then make sure.
    wait_for_group(group, Duration::from_secs(10));
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();

    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let logs = daemon_logs(dir.path());
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}\n{logs}");
    let status = status.unwrap_or_else(|| panic!("the tour hung\n{context}"));
    assert!(status.success(), "the tour failed ({status})\n{context}");
    for expected in [
        "peerdoc ready: API http://127.0.0.1:7421  address /ip4/127.0.0.1/tcp/4101/p2p/",
        "peerdoc ready: API http://127.0.0.1:7422  address /ip4/127.0.0.1/tcp/4102/p2p/",
        "created team \"Hill Barn crew\"",
        "joined team \"Hill Barn crew\" as \"Sam's tablet\" (editor).",
        "connected to Planner laptop; syncing now.",
        "\"21:15\"",
        "Run of show",
        "Sam's tablet",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in\n{context}");
    }
    let failed = stderr
        .lines()
        .any(|l| l.starts_with("peerdoc:") && !l.contains("waiting for the daemon"));
    assert!(!failed, "a command failed:\n{context}");
}

/// Waits until no process of `group` is left (or `limit` passes).
fn wait_for_group(group: u32, limit: Duration) {
    let started = Instant::now();
    while started.elapsed() < limit {
        let alive = Command::new("kill")
            .args(["-0", "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemons' logs (`a.log`, `b.log` in the tour's temporary directory).
fn daemon_logs(tmp: &Path) -> String {
    let mut logs = String::new();
    for entry in walk(tmp) {
        if entry.extension().is_some_and(|e| e == "log") {
            logs.push_str(&format!(
                "----- {} -----\n{}\n",
                entry.display(),
                std::fs::read_to_string(&entry).unwrap_or_default()
            ));
        }
    }
    logs
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
