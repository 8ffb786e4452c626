//! `peerdoc run` child processes for the integration tests: a clean environment (no
//! inherited `PEERDOC_*`, no user config), mDNS off, loopback only, each with its own
//! data directory and log, driven over HTTP.

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::Client;

pub const HANG_GUARD: Duration = Duration::from_secs(60);
pub const POLL: Duration = Duration::from_millis(100);

/// A `peerdoc run` child process.
pub struct Daemon {
    pub name: &'static str,
    pub child: Child,
    log: PathBuf,
    out: PathBuf,
    pub client: Client,
}

/// A `peerdoc run` command with a clean environment: no inherited PEERDOC_* settings,
/// no user config file, mDNS off, loopback only.
pub fn command(data_dir: &Path, home: &Path) -> Command {
    let mut cmd = clean_command(home);
    cmd.env("RUST_BACKTRACE", "0")
        // These tests predate teams and sync without one (`start_in_team_mode` does not).
        .env("PEERDOC_TEAM_OPEN", "true")
        .env("PEERDOC_TEAM_ENROL_LISTEN", "127.0.0.1:0")
        .arg("run")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--no-mdns");
    cmd
}

/// The `peerdoc` binary with a clean environment: no inherited PEERDOC_* settings, and
/// `home` as its home, so no user config file is read.
pub fn clean_command(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerdoc"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PEERDOC_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"));
    cmd
}

/// A port free now, below the kernel's ephemeral range. Tests start a daemon on a
/// fixed address while others redial it; a port in the ephemeral range can meanwhile be
/// handed to one of their outgoing sockets (a dial to 127.0.0.1:P from port P connects
/// to itself), and the listener then fails with "address in use".
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(32_768);
    let span = low.saturating_sub(10_000).max(1);
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
    (0..span)
        .map(|i| 10_000 + (seed.wrapping_add(i.wrapping_mul(7_919)) % span))
        .filter_map(|port| u16::try_from(port).ok())
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port below the ephemeral range")
}

impl Daemon {
    /// Starts a daemon on `data_dir` listening on `listen` (a multiaddr; `""` for the
    /// daemon's default addresses) with `extra` arguments, and waits until its API
    /// answers.
    pub fn start(name: &'static str, data_dir: &Path, listen: &str, extra: &[&str]) -> Self {
        Self::spawn(name, data_dir, listen, extra, true)
    }

    /// Like [`Daemon::start`], but as a user runs it: closed until it creates or joins a
    /// team (no `--open`), accepting invite codes on 127.0.0.1.
    pub fn start_in_team_mode(
        name: &'static str,
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
    ) -> Self {
        Self::spawn(name, data_dir, listen, extra, false)
    }

    fn spawn(
        name: &'static str,
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        open: bool,
    ) -> Self {
        let home = data_dir.with_extension("home");
        std::fs::create_dir_all(&home).expect("home");
        let addr_file = data_dir.join("api.addr");
        // A killed daemon leaves its address file behind; wait for the new one.
        let _ = std::fs::remove_file(&addr_file);
        let log = data_dir.with_extension(format!("{}.log", std::process::id()));
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let out = data_dir.with_extension(format!("{}.out", std::process::id()));
        let out_file = File::create(&out).expect("stdout file");
        let mut cmd = command(data_dir, &home);
        // A shared key file is a mode of its own (and the cloud profile never runs open).
        if !open || extra.contains(&"--team-key-file") {
            cmd.env_remove("PEERDOC_TEAM_OPEN");
        }
        cmd.args(["--api-listen", "127.0.0.1:0"]);
        if !listen.is_empty() {
            cmd.arg("--listen").arg(listen);
        }
        let child = cmd
            .args(extra)
            .stdout(Stdio::from(out_file))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn peerdoc");
        let mut daemon = Self {
            name,
            child,
            log,
            out,
            client: Client::new("http://127.0.0.1:1", None),
        };
        let started = Instant::now();
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && text.ends_with('\n')
            {
                break text.trim().to_owned();
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("{name} exited with {status}:\n{}", daemon.log_text());
            }
            assert!(
                started.elapsed() < HANG_GUARD,
                "{name} never wrote api.addr"
            );
            std::thread::sleep(POLL);
        };
        let token = std::fs::read_to_string(data_dir.join("api.token")).expect("token");
        daemon.client = Client::new(&url, Some(token.trim()));
        assert_eq!(daemon.client.get("/health").ok(200)["status"], "ok");
        daemon
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What it printed on stdout (the "ready" line).
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn status(&self) -> Value {
        self.client.get("/v1/status?docs=false").ok(200)
    }

    /// `<listen addr>/p2p/<peer id>` from its status.
    pub fn dial_addr(&self) -> String {
        let status = self.status();
        format!(
            "{}/p2p/{}",
            status["listen_addrs"][0].as_str().expect("listen addr"),
            status["peer_id"].as_str().expect("peer id")
        )
    }

    pub fn sigterm(&mut self) -> ExitStatus {
        let killed = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(killed.success());
        self.wait()
    }

    pub fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if started.elapsed() > HANG_GUARD {
                let _ = self.child.kill();
                panic!("{} did not exit:\n{}", self.name, self.log_text());
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.log_text());
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` until it returns `Some`, panicking after the hang guard.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < HANG_GUARD,
            "timed out waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Runs `peerdoc run` expecting it to fail at startup: exit code 1, no panic, exactly
/// one `peerdoc: ` error line, which it returns.
pub fn run_expecting_failure(cmd: &mut Command) -> String {
    let output = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run peerdoc");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("peerdoc: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    errors[0].to_owned()
}

/// A document's content as `daemon` serves it, or `None` while it does not have it.
pub fn content(daemon: &Daemon, id: &str) -> Option<Value> {
    let answer = daemon.client.get(&format!("/v1/docs/{id}"));
    (answer.status == 200).then(|| answer.json()["content"].clone())
}
