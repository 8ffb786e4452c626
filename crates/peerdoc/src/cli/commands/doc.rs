//! `peerdoc doc …`: documents.

use std::io::Write;

use peerdoc_core::model::EditOp;
use serde_json::json;

use super::super::args::{DocCommand, GlobalArgs};
use super::super::error::CliError;
use super::super::input;
use super::super::output::{
    Table, age, change_time, logged_values, now_ms, short_json, utc, write_json,
};
use super::{connect, transfer, watch};
use crate::client::{ConflictValue, Conflicts, DocSummary, HistoryEntry, MetaUpdate, NewDocument};

/// How much of a conflicting value a text table shows.
const VALUE_WIDTH: usize = 60;

pub(super) fn run(
    global: &GlobalArgs,
    command: &DocCommand,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match command {
        DocCommand::New {
            content,
            title,
            priority,
        } => new(global, content.as_deref(), title.clone(), *priority, out),
        DocCommand::List { deleted, system } => list(global, *deleted, *system, out),
        DocCommand::Get { id, path, heads } => get(global, id, path.as_deref(), heads, out),
        DocCommand::Set {
            id,
            path,
            value,
            message,
        } => set(global, id, path, value, message.as_deref(), out),
        DocCommand::Delete { id } => delete(global, id, out),
        DocCommand::Meta {
            id,
            title,
            priority,
        } => meta(global, id, title.clone(), *priority, out),
        DocCommand::Fetch { id } => fetch(global, id, out),
        DocCommand::Import {
            file,
            title,
            priority,
        } => transfer::import(global, file, title.as_deref(), *priority, out),
        DocCommand::Export { id, output } => transfer::export(global, id, output.as_deref(), out),
        DocCommand::History { id } => history(global, id, out),
        DocCommand::Conflicts { id } => conflicts(global, id, out),
        DocCommand::Resolve {
            id,
            path,
            keep,
            value,
        } => resolve(global, id, path, keep.as_deref(), value.as_deref(), out),
        DocCommand::Watch { ids } => watch::run(global, ids, out),
    }
}

fn new(
    global: &GlobalArgs,
    content: Option<&str>,
    title: Option<String>,
    priority: Option<i32>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let content = match content {
        Some(argument) => input::content(&input::text_argument(argument)?)?,
        None => json!({}),
    };
    let doc = NewDocument {
        content,
        title,
        priority,
    };
    let created = connect(global)?.create_doc(&doc)?;
    if global.json {
        write_json(out, &created)?;
    } else {
        // The bare id, so that `id=$(peerdoc doc new)` works.
        writeln!(out, "{}", created.id)?;
    }
    Ok(())
}

fn list(
    global: &GlobalArgs,
    deleted: bool,
    system: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let docs = connect(global)?.list_docs_with(deleted, system)?;
    if global.json {
        write_json(out, &docs)?;
    } else if docs.is_empty() {
        writeln!(out, "no documents")?;
    } else {
        doc_table(&docs, deleted, now_ms()).write(out, "")?;
    }
    Ok(())
}

/// `peerdoc doc meta ID [--title T] [--priority P]`: without flags, shows them.
fn meta(
    global: &GlobalArgs,
    id: &str,
    title: Option<String>,
    priority: Option<i32>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let id = input::document_id(id)?;
    let client = connect(global)?;
    let doc = if title.is_none() && priority.is_none() {
        client
            .list_docs_with(true, true)?
            .into_iter()
            .find(|d| d.id == id.to_string())
            .ok_or_else(|| CliError::NoSuchDocument { id: id.to_string() })?
    } else {
        // An empty title clears it.
        let title = title.map(|t| Some(t).filter(|t| !t.is_empty()));
        client.set_meta(&id, &MetaUpdate { title, priority })?
    };
    if global.json {
        write_json(out, &doc)?;
    } else {
        let mut facts = Table::headless(2);
        facts.row(vec!["id".into(), doc.id.clone()]);
        facts.row(vec![
            "title".into(),
            doc.title.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
        facts.row(vec!["priority".into(), doc.priority.to_string()]);
        facts.write(out, "")?;
    }
    Ok(())
}

fn doc_table(docs: &[DocSummary], with_deleted: bool, now_ms: u64) -> Table {
    let mut header = vec!["ID", "TITLE", "PRIORITY", "SIZE", "CHANGED"];
    if with_deleted {
        header.push("DELETED");
    }
    let mut table = Table::new(&header);
    for doc in docs {
        let mut row = vec![
            doc.id.clone(),
            doc.title.clone().unwrap_or_else(|| "-".to_owned()),
            doc.priority.to_string(),
            indicatif::HumanBytes(doc.size).to_string(),
            age(now_ms, doc.last_change_ms),
        ];
        if with_deleted {
            row.push(if doc.deleted { "yes" } else { "no" }.to_owned());
        }
        table.row(row);
    }
    table
}

fn get(
    global: &GlobalArgs,
    id: &str,
    path: Option<&str>,
    heads: &[String],
    out: &mut impl Write,
) -> Result<(), CliError> {
    let id = input::document_id(id)?;
    let path = path.map(input::pointer).transpose()?;
    let doc = connect(global)?.get_doc(&id, heads)?;
    match path {
        // With a path, both forms print the value there: it is JSON already.
        Some(path) => {
            let value = doc
                .content
                .pointer(path)
                .ok_or_else(|| CliError::NoSuchPath {
                    id: id.to_string(),
                    path: path.to_owned(),
                })?;
            write_json(out, value)?;
        }
        None if global.json => write_json(out, &doc)?,
        None => write_json(out, &doc.content)?,
    }
    Ok(())
}

fn set(
    global: &GlobalArgs,
    id: &str,
    path: &str,
    value: &str,
    message: Option<&str>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let id = input::document_id(id)?;
    let path = input::pointer(path)?;
    let value = input::value(&input::text_argument(value)?)?;
    let op = EditOp::Set {
        path: path.to_owned(),
        value,
    };
    let heads = connect(global)?.edit_doc(&id, &[op], message)?;
    if global.json {
        write_json(out, &heads)?;
    } else {
        let place = if path.is_empty() {
            "the whole content"
        } else {
            path
        };
        writeln!(out, "set {place} in {id} (heads {})", heads.heads.join(","))?;
    }
    Ok(())
}

fn delete(global: &GlobalArgs, id: &str, out: &mut impl Write) -> Result<(), CliError> {
    let id = input::document_id(id)?;
    connect(global)?.delete_doc(&id)?;
    if global.json {
        // The API answers 204 with no body; say what happened in the same shape as ids.
        write_json(out, &json!({"id": id.to_string(), "deleted": true}))?;
    } else {
        writeln!(out, "deleted {id}")?;
    }
    Ok(())
}

fn fetch(global: &GlobalArgs, id: &str, out: &mut impl Write) -> Result<(), CliError> {
    let id = input::document_id(id)?;
    let fetched = connect(global)?.fetch_doc(&id)?;
    if global.json {
        write_json(out, &fetched)?;
    } else {
        writeln!(out, "{}", fetched.id)?;
    }
    Ok(())
}

fn history(global: &GlobalArgs, id: &str, out: &mut impl Write) -> Result<(), CliError> {
    let id = input::document_id(id)?;
    let history = connect(global)?.history(&id)?;
    if global.json {
        write_json(out, &history)?;
    } else {
        history_table(&history).write(out, "")?;
    }
    Ok(())
}

/// A change's author: the device's name when the team knows it, else the actor's start.
fn author(device: Option<&str>, actor: &str) -> String {
    match device {
        Some(name) => super::super::output::printable(name),
        None => actor.chars().take(8).collect(),
    }
}

fn history_table(history: &[HistoryEntry]) -> Table {
    let mut table = Table::new(&["HASH", "AUTHOR", "SEQ", "TIME (UTC)", "MESSAGE"]);
    for change in history {
        table.row(vec![
            change.hash.clone(),
            author(change.device.as_deref(), &change.actor),
            change.seq.to_string(),
            change_time(change.time_ms),
            change.message.clone().unwrap_or_default(),
        ]);
    }
    table
}

fn conflicts(global: &GlobalArgs, id: &str, out: &mut impl Write) -> Result<(), CliError> {
    let id = input::document_id(id)?;
    let conflicts = connect(global)?.conflicts(&id)?;
    if global.json {
        write_json(out, &conflicts)?;
    } else {
        write_conflicts(out, &conflicts)?;
    }
    Ok(())
}

fn write_conflicts(out: &mut impl Write, conflicts: &Conflicts) -> std::io::Result<()> {
    if conflicts.current.is_empty() {
        writeln!(out, "no conflicts now")?;
    } else {
        writeln!(out, "conflicts now:")?;
        for conflict in &conflicts.current {
            writeln!(out, "{}", super::super::output::printable(&conflict.path))?;
            value_table(&conflict.values).write(out, "  ")?;
        }
    }
    writeln!(out)?;
    if conflicts.log.is_empty() {
        writeln!(out, "conflict log: empty")?;
    } else {
        writeln!(out, "conflict log:")?;
        let mut log = Table::new(&["SEQ", "PATH", "SEEN (UTC)", "VALUES (* = kept)"]);
        for record in &conflicts.log {
            let values = logged_values(record, VALUE_WIDTH);
            log.row(vec![
                record.seq.to_string(),
                record.path.clone(),
                utc(i64::try_from(record.detected_ms).unwrap_or(i64::MAX)),
                values.join("  "),
            ]);
        }
        log.write(out, "  ")?;
    }
    Ok(())
}

fn value_table(values: &[ConflictValue]) -> Table {
    let mut table = Table::new(&["KEPT", "VALUE", "AUTHOR", "TIME (UTC)", "CHANGE"]);
    for value in values {
        table.row(vec![
            if value.winner { "yes" } else { "no" }.to_owned(),
            short_json(&value.value, VALUE_WIDTH),
            author(value.device.as_deref(), &value.actor),
            change_time(value.time),
            value.change.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    table
}

/// `peerdoc doc resolve ID PATH --keep HASH|DEVICE` or `--value VALUE`.
fn resolve(
    global: &GlobalArgs,
    id: &str,
    path: &str,
    keep: Option<&str>,
    value: Option<&str>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let id = input::document_id(id)?;
    let path = input::pointer(path)?;
    let value = value
        .map(|v| input::text_argument(v).and_then(|t| input::value(&t)))
        .transpose()?;
    let answer = connect(global)?.resolve_conflict(&id, path, keep, value.as_ref())?;
    if global.json {
        write_json(out, &answer)?;
    } else {
        let kept = short_json(&answer.kept, VALUE_WIDTH);
        match answer.device.as_deref() {
            Some(device) => writeln!(out, "kept {kept} ({device}) at {path} in {id}")?,
            None => writeln!(out, "wrote {kept} at {path} in {id}")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ConflictRecord, CurrentConflict};

    #[test]
    fn conflicts_show_every_value_and_which_one_is_kept() {
        let value = |v: &str, winner| ConflictValue {
            value: json!(v),
            actor: "a1b2c3d4e5f6".into(),
            device: None,
            change: Some("5c1a".into()),
            time: 1_763_774_249,
            winner,
        };
        let conflicts = Conflicts {
            current: vec![CurrentConflict {
                path: "/florist/phone".into(),
                values: vec![value("555-0199", false), value("555-0101", true)],
            }],
            log: vec![ConflictRecord {
                seq: 1,
                path: "/florist/phone".into(),
                detected_ms: 1_763_774_250_000,
                values: vec![value("555-0199", false), value("555-0101", true)],
            }],
        };
        let mut out = Vec::new();
        write_conflicts(&mut out, &conflicts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "conflicts now:\n\
             /florist/phone\n\
             \x20 KEPT  VALUE       AUTHOR    TIME (UTC)           CHANGE\n\
             \x20 no    \"555-0199\"  a1b2c3d4  2025-11-22 01:17:29  5c1a\n\
             \x20 yes   \"555-0101\"  a1b2c3d4  2025-11-22 01:17:29  5c1a\n\
             \n\
             conflict log:\n\
             \x20 SEQ  PATH            SEEN (UTC)           VALUES (* = kept)\n\
             \x20 1    /florist/phone  2025-11-22 01:17:30  \"555-0199\"  *\"555-0101\"\n"
        );
    }
}
