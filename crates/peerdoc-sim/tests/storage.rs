//! The engine over storage that fails, on the `Cluster` harness: a failed write is
//! reported to its caller and never acknowledged, reads that fail end in errors, and
//! everything works again once storage does, with nothing acknowledged lost. The
//! seeded version of this, mixed with partitions and crashes, is
//! `convergence.rs::storage_faults_lose_nothing_acknowledged_and_the_engine_recovers`.

use peerdoc_core::repo::{ChangeRequest, Command, RepoError};
use peerdoc_sim::{Cluster, StorageFaults};
use serde_json::json;

fn set(c: &mut Cluster, doc: peerdoc_core::DocumentId, value: i64) -> Result<(), RepoError> {
    c.command(
        0,
        Command::Change {
            doc,
            request: ChangeRequest::ReplaceWith(json!({ "guests": value })),
            message: None,
        },
    )
    .map(|_| ())
}

#[test]
fn a_full_disk_refuses_writes_loudly_and_they_resume_when_space_returns() {
    let mut c = Cluster::new(2, 40, |_| {});
    let doc = c.create(0, json!({"guests": 1}), 0);
    c.connect(1, 0);
    c.run();
    c.faults = StorageFaults {
        full: true,
        ..StorageFaults::default()
    };
    // Refused, and said so: never acknowledged.
    let refused = set(&mut c, doc, 2);
    assert!(
        matches!(refused, Err(RepoError::StorageFull(_))),
        "{refused:?}"
    );
    let created = c.command(
        0,
        Command::Create {
            initial: Some(json!({"a": 1})),
            priority: 0,
            title: None,
        },
    );
    assert!(
        matches!(created, Err(RepoError::StorageFull(_))),
        "{created:?}"
    );
    assert!(c.injected_failures >= 2);
    // Reads still work.
    assert_eq!(c.json(0, doc).unwrap()["guests"], 2);
    // Space returns: the next tick writes what was refused, and new writes succeed.
    c.faults = StorageFaults::default();
    c.tick();
    c.run();
    set(&mut c, doc, 3).expect("writes work again");
    c.run();
    assert_eq!(c.json(1, doc).unwrap()["guests"], 3);
    // Nothing acknowledged was lost: a restart reads it back from storage.
    c.restart(0);
    assert_eq!(c.json(0, doc).unwrap()["guests"], 3);
}

#[test]
fn failing_reads_and_writes_lose_nothing_acknowledged() {
    let mut c = Cluster::new(1, 41, |cfg| cfg.max_docs_in_memory = 2);
    let docs: Vec<_> = (0..6)
        .map(|i| c.create(0, json!({"guests": i}), 0))
        .collect();
    c.faults = StorageFaults {
        write_errors: 300,
        read_errors: 300,
        full: false,
    };
    let mut acknowledged = std::collections::BTreeMap::new();
    for round in 0..40i64 {
        let doc = docs[round as usize % docs.len()];
        match set(&mut c, doc, 100 + round) {
            Ok(()) => {
                acknowledged.insert(doc, 100 + round);
            }
            Err(RepoError::Storage(_)) => {}
            Err(other) => panic!("a storage failure must say so: {other:?}"),
        }
        c.tick();
    }
    assert!(c.injected_failures > 0);
    assert!(!acknowledged.is_empty());
    c.faults = StorageFaults::default();
    c.tick();
    c.restart(0);
    for (doc, value) in acknowledged {
        let read = c.json(0, doc).expect("readable after the restart");
        // Acknowledged, so stored; a later change that failed may have been saved by
        // the retry, so it is this value or a later one.
        assert!(
            read["guests"].as_i64().unwrap() >= value,
            "{doc}: {read} < {value}"
        );
    }
}

#[test]
fn a_deleted_document_leaves_nothing_on_disk_even_what_it_no_longer_knew() {
    use peerdoc_core::storage::{Storage as _, StorageKey, WriteBatch};
    let mut c = Cluster::new(1, 41, |_| {});
    let doc = c.create(0, json!({"guests": 1}), 0);
    c.run();
    // A chunk on disk the loaded document does not know about, as a pipelined save that
    // failed under a compaction that did not can leave behind.
    let stray = StorageKey::new([doc.to_string(), "incremental".into(), "stray".into()]);
    let mut batch = WriteBatch::new();
    batch.put(stray.clone(), b"left behind".to_vec());
    c.nodes[0].store.write(batch).expect("stray chunk");

    c.command(0, Command::Delete { doc }).expect("delete");
    c.run();
    // The tombstone's own batch deletes what the document knew; the sweep at the next
    // tick deletes the rest, even when its first read fails.
    c.faults = StorageFaults {
        read_errors: 1000,
        ..StorageFaults::default()
    };
    c.tick();
    c.run();
    assert!(c.nodes[0].store.get(&stray).expect("get").is_some());
    c.faults = StorageFaults::default();
    c.tick();
    c.run();
    let left = c.nodes[0].store.range(&[doc.to_string()]).expect("range");
    assert!(left.is_empty(), "{left:?}");
}

/// A change whose save failed is saved again at the next tick. A peer that reconciled
/// in between, against the heads the store held (the catalog names those until the
/// retry), found nothing different: the retry tells it (storage-fault seeds 68, 105,
/// 115, 148, 254 and 341 ended quiet on different heads).
#[test]
fn a_change_whose_save_failed_reaches_a_peer_that_reconciled_before_the_retry() {
    let mut c = Cluster::new(2, 42, |_| {});
    let doc = c.create(0, json!({"guests": 1}), 0);
    let (link, _) = c.connect(1, 0);
    c.run();
    assert_eq!(c.json(1, doc), Some(json!({"guests": 1})));
    c.disconnect(link);
    c.faults = StorageFaults {
        full: true,
        ..StorageFaults::default()
    };
    assert!(set(&mut c, doc, 2).is_err(), "the save failed");
    c.faults = StorageFaults::default();
    c.connect(1, 0);
    c.run();
    assert_eq!(
        c.json(1, doc),
        Some(json!({"guests": 1})),
        "nothing differed"
    );
    c.tick();
    c.run();
    assert_eq!(c.json(1, doc), Some(json!({"guests": 2})));
}

/// Node `i`'s catalog names exactly the heads its store holds for `doc` (what a
/// restart would show until the document is loaded).
fn catalog_matches_store(c: &Cluster, i: usize, doc: peerdoc_core::DocumentId) {
    use peerdoc_core::{Storage as _, persist};
    let mut named = c.nodes[i].repo.catalog()[&doc].change_heads();
    named.sort();
    let stored = c.nodes[i]
        .store
        .range(&persist::document_prefix(&doc))
        .expect("range");
    let mut held = persist::load_document(stored).doc.get_heads();
    held.sort();
    assert_eq!(named, held, "node {i}: catalog and store disagree on {doc}");
}

/// A record written on its own (here new metadata) while a save is in flight names
/// that save's heads; landing after the save failed, it named changes the store lacks,
/// and a crash before the retry left catalog and store disagreeing (storage-fault
/// seeds 282 and 336). It waits for the save instead.
#[test]
fn a_record_written_while_a_save_is_in_flight_never_names_what_the_save_failed_to_store() {
    let mut c = Cluster::new(1, 43, |_| {});
    let doc = c.create(0, json!({"guests": 1}), 0);
    c.hold_storage = true;
    let change = c.submit(
        0,
        Command::Change {
            doc,
            request: ChangeRequest::ReplaceWith(json!({"guests": 2})),
            message: None,
        },
    );
    let retitle = c.submit(
        0,
        Command::SetMeta {
            doc,
            priority: None,
            title: Some("Guest list".into()),
        },
    );
    c.faults = StorageFaults {
        full: true,
        ..StorageFaults::default()
    };
    assert!(c.release_storage_op(), "the save fails");
    c.faults = StorageFaults::default();
    c.release_storage();
    assert!(matches!(c.take_reply(change), Some(Err(_))));
    assert!(matches!(c.take_reply(retitle), Some(Ok(_))));
    // A crash before the next tick's retry.
    c.restart(0);
    catalog_matches_store(&c, 0, doc);
    assert_eq!(
        c.nodes[0].repo.catalog()[&doc].title.as_deref(),
        Some("Guest list")
    );
}

/// A save holds only the changes since the previous save's heads. Two in flight at
/// once, the first failing and the second landing, put chunks on disk that cannot load
/// beside a record naming their heads (storage-fault seed 113: a created document that
/// was never stored lingered as an empty ghost). One save at a time: the second change
/// waits, and goes out with everything since the durable heads.
#[test]
fn a_save_never_lands_on_top_of_one_that_failed() {
    let mut c = Cluster::new(1, 44, |_| {});
    let doc = c.create(0, json!({"guests": 1}), 0);
    c.hold_storage = true;
    let change = |value: i64| Command::Change {
        doc,
        request: ChangeRequest::ReplaceWith(json!({ "guests": value })),
        message: None,
    };
    let first = c.submit(0, change(2));
    let second = c.submit(0, change(3));
    c.faults = StorageFaults {
        full: true,
        ..StorageFaults::default()
    };
    assert!(c.release_storage_op(), "the first save fails");
    c.faults = StorageFaults::default();
    c.release_storage();
    c.restart(0);
    catalog_matches_store(&c, 0, doc);
    // The second save held both changes: it is acknowledged, and they are stored.
    assert!(matches!(c.take_reply(first), Some(Err(_))));
    assert!(matches!(c.take_reply(second), Some(Ok(_))));
    assert_eq!(c.json(0, doc), Some(json!({"guests": 3})));
    let damaged = c
        .events
        .iter()
        .any(|(_, e)| matches!(e, peerdoc_core::repo::Event::DocumentDamaged { .. }));
    assert!(!damaged, "the load found nothing missing");
}

/// A record that names changes the store lacks (a store written before records waited
/// for saves can hold one) makes peers reconcile against heads this node does not
/// have. When the document is next loaded, the record is put right and the peers are
/// told, so the missing changes come now rather than at the next reconnect.
#[test]
fn a_load_that_finds_the_record_wrong_puts_it_right_and_syncs() {
    use peerdoc_core::Storage as _;
    use peerdoc_core::persist;
    use peerdoc_core::storage::WriteBatch;
    let mut c = Cluster::new(2, 45, |_| {});
    let doc = c.create(0, json!({"guests": 1}), 0);
    let (link, _) = c.connect(1, 0);
    c.run();
    c.disconnect(link);
    c.command(
        1,
        Command::Change {
            doc,
            request: ChangeRequest::ReplaceWith(json!({"guests": 2})),
            message: None,
        },
    )
    .expect("node 1 changes it");
    // Node 0's record names node 1's heads; its chunks hold only its own.
    let record = c.nodes[1]
        .store
        .get(&persist::meta_key(&doc))
        .expect("get")
        .expect("node 1's record");
    let mut batch = WriteBatch::new();
    batch.put(persist::meta_key(&doc), record);
    c.nodes[0].store.write(batch).expect("write");
    c.restart(0);
    c.connect(1, 0);
    c.run();
    assert!(c.nodes[0].repo.document(&doc).is_none(), "nothing differed");
    assert_eq!(c.json(0, doc), Some(json!({"guests": 1})), "the load");
    c.run();
    assert_eq!(c.json(0, doc), Some(json!({"guests": 2})));
    catalog_matches_store(&c, 0, doc);
}

/// A document deleted while a compaction of it is in flight: the tombstone deleted the
/// chunks the document knew, the compaction's new snapshot among them, but not those
/// the compaction replaces. When the compaction then failed, those stayed on disk, and
/// a crash before the next tick's sweep left them there for good (storage-fault seed
/// 3588). The tombstone deletes them too.
#[test]
fn a_document_deleted_during_a_compaction_that_fails_leaves_nothing_on_disk() {
    use peerdoc_core::Storage as _;
    use peerdoc_core::persist;
    let mut c = Cluster::new(1, 47, |cfg| cfg.compaction_threshold = 2);
    let doc = c.create(0, json!({"guests": 1}), 0);
    set(&mut c, doc, 2).expect("an incremental save");
    c.hold_storage = true;
    let compaction = c.submit(
        0,
        Command::Change {
            doc,
            request: ChangeRequest::ReplaceWith(json!({"guests": 3})),
            message: None,
        },
    );
    let delete = c.submit(0, Command::Delete { doc });
    c.faults = StorageFaults {
        full: true,
        ..StorageFaults::default()
    };
    assert!(c.release_storage_op(), "the compaction fails");
    c.faults = StorageFaults::default();
    c.release_storage();
    assert!(matches!(c.take_reply(compaction), Some(Err(_))));
    assert!(matches!(c.take_reply(delete), Some(Ok(_))));
    // A crash before the next tick's sweep.
    c.restart(0);
    assert!(c.nodes[0].repo.catalog()[&doc].deleted);
    let left: Vec<String> = c.nodes[0]
        .store
        .range(&persist::document_prefix(&doc))
        .expect("range")
        .into_iter()
        .map(|(key, _)| key.to_string())
        .filter(|key| !key.contains(persist::SYNC_STATE))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A deleted document's tombstone batch (the record saying "deleted", and the deletion
/// of its data) failed, and so did its retry at the next tick; the sweep at that tick
/// found the data still there and deleted it on its own. A crash before the record's
/// next retry left a record naming the document's heads over a store without them
/// (storage-fault seeds 18192, 22442, 22532, 23713, 27401). The sweep writes the
/// tombstone record with its deletion.
#[test]
fn a_sweep_never_deletes_what_the_record_on_disk_still_names() {
    use peerdoc_core::Storage as _;
    use peerdoc_core::persist;
    let mut c = Cluster::new(1, 48, |_| {});
    let doc = c.create(0, json!({"guests": 1}), 0);
    c.hold_storage = true;
    let delete = c.submit(0, Command::Delete { doc });
    let full = StorageFaults {
        full: true,
        ..StorageFaults::default()
    };
    c.faults = full;
    assert!(c.release_storage_op(), "the tombstone's batch fails");
    assert!(matches!(c.take_reply(delete), Some(Err(_))));
    // The next tick writes the tombstone again (failing again), then sweeps.
    c.tick();
    assert!(c.release_storage_op(), "the retry fails");
    c.faults = StorageFaults::default();
    assert!(c.release_storage_op(), "the sweep reads the data");
    assert!(c.release_storage_op(), "the sweep deletes it");
    assert!(!c.release_storage_op(), "nothing else was written");
    c.hold_storage = false;
    // A crash before the next tick's retry.
    c.restart(0);
    let meta = &c.nodes[0].repo.catalog()[&doc];
    assert!(meta.deleted, "the record names heads: {:?}", meta.heads);
    let left = c.nodes[0]
        .store
        .range(&persist::document_prefix(&doc))
        .expect("range");
    assert!(left.is_empty(), "{left:?}");
}
