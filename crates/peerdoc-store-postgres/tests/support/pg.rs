//! A throwaway PostgreSQL server for tests: `initdb` into a temporary directory, a
//! server listening only on a Unix socket in that directory (`listen_addresses = ''`:
//! no TCP at all), stopped (`pg_ctl stop -m immediate`, then a kill) when the handle
//! drops, panics included.
//!
//! PostgreSQL refuses to run as root, and tests often do: then every server command runs
//! as `nobody` through `runuser`, with the directory handed to that user.
//!
//! Without the binaries (looked for on `PATH` and in `/usr/lib/postgresql/*/bin`) a test
//! skips with a message, except under `CI=true`, where it fails: `.ci/setup` installs
//! them (`ensure_postgresql`).
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use peerdoc_store_postgres::PgConfig;

/// The user the server runs as when the tests run as root.
const UNPRIVILEGED: &str = "nobody";
/// The port only names the socket file (`.s.PGSQL.<port>`) in our own directory.
const PORT: u16 = 5432;
/// Superuser created by `initdb`; trust authentication on the socket.
pub const USER: &str = "peerdoc";

pub struct TestPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    run_as: Option<&'static str>,
    frozen: std::cell::Cell<bool>,
}

/// Starts a server, or returns `None` (after saying so) when PostgreSQL is not
/// installed and `CI` is not `true`.
pub fn start_or_skip(test: &str) -> Option<TestPostgres> {
    let Some(bin) = find_binaries() else {
        let why = "no PostgreSQL binaries (initdb, pg_ctl, postgres, psql) on PATH or in \
                   /usr/lib/postgresql/*/bin";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: {why}; CI must have them (bash .ci/setup installs them)");
        }
        eprintln!("skipping {test}: {why} (bash .ci/setup installs them)");
        return None;
    };
    Some(TestPostgres::start(bin))
}

fn find_binaries() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres", "psql"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    // A PATH entry may hold symlinks (Debian's /usr/local/bin setups): follow initdb
    // to the directory that has all of them.
    let from_path = std::env::var_os("PATH").into_iter().flat_map(|path| {
        std::env::split_paths(&path)
            .filter_map(|dir| std::fs::canonicalize(dir.join("initdb")).ok())
            .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
            .collect::<Vec<_>>()
    });
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .collect();
    // Newest major version first.
    versioned.sort_by_key(|dir| {
        let major = dir
            .parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok());
        std::cmp::Reverse(major)
    });
    from_path.chain(versioned).find(|dir| complete(dir))
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl TestPostgres {
    fn start(bin: PathBuf) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("peerdoc-pg-")
            .tempdir()
            .expect("temporary directory");
        let run_as = running_as_root().then_some(UNPRIVILEGED);
        if let Some(user) = run_as {
            checked(
                Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(dir.path()),
                "chown the test directory",
            );
        }
        let pg = Self {
            bin,
            dir,
            run_as,
            frozen: std::cell::Cell::new(false),
        };
        let data = pg.data_dir();
        let mut initdb = pg.server_command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            // Only process crashes are simulated: the page cache survives them.
            .arg("--no-sync");
        checked(&mut initdb, "initdb");
        pg.start_server();
        pg
    }

    /// A command for one of the server binaries, as the unprivileged user when root.
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// (Re)starts the server and waits until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c port={PORT} \
             -c fsync=on -c max_connections=60 -c shared_buffers=16MB",
            self.socket_dir().display()
        );
        let mut command = self.server_command("pg_ctl");
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        checked(&mut command, "pg_ctl start");
    }

    fn pg_ctl_stop(&self, mode: &str) -> Output {
        let mut command = self.server_command("pg_ctl");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60", "-m", mode, "stop"]);
        command.output().expect("run pg_ctl stop")
    }

    /// A clean stop (`-m fast`): sessions are terminated, a checkpoint is written.
    pub fn stop(&self) {
        let output = self.pg_ctl_stop("fast");
        assert!(output.status.success(), "pg_ctl stop: {output:?}");
    }

    /// A crash (`-m immediate`: every server process quits at once, no checkpoint;
    /// the next start replays the WAL).
    pub fn crash(&self) {
        let output = self.pg_ctl_stop("immediate");
        assert!(
            output.status.success(),
            "pg_ctl stop -m immediate: {output:?}"
        );
    }

    fn server_pids(&self) -> Vec<u32> {
        let Ok(pid_file) = std::fs::read_to_string(self.data_dir().join("postmaster.pid")) else {
            return Vec::new();
        };
        let Some(postmaster) = pid_file.lines().next().and_then(|l| l.trim().parse().ok()) else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
            let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                continue;
            };
            let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
            if ppid == Some(postmaster)
                && let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok())
            {
                pids.push(pid);
            }
        }
        pids
    }

    fn signal_all(&self, signal: &str) {
        let pids = self.server_pids();
        assert!(!pids.is_empty(), "no server process to signal");
        let mut command = Command::new("kill");
        command.arg(format!("-{signal}"));
        command.args(pids.iter().map(u32::to_string));
        checked(&mut command, "kill");
    }

    /// Stops every server process with SIGSTOP: the sockets stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal_all("STOP");
        self.frozen.set(true);
    }

    /// Undoes [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        self.signal_all("CONT");
        self.frozen.set(false);
    }

    /// A libpq connection string for `database`.
    pub fn connection_string(&self, database: &str) -> String {
        format!(
            "host={} port={PORT} user={USER} dbname={database}",
            self.socket_dir().display()
        )
    }

    /// The store's configuration for `database` and `schema`, with bounds short enough
    /// for tests.
    pub fn config(&self, database: &str, schema: &str) -> PgConfig {
        PgConfig::from_connection_string(&self.connection_string(database))
            .expect("connection string")
            .schema(schema)
            .connect_timeout(Duration::from_secs(3))
            .statement_timeout(Duration::from_secs(2))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(300))
    }

    /// Makes `schema`'s entries table refuse any row whose key holds "poison", as a full
    /// disk would (SQLSTATE 53100): a batch's statement fails after earlier ones ran.
    pub fn refuse_poisoned_keys(&self, database: &str, schema: &str) {
        self.sql(
            database,
            &format!(
                "CREATE FUNCTION {schema}.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     IF position('\\x706f69736f6e'::bytea IN NEW.key) > 0 THEN
                         RAISE EXCEPTION 'no room for poison' USING ERRCODE = 'disk_full';
                     END IF;
                     RETURN NEW;
                 END $$;
                 CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON {schema}.peerdoc_entries
                     FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_poison();"
            ),
        );
    }

    /// Runs SQL through `psql` on `database`; returns its unaligned output.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h"])
            .arg(self.socket_dir())
            .args([
                "-p",
                &PORT.to_string(),
                "-U",
                USER,
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Creates a database (owned by the superuser).
    pub fn create_database(&self, name: &str) {
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if self.frozen.get() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .args(self.server_pids().iter().map(u32::to_string))
                .status();
        }
        let postmaster = self.server_pids().first().copied();
        let stopped = self.pg_ctl_stop("immediate");
        if !stopped.status.success()
            && let Some(pid) = postmaster
        {
            // Still running (pg_ctl failed, the pid file is unreadable, …): kill it;
            // its children exit when they see the postmaster gone.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn checked(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
