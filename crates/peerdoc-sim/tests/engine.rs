//! Targeted behaviour of the engine, over the in-memory [`Cluster`].

use std::collections::BTreeSet;

use peerdoc_core::repo::{ChangeRequest, Command, Event, Reply};
use peerdoc_core::{DocumentId, model::EditOp};
use peerdoc_sim::Cluster;
use serde_json::json;

fn set(cluster: &mut Cluster, node: usize, doc: DocumentId, path: &str, value: serde_json::Value) {
    let reply = cluster.command(
        node,
        Command::Change {
            doc,
            request: ChangeRequest::Ops(vec![EditOp::Set {
                path: path.into(),
                value,
            }]),
            message: None,
        },
    );
    assert!(
        matches!(
            reply,
            Ok(Reply::Changed {
                change: Some(_),
                ..
            })
        ),
        "{reply:?}"
    );
}

fn synced_docs(cluster: &Cluster, node: usize, since: usize) -> BTreeSet<DocumentId> {
    cluster.events[since..]
        .iter()
        .filter(|(n, _)| *n == node)
        .filter_map(|(_, e)| match e {
            Event::DocumentSynced { doc, .. } => Some(*doc),
            _ => None,
        })
        .collect()
}

#[test]
fn a_document_created_on_one_peer_reaches_the_other() {
    let mut c = Cluster::new(2, 1, |_| {});
    let doc = c.create(
        0,
        json!({"event": "Barn wedding", "firstDance": "21:00"}),
        5,
    );
    c.connect(0, 1);
    c.run();
    assert_eq!(c.json(1, doc), c.json(0, doc));
    set(&mut c, 1, doc, "/firstDance", json!("21:15"));
    c.run();
    assert_eq!(c.json(0, doc).unwrap()["firstDance"], "21:15");
}

#[test]
fn an_empty_document_reaches_the_other_peer_too() {
    // `{}` has no content to commit; without a change of its own the document would have
    // no heads and never be offered to a peer.
    let mut c = Cluster::new(2, 3, |_| {});
    let doc = c.create(0, json!({}), 0);
    c.connect(0, 1);
    c.run();
    assert_eq!(c.json(1, doc), Some(json!({})));
    set(&mut c, 1, doc, "/later", json!(1));
    c.run();
    assert_eq!(c.json(0, doc), Some(json!({"later": 1})));
}

#[test]
fn concurrent_writes_converge_and_the_conflict_is_logged_on_both() {
    let mut c = Cluster::new(2, 2, |_| {});
    let doc = c.create(0, json!({"florist": "555-0100"}), 0);
    let link = c.connect(0, 1);
    c.run();
    c.disconnect(link.0);
    set(&mut c, 0, doc, "/florist", json!("555-0111"));
    set(&mut c, 1, doc, "/florist", json!("555-0122"));
    c.connect(1, 0);
    c.run();
    assert_eq!(c.json(0, doc), c.json(1, doc));
    for node in 0..2 {
        match c.command(node, Command::Conflicts { doc }) {
            Ok(Reply::Conflicts { current, log }) => {
                assert_eq!(current.len(), 1, "node {node}: {current:?}");
                assert_eq!(current[0].values.len(), 2);
                assert_eq!(log.len(), 1, "node {node} must log the conflict once");
                assert_eq!(log[0].path, "/florist");
            }
            other => panic!("{other:?}"),
        }
    }
    // Resolving writes a value that supersedes both; the log keeps the record.
    let reply = c.command(
        0,
        Command::Change {
            doc,
            request: ChangeRequest::Resolve {
                path: "/florist".into(),
                value: json!("555-0122"),
            },
            message: Some("checked with the florist".into()),
        },
    );
    assert!(reply.is_ok());
    c.run();
    for node in 0..2 {
        match c.command(node, Command::Conflicts { doc }) {
            Ok(Reply::Conflicts { current, log }) => {
                assert!(current.is_empty());
                assert_eq!(log.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_deleted_document_does_not_come_back_from_a_peer_that_still_holds_it() {
    let mut c = Cluster::new(3, 3, |_| {});
    let doc = c.create(0, json!({"n": 1}), 0);
    let l01 = c.connect(0, 1);
    let l02 = c.connect(0, 2);
    c.run();
    c.disconnect(l01.0);
    c.disconnect(l02.0);
    // Node 0 deletes while node 1 keeps editing, offline.
    assert!(matches!(
        c.command(0, Command::Delete { doc }),
        Ok(Reply::Done)
    ));
    set(&mut c, 1, doc, "/n", json!(2));
    c.connect(1, 2);
    c.run();
    c.connect(2, 0);
    c.run();
    for node in 0..3 {
        assert_eq!(c.json(node, doc), None, "node {node} resurrected the doc");
        assert!(c.nodes[node].repo.catalog()[&doc].deleted);
    }
    // And it survives a restart.
    c.restart(1);
    assert!(c.nodes[1].repo.catalog()[&doc].deleted);
}

#[test]
fn cold_documents_are_evicted_and_reload_on_demand() {
    let mut c = Cluster::new(1, 4, |cfg| cfg.max_docs_in_memory = 3);
    let docs: Vec<DocumentId> = (0..20).map(|i| c.create(0, json!({"i": i}), 0)).collect();
    assert!(c.nodes[0].repo.stats().loaded <= 3);
    assert!(c.nodes[0].repo.stats().evictions >= 17);
    for (i, doc) in docs.iter().enumerate() {
        assert_eq!(c.json(0, *doc).unwrap()["i"], i);
    }
    assert!(c.nodes[0].repo.stats().loaded <= 3);
}

#[test]
fn a_restart_reloads_everything_from_storage() {
    let mut c = Cluster::new(1, 5, |_| {});
    let doc = c.create(0, json!({"a": 1}), 3);
    set(&mut c, 0, doc, "/b", json!([1, 2]));
    c.restart(0);
    assert_eq!(c.json(0, doc).unwrap(), json!({"a": 1, "b": [1, 2]}));
    assert_eq!(c.nodes[0].repo.catalog()[&doc].priority, 3);
}

/// Two peers that share `n` documents (identical stores, different storage ids).
fn twin_cluster(n: usize, seed: u64) -> (Cluster, Vec<DocumentId>) {
    let mut template = Cluster::new(1, seed, |_| {});
    let docs: Vec<DocumentId> = (0..n)
        .map(|i| template.create(0, json!({"i": i}), (i % 3) as i32))
        .collect();
    let stores = vec![template.clone_store(0), template.clone_store(0)];
    let cluster = Cluster::with_stores(stores, seed + 1, |_| {});
    (cluster, docs)
}

#[test]
fn reconnecting_with_10_000_unchanged_documents_costs_a_constant_few_messages() {
    let (mut c, _) = twin_cluster(10_000, 6);
    let link = c.connect(0, 1);
    c.run();
    let t = c.traffic(link);
    println!(
        "10,000 unchanged documents: {} messages, {} bytes",
        t.messages, t.bytes
    );
    let kinds: Vec<&str> = c.frames.iter().map(|f| f.kind.as_str()).collect();
    assert!(
        !kinds.contains(&"sync"),
        "no document needed syncing: {kinds:?}"
    );
    assert!(t.messages <= 4, "{kinds:?}");
    assert!(t.bytes < 2_048, "{} bytes", t.bytes);
    // The same holds at 100 documents: the cost does not grow with the count.
    let (mut small, _) = twin_cluster(100, 7);
    let small_link = small.connect(0, 1);
    small.run();
    assert_eq!(small.traffic(small_link).messages, t.messages);
}

#[test]
fn when_10_of_10_000_documents_changed_exactly_those_10_sync() {
    let (mut c, docs) = twin_cluster(10_000, 8);
    let changed: BTreeSet<DocumentId> = docs.iter().step_by(997).take(10).copied().collect();
    assert_eq!(changed.len(), 10);
    for doc in &changed {
        set(&mut c, 0, *doc, "/changed", json!(true));
    }
    let since = c.events.len();
    let link = c.connect(1, 0);
    c.run();
    let sync_frames: BTreeSet<DocumentId> = c
        .frames
        .iter()
        .filter(|f| f.kind == "sync")
        .filter_map(|f| f.doc)
        .collect();
    assert_eq!(
        sync_frames, changed,
        "sync messages only for the changed docs"
    );
    assert_eq!(synced_docs(&c, 1, since), changed);
    for doc in &changed {
        assert_eq!(c.json(1, *doc).unwrap()["changed"], true);
    }
    let t = c.traffic(link);
    println!(
        "10 of 10,000 changed: {} messages, {} bytes",
        t.messages, t.bytes
    );
}

#[test]
fn queued_syncs_run_in_priority_order() {
    let mut c = Cluster::new(2, 9, |cfg| cfg.max_concurrent_syncs_per_peer = 1);
    let low = c.create(0, json!({"p": "archive"}), 0);
    let high = c.create(0, json!({"p": "today"}), 10);
    let mid = c.create(0, json!({"p": "next week"}), 5);
    let since = c.events.len();
    c.connect(1, 0);
    c.run();
    let order: Vec<DocumentId> = c.events[since..]
        .iter()
        .filter_map(|(n, e)| match e {
            Event::DocumentSynced { doc, .. } if *n == 0 => Some(*doc),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![high, mid, low]);
}

#[test]
fn history_read_at_and_revert() {
    let mut c = Cluster::new(1, 10, |_| {});
    let doc = c.create(0, json!({"time": "21:00"}), 0);
    let Ok(Reply::Json { heads: before, .. }) = c.command(0, Command::Read { doc, heads: None })
    else {
        panic!()
    };
    c.advance(60_000);
    let reply = c.command(
        0,
        Command::Change {
            doc,
            request: ChangeRequest::Ops(vec![EditOp::Set {
                path: "/time".into(),
                value: json!("21:15"),
            }]),
            message: Some("first dance moved".into()),
        },
    );
    assert!(reply.is_ok());
    match c.command(0, Command::History { doc }) {
        Ok(Reply::History(entries)) => {
            assert_eq!(entries.len(), 2);
            assert_eq!(entries[1].message.as_deref(), Some("first dance moved"));
        }
        other => panic!("{other:?}"),
    }
    match c.command(
        0,
        Command::Read {
            doc,
            heads: Some(before.clone()),
        },
    ) {
        Ok(Reply::Json { value, .. }) => assert_eq!(value["time"], "21:00"),
        other => panic!("{other:?}"),
    }
    let reply = c.command(
        0,
        Command::Change {
            doc,
            request: ChangeRequest::Revert { heads: before },
            message: Some("undo".into()),
        },
    );
    assert!(
        matches!(
            reply,
            Ok(Reply::Changed {
                change: Some(_),
                ..
            })
        ),
        "{reply:?}"
    );
    assert_eq!(c.json(0, doc).unwrap()["time"], "21:00");
}

#[test]
fn bad_commands_fail_cleanly_and_change_nothing() {
    let mut c = Cluster::new(1, 11, |_| {});
    let doc = c.create(0, json!({"a": 1}), 0);
    let reply = c.command(
        0,
        Command::Change {
            doc,
            request: ChangeRequest::Ops(vec![
                EditOp::Set {
                    path: "/b".into(),
                    value: json!(2),
                },
                EditOp::Set {
                    path: "/missing/deep".into(),
                    value: json!(3),
                },
            ]),
            message: None,
        },
    );
    assert!(reply.is_err());
    assert_eq!(c.json(0, doc).unwrap(), json!({"a": 1}));
    let unknown = DocumentId::from_bytes([1; 16]);
    assert!(
        c.command(
            0,
            Command::Read {
                doc: unknown,
                heads: None
            }
        )
        .is_err()
    );
    assert!(
        c.command(
            0,
            Command::Create {
                initial: Some(json!([1])),
                priority: 0,
                title: None
            }
        )
        .is_err()
    );
    assert!(
        c.command(
            0,
            Command::Import {
                bytes: b"junk".to_vec(),
                priority: 0,
                title: None
            }
        )
        .is_err()
    );
}
