//! The client subcommands: check the input, call the daemon, print the answer as text or,
//! with `--json`, as the API's JSON.

mod doc;
mod team;
mod transfer;
mod watch;

use std::io::{self, Write};
use std::process::ExitCode;

use super::args::{Command, ConfigCommand, GlobalArgs, PeersCommand, RunArgs, StoreCommand};
use super::error::CliError;
use super::output::{Table, age, now_ms, printable, write_json};
use crate::client::{Client, Discovery, Peer, Status};

/// Runs one client subcommand against a running daemon. Errors are printed on stderr as
/// `peerdoc: <message>` with exit code 1; a closed stdout (`| head`) is not an error.
pub(super) fn exec(global: &GlobalArgs, command: &Command) -> ExitCode {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = run(global, command, &mut out).and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        Err(CliError::Stdout(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            drop(out);
            eprintln!("peerdoc: {}", printable(&error.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn run(global: &GlobalArgs, command: &Command, out: &mut impl Write) -> Result<ExitCode, CliError> {
    match command {
        // `cli::main` hands `run` to the daemon itself; this arm only keeps the match whole.
        Command::Run(run) => return Ok(crate::daemon::main(global, run)),
        Command::Status => status(global, out)?,
        Command::Peers { action: None } => peers(global, out)?,
        Command::Peers {
            action: Some(PeersCommand::Add { addr }),
        } => {
            let answer = connect(global)?.add_peer(addr)?;
            if global.json {
                write_json(out, &answer)?;
            } else {
                let kept = if answer.remembered {
                    " (remembered across restarts)"
                } else {
                    " (until this daemon stops: no team to remember it in)"
                };
                let shown = if answer.addr.is_empty() {
                    addr
                } else {
                    &answer.addr
                };
                writeln!(out, "dialing {shown}{kept}")?;
            }
        }
        Command::Peers {
            action: Some(PeersCommand::Remove { addr }),
        } => {
            connect(global)?.remove_peer(addr)?;
            if !global.json {
                writeln!(out, "no longer dialing {addr}")?;
            }
        }
        Command::Doc(doc) => doc::run(global, doc, out)?,
        Command::Team(team) => team::run(global, team, out)?,
        Command::Id => id(global, out)?,
        Command::Open { print } => open_dashboard(global, *print, out)?,
        Command::Config(ConfigCommand::Show(run)) => config_show(global, run, out)?,
        Command::Store(StoreCommand::NewKey { path }) => {
            let written = crate::config::write_new_key(path).map_err(CliError::Local)?;
            writeln!(
                out,
                "wrote a new store key to {}; set storage.encryption = \"key_file\" and \
                 storage.key_file = {:?}. Keep a copy somewhere safe: without it the store \
                 cannot be opened.",
                written.display(),
                written.display().to_string()
            )?;
        }
        Command::Store(StoreCommand::Encrypt(run)) => {
            let done = crate::daemon::encrypt_store(global, run)
                .map_err(|e| CliError::Local(e.to_string()))?;
            writeln!(out, "{done}")?;
        }
        Command::Store(StoreCommand::Copy(args)) => {
            // On a terminal, a line that says how far it got; elsewhere nothing.
            let spinner = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            let done = crate::daemon::copy_store(global, args, &mut |doing| {
                spinner.set_message(doing.to_owned());
                spinner.tick();
            });
            spinner.finish_and_clear();
            let done = done.map_err(|e| CliError::Local(e.to_string()))?;
            writeln!(out, "{done}")?;
        }
        Command::Completions { shell } => {
            let mut command = <super::args::Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "peerdoc", out);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Connects to the daemon the flags and data directory point at (sends nothing yet).
/// A daemon that is starting is waited for, with a message on stderr.
fn connect(global: &GlobalArgs) -> Result<Client, CliError> {
    let discovery = Discovery {
        data_dir: global.data_dir.clone(),
        api_url: global.api_url.clone(),
        token: global.token.clone(),
    };
    Ok(Client::discover_waiting(&discovery, |dir| {
        eprintln!(
            "peerdoc: waiting for the daemon of {} to start…",
            printable(&dir.display().to_string())
        );
    })?)
}

/// `peerdoc open`: a one-time sign-in link, opened in the default browser.
fn open_dashboard(global: &GlobalArgs, print: bool, out: &mut impl Write) -> Result<(), CliError> {
    let link = connect(global)?.dashboard_link()?;
    if print || global.json {
        if global.json {
            write_json(out, &serde_json::json!({ "url": link }))?;
        } else {
            writeln!(out, "{link}")?;
        }
        return Ok(());
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let started = std::process::Command::new(opener)
        .arg(&link)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if started {
        writeln!(out, "opened the dashboard in your browser")?;
    } else {
        writeln!(
            out,
            "open this link in a browser on this device (it works once, for 2 minutes):\n{link}"
        )?;
    }
    Ok(())
}

/// `peerdoc id`: the peer id and the addresses to give a teammate.
fn id(global: &GlobalArgs, out: &mut impl Write) -> Result<(), CliError> {
    let status = connect(global)?.status(false)?;
    let listening: Vec<peerdoc_node::Multiaddr> = status
        .listen_addrs
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let dialable = crate::daemon::dialable(&listening, &status.peer_id);
    if global.json {
        write_json(
            out,
            &serde_json::json!({"peer_id": status.peer_id, "addrs": dialable}),
        )?;
    } else {
        writeln!(out, "{}", status.peer_id)?;
        for addr in dialable {
            writeln!(out, "{addr}")?;
        }
    }
    Ok(())
}

/// `peerdoc config show [RUN FLAGS]`.
fn config_show(global: &GlobalArgs, run: &RunArgs, out: &mut impl Write) -> Result<(), CliError> {
    let resolved = crate::config::DaemonConfig::load(global, run)?;
    let mut shown = crate::config::show(&resolved.config, &resolved.origins);
    if !shown.iter().any(|k| k.key == "data_dir") {
        shown.insert(
            0,
            crate::config::ShownKey {
                key: "data_dir".into(),
                value: toml::Value::String(resolved.data_dir.display().to_string()).to_string(),
                origin: crate::config::Origin::Default,
            },
        );
    }
    if global.json {
        write_json(out, &shown)?;
        return Ok(());
    }
    match &resolved.file {
        Some(file) => writeln!(out, "# config file: {}", file.display())?,
        None => writeln!(out, "# config file: none")?,
    }
    let mut table = Table::headless(2);
    for key in shown {
        table.row(vec![
            format!("{} = {}", key.key, key.value),
            format!("# {}", key.origin),
        ]);
    }
    table.write(out, "")?;
    Ok(())
}

fn status(global: &GlobalArgs, out: &mut impl Write) -> Result<(), CliError> {
    let status = connect(global)?.status(true)?;
    if global.json {
        write_json(out, &status)?;
    } else {
        write_status(out, &status, now_ms())?;
    }
    Ok(())
}

fn write_status(out: &mut impl Write, status: &Status, now_ms: u64) -> io::Result<()> {
    let health = match status.health.as_str() {
        "offline" => "offline (no peer or cloud connected)",
        "degraded" => "degraded (a peer is unhealthy, or documents are waiting to sync)",
        other => other,
    };
    let connected = status.peers.iter().filter(|p| p.connected).count();
    let mut facts = Table::headless(2);
    let mut fact = |name: &str, value: String| facts.row(vec![name.to_owned(), value]);
    if let Some(team) = &status.team {
        fact("team", printable(&team.summary));
    }
    fact("peer id", status.peer_id.clone());
    fact("version", status.version.clone());
    if let Some(url) = &status.api_url {
        fact("api", url.clone());
    }
    fact("listening", status.listen_addrs.join(", "));
    fact("health", printable(health));
    for problem in &status.network {
        fact("network", printable(&problem.message));
    }
    fact(
        "documents",
        match status.system_documents {
            0 => format!(
                "{} ({} deleted, {} in memory)",
                status.documents, status.deleted, status.loaded
            ),
            own => format!(
                "{} ({} deleted, {} in memory), and {own} of peerdoc's own (team, titles)",
                status.documents.saturating_sub(own),
                status.deleted,
                status.loaded
            ),
        },
    );
    fact(
        "store",
        format!(
            "{}, {} writes in flight, {}",
            indicatif::HumanBytes(status.store_bytes),
            status.storage_in_flight,
            match status.store_encryption.as_deref() {
                Some("passphrase") => "encrypted (passphrase)",
                Some(_) => "encrypted (key file)",
                None => "not encrypted",
            }
        ),
    );
    if let Some(problem) = &status.store_problem {
        let what = if problem.state == "full" {
            "writes refused, the disk is full"
        } else {
            "writes failing"
        };
        fact("store", format!("{what}: {}", printable(&problem.message)));
    }
    if let Some(rollback) = &status.store_rollback {
        let when = if rollback.at_this_start {
            "at this start"
        } else {
            "at an earlier start"
        };
        fact(
            "store",
            format!(
                "{} ({when}); peers send the lost changes again: {}",
                printable(&rollback.message),
                printable(&rollback.documents.join(", "))
            ),
        );
    }
    fact(
        "peers",
        format!("{connected} connected, {} known", status.peers.len()),
    );
    for endpoint in &status.cloud {
        let state = match (&endpoint.last_error, endpoint.connected) {
            (_, true) => "connected".to_owned(),
            (Some(error), false) => format!("not connected: {error}"),
            (None, false) => "not connected yet".to_owned(),
        };
        fact(
            "cloud",
            printable(&format!("{}  {state}", endpoint.endpoint)),
        );
    }
    if let Some(receipts) = &status.receipts {
        fact("wipe?", printable(&receipts.verdict));
    }
    if let Some(conflicts) = &status.conflicts {
        fact("conflicts", conflicts_line(conflicts));
    }
    facts.write(out, "")?;
    if let Some(conflicts) = status.conflicts.as_ref().filter(|c| c.documents > 0) {
        for doc in &conflicts.docs {
            let title = doc.title.as_deref().unwrap_or("-");
            writeln!(
                out,
                "  {}  {}  {}",
                doc.id,
                printable(title),
                printable(&doc.paths.join(", "))
            )?;
        }
        writeln!(
            out,
            "  see and settle one with: peerdoc doc conflicts ID, then peerdoc doc resolve ID PATH --keep HASH"
        )?;
    }
    if let Some(receipts) = status.receipts.as_ref().filter(|r| !r.safe_to_wipe) {
        let listed = receipts.not_confirmed_docs.len() as u64;
        let open = receipts.unconfirmed + receipts.reported;
        let more = if open > listed {
            format!(" (and {} more)", open - listed)
        } else {
            String::new()
        };
        writeln!(
            out,
            "not confirmed by the cloud{more}: {}",
            receipts.not_confirmed_docs.join(", ")
        )?;
    }

    if !status.peers.is_empty() {
        writeln!(out)?;
        peer_table(&status.peers, now_ms).write(out, "")?;
    }

    let Some(docs) = &status.docs else {
        return Ok(());
    };
    let mut behind = Table::new(&["DOCUMENT", "TITLE", "PEER", "MISSING"]);
    let mut pairs = 0;
    for doc in docs {
        for peer in &doc.peers {
            pairs += 1;
            if !peer.in_sync {
                let mut missing = match (&peer.their_heads, peer.missing) {
                    _ if !peer.connected && peer.their_heads.is_none() => {
                        "all of it (it left without it)".to_owned()
                    }
                    _ if !peer.connected => "changes made since it left".to_owned(),
                    (None, 0) => "not compared yet".to_owned(),
                    (_, 1) => "1 head".to_owned(),
                    (_, n) => format!("{n} heads"),
                };
                if peer.pending {
                    missing.push_str(", syncing");
                }
                let listed = status.peers.iter().find(|p| p.peer_id == peer.peer_id);
                // A departed device is listed with the documents a person acts on
                // (its `missing_docs`), not peerdoc's own.
                if !peer.connected && listed.is_some_and(|p| !p.missing_docs.contains(&doc.id)) {
                    continue;
                }
                // The device's team name where it has one.
                let who = listed
                    .and_then(|p| p.name.as_deref())
                    .map_or_else(|| peer.peer_id.clone(), printable);
                behind.row(vec![
                    doc.id.clone(),
                    doc.title.clone().unwrap_or_else(|| "-".to_owned()),
                    who,
                    missing,
                ]);
            }
        }
    }
    writeln!(out)?;
    if behind.is_empty() {
        if pairs == 0 {
            writeln!(out, "sync: no peer to compare documents with")?;
        } else {
            writeln!(
                out,
                "sync: every peer has every document, as far as this device knows"
            )?;
        }
    } else {
        writeln!(out, "not yet on every peer:")?;
        behind.write(out, "")?;
    }
    Ok(())
}

/// The `conflicts` line of `peerdoc status`.
fn conflicts_line(conflicts: &crate::client::ConflictSummary) -> String {
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let mut line = if conflicts.documents == 0 {
        "none open".to_owned()
    } else {
        format!(
            "{} open in {}",
            plural(conflicts.fields, "field", "fields"),
            plural(conflicts.documents, "document", "documents")
        )
    };
    if conflicts.unchecked > 0 {
        line.push_str(&format!(
            " ({} more documents with past conflicts not checked)",
            conflicts.unchecked
        ));
    }
    line
}

fn peers(global: &GlobalArgs, out: &mut impl Write) -> Result<(), CliError> {
    let peers = connect(global)?.peers()?;
    if global.json {
        write_json(out, &peers)?;
    } else if peers.is_empty() {
        writeln!(out, "no peers known")?;
    } else {
        peer_table(&peers, now_ms()).write(out, "")?;
    }
    Ok(())
}

fn peer_table(peers: &[Peer], now_ms: u64) -> Table {
    let mut table = Table::new(&[
        "PEER ID",
        "NAME",
        "HEALTH",
        "CONNECTION",
        "RTT",
        "RECEIVED",
        "SENT",
        "SYNCING",
        "LAST SEEN",
        "ADDRESS",
    ]);
    for peer in peers {
        let connection = if peer.departed && !peer.connected {
            match peer.missing_docs.len() {
                0 => "left, had everything".to_owned(),
                1 => "left, misses 1 document".to_owned(),
                n => format!("left, misses {n} documents"),
            }
        } else if !peer.connected {
            match &peer.not_connected {
                Some(why) => format!("none: {}", why.split(": ").next().unwrap_or(why)),
                None => "none".to_owned(),
            }
        } else {
            let transport = peer.transport.as_deref().unwrap_or("connected");
            match (peer.sync_stream, peer.peerdoc) {
                (true, _) => format!("{transport}, syncing"),
                (false, true) => format!("{transport}, no sync stream"),
                (false, false) => format!("{transport}, not peerdoc"),
            }
        };
        let address = match peer.addrs.as_slice() {
            [] => "-".to_owned(),
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} (+{})", rest.len()),
        };
        let name = match (&peer.name, &peer.role) {
            (Some(name), Some(role)) => format!("{} ({role})", printable(name)),
            (Some(name), None) => format!("{} (removed)", printable(name)),
            _ => "-".to_owned(),
        };
        table.row(vec![
            peer.peer_id.clone(),
            name,
            peer.health.clone(),
            connection,
            peer.rtt_ms
                .map_or_else(|| "-".to_owned(), |rtt| format!("{rtt:.1} ms")),
            indicatif::HumanBytes(peer.bytes_in).to_string(),
            indicatif::HumanBytes(peer.bytes_out).to_string(),
            format!("{} (+{} queued)", peer.active_syncs, peer.queued_syncs),
            peer.last_seen_ms
                .map_or_else(|| "-".to_owned(), |ms| age(now_ms, ms)),
            address,
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{DocPeer, DocStatus};

    fn text(status: &Status) -> String {
        let mut out = Vec::new();
        write_status(&mut out, status, 100_000).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn status_lists_what_each_peer_is_missing() {
        let status = Status {
            peer_id: "12D3KooWA".into(),
            version: "0.1.0".into(),
            health: "healthy".into(),
            documents: 2,
            peers: vec![
                Peer {
                    peer_id: "12D3KooWB".into(),
                    connected: true,
                    sync_stream: true,
                    peerdoc: true,
                    transport: Some("tcp".into()),
                    health: "healthy".into(),
                    last_seen_ms: Some(99_000),
                    ..Peer::default()
                },
                Peer {
                    peer_id: "12D3KooWC".into(),
                    name: Some("Photographer".into()),
                    role: Some("editor".into()),
                    departed: true,
                    health: "offline".into(),
                    last_seen_ms: Some(40_000),
                    missing_docs: vec!["doc2".into()],
                    ..Peer::default()
                },
            ],
            docs: Some(vec![
                DocStatus {
                    id: "doc1".into(),
                    title: Some("Run of show".into()),
                    peers: vec![DocPeer {
                        peer_id: "12D3KooWB".into(),
                        in_sync: false,
                        missing: 2,
                        their_heads: Some(vec![]),
                        pending: true,
                        connected: true,
                    }],
                    ..DocStatus::default()
                },
                DocStatus {
                    id: "doc2".into(),
                    peers: vec![
                        DocPeer {
                            peer_id: "12D3KooWB".into(),
                            in_sync: true,
                            connected: true,
                            ..DocPeer::default()
                        },
                        DocPeer {
                            peer_id: "12D3KooWC".into(),
                            missing: 1,
                            their_heads: Some(vec!["aa".into()]),
                            ..DocPeer::default()
                        },
                    ],
                    ..DocStatus::default()
                },
            ]),
            ..Status::default()
        };
        let text = text(&status);
        assert!(text.starts_with("peer id    12D3KooWA\n"), "{text}");
        assert!(
            text.contains("12D3KooWB  -                      healthy  tcp, syncing"),
            "{text}"
        );
        assert!(text.contains("1s ago"), "{text}");
        assert!(text.contains("not yet on every peer:\nDOCUMENT  TITLE        PEER          MISSING\ndoc1      Run of show  12D3KooWB     2 heads, syncing\n"), "{text}");
        // A device that left is listed with what changed since.
        assert!(
            text.contains("Photographer (editor)  offline  left, misses 1 document"),
            "{text}"
        );
        assert!(text.contains("1m ago"), "{text}");
        assert!(
            text.contains("doc2      -            Photographer  changes made since it left\n"),
            "{text}"
        );
    }

    #[test]
    fn status_without_peers_says_so() {
        let status = Status {
            health: "offline".into(),
            docs: Some(vec![]),
            network: vec![crate::client::NetworkProblem {
                code: "nothing_found".into(),
                message: "no device found: this Wi-Fi may block multicast (mDNS)".into(),
            }],
            ..Status::default()
        };
        let text = text(&status);
        assert!(!text.contains("wipe?"), "{text}");
        assert!(
            text.contains("health     offline (no peer or cloud connected)\nnetwork    no device found: this Wi-Fi may block multicast (mDNS)\n"),
            "{text}"
        );
        assert!(
            text.contains("sync: no peer to compare documents with"),
            "{text}"
        );
    }

    #[test]
    fn status_answers_whether_the_device_can_be_wiped() {
        let status = Status {
            receipts: Some(crate::client::Receipts {
                safe_to_wipe: false,
                verdict:
                    "NOT safe to wipe: 2 documents of 3 not confirmed by any cloud as held here"
                        .into(),
                documents: 3,
                confirmed: 1,
                unconfirmed: 2,
                not_confirmed_docs: vec!["docA".into()],
                ..Default::default()
            }),
            cloud: vec![crate::client::CloudEndpoint {
                endpoint: "wss://cloud.example/".into(),
                last_error: Some("connection refused".into()),
                ..Default::default()
            }],
            ..Status::default()
        };
        let text = text(&status);
        assert!(
            text.contains("wipe?      NOT safe to wipe: 2 documents of 3 not confirmed"),
            "{text}"
        );
        assert!(
            text.contains("cloud      wss://cloud.example/  not connected: connection refused"),
            "{text}"
        );
        assert!(
            text.contains("not confirmed by the cloud (and 1 more): docA"),
            "{text}"
        );
    }

    #[test]
    fn status_lists_documents_with_open_conflicts() {
        let status = Status {
            conflicts: Some(crate::client::ConflictSummary {
                documents: 1,
                fields: 2,
                docs: vec![crate::client::ConflictDoc {
                    id: "docA".into(),
                    title: Some("Seating".into()),
                    open: 2,
                    paths: vec!["/table1".into(), "/table2".into()],
                }],
                unchecked: 0,
            }),
            ..Status::default()
        };
        let shown = text(&status);
        assert!(
            shown.contains("conflicts  2 fields open in 1 document\n"),
            "{shown}"
        );
        assert!(
            shown.contains("  docA  Seating  /table1, /table2\n"),
            "{shown}"
        );
        let calm = Status {
            conflicts: Some(crate::client::ConflictSummary::default()),
            ..Status::default()
        };
        assert!(text(&calm).contains("conflicts  none open"));
    }
}
