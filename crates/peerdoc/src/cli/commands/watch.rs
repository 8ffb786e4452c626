//! `doc watch`: print the daemon's events as they arrive.

use std::io::Write;

use super::super::args::GlobalArgs;
use super::super::error::CliError;
use super::super::input;
use super::super::output::{logged_values, printable};
use super::connect;
use crate::client::{Event, ServerEvent};

/// How much of a conflicting value an event line shows.
const VALUE_WIDTH: usize = 40;

/// Streams events until the daemon closes the stream (exit 0) or Ctrl-C (exit 0).
pub(super) fn run(
    global: &GlobalArgs,
    ids: &[String],
    out: &mut impl Write,
) -> Result<(), CliError> {
    let ids = ids
        .iter()
        .map(|id| input::document_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    exit_quietly_on_ctrl_c();
    let events = connect(global)?.events(&ids)?;
    for event in events {
        let event = event?;
        if global.json {
            serde_json::to_writer(&mut *out, &event).map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", event_line(&event))?;
        }
        // Each event is shown as it arrives, whatever stdout is.
        out.flush()?;
    }
    if !global.json {
        eprintln!("peerdoc: the daemon closed the event stream");
    }
    Ok(())
}

/// One line of text for an event: its name, padded, then what happened.
fn event_line(event: &ServerEvent) -> String {
    // The device's team name where the daemon knows it, else its peer id.
    let name = event
        .data
        .get("device")
        .or_else(|| event.data.get("name"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let origin = |origin: &str, peer: &Option<String>| match name.as_ref().or(peer.as_ref()) {
        Some(peer) => format!("{origin} from {peer}"),
        None => origin.to_owned(),
    };
    let what = match event.typed() {
        Event::Change {
            doc,
            origin: from,
            peer,
            paths,
            truncated,
            ..
        } => {
            let more = if truncated { " (and more)" } else { "" };
            format!("{doc}  {}  {}{more}", origin(&from, &peer), paths.join(" "))
        }
        Event::Created {
            doc,
            origin: from,
            peer,
        }
        | Event::Deleted {
            doc,
            origin: from,
            peer,
        } => {
            format!("{doc}  {}", origin(&from, &peer))
        }
        Event::Conflict { doc, record } => {
            let values = logged_values(&record, VALUE_WIDTH);
            format!("{doc}  {}  {}", record.path, values.join(" "))
        }
        Event::PeerConnected { peer_id } | Event::PeerDisconnected { peer_id } => match &name {
            Some(name) => format!("{name} ({peer_id})"),
            None => peer_id,
        },
        Event::Lagged { missed } => {
            format!("missed {missed} events; re-read the documents you follow")
        }
        Event::Other(other) => other.data.to_string(),
    };
    printable(format!("{:<17}  {what}", event.event).trim_end())
}

/// Ctrl-C ends `watch` with exit code 0 (it is how one stops watching, not a failure).
/// The handler is registered before this returns, so no Ctrl-C after it is missed; a
/// small runtime on its own thread then waits for the signal while the main thread stays
/// in its blocking read. If any of that fails, Ctrl-C still stops the process, with the
/// signal's status.
fn exit_quietly_on_ctrl_c() {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    #[cfg(unix)]
    let interrupted = {
        let _context = runtime.enter();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
            Ok(mut sigint) => async move { sigint.recv().await.is_some() },
            Err(_) => return,
        }
    };
    #[cfg(not(unix))]
    let interrupted = async { tokio::signal::ctrl_c().await.is_ok() };
    let spawned = std::thread::Builder::new()
        .name("ctrl-c".to_owned())
        .spawn(move || {
            if runtime.block_on(interrupted) {
                // Lines are written whole and flushed, so there is nothing to finish.
                std::process::exit(0);
            }
        });
    drop(spawned);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(event: &str, data: serde_json::Value) -> String {
        event_line(&ServerEvent {
            event: event.to_owned(),
            data,
        })
    }

    #[test]
    fn events_read_as_one_line_each() {
        assert_eq!(
            line(
                "change",
                json!({"doc": "D", "heads": ["h"], "origin": "remote", "peer": "P",
                       "paths": ["/a", "/b/0"], "patches": []})
            ),
            "change             D  remote from P  /a /b/0"
        );
        assert_eq!(
            line(
                "created",
                json!({"doc": "D", "origin": "local", "peer": null})
            ),
            "created            D  local"
        );
        assert_eq!(
            line("peer_disconnected", json!({"peer_id": "P"})),
            "peer_disconnected  P"
        );
        assert_eq!(
            line(
                "conflict",
                json!({"doc": "D", "record": {"seq": 1, "path": "/x", "detected_ms": 1,
                       "values": [{"value": 1, "actor": "a", "change": null, "time": 0, "winner": true},
                                  {"value": 2, "actor": "b", "change": null, "time": 0, "winner": false}]}})
            ),
            "conflict           D  /x  *1 2"
        );
        assert_eq!(
            line("lagged", json!({"missed": 3})),
            "lagged             missed 3 events; re-read the documents you follow"
        );
        assert_eq!(
            line("new_thing", json!({"x": "\u{1b}"})),
            "new_thing          {\"x\":\"\\u001b\"}"
        );
    }
}
