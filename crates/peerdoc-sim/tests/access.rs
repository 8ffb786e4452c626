//! Read-only peers (a team's viewers): their changes, tombstones and new documents are
//! never applied by a peer that marked their connection read-only, nothing they send
//! makes the exchange loop, and promotion to read-write brings their changes in.

use peerdoc_core::repo::{ChangeRequest, Command, Input, PeerAccess, Reply};
use peerdoc_core::{ConnectionId, DocumentId, model::EditOp};
use peerdoc_sim::Cluster;
use serde_json::json;

fn set(c: &mut Cluster, node: usize, doc: DocumentId, path: &str, value: serde_json::Value) {
    let reply = c.command(
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
    assert!(matches!(reply, Ok(Reply::Changed { .. })), "{reply:?}");
}

fn read_only(c: &mut Cluster, node: usize, conn: ConnectionId) {
    c.feed(
        node,
        Input::ConnectionAccess {
            conn,
            access: PeerAccess::ReadOnly,
        },
    );
}

#[test]
fn a_viewers_change_is_never_applied_and_never_spreads() {
    // 0 and 2 are editors; 1 is a viewer as far as 0 is concerned; 2 only hears from 0.
    let mut c = Cluster::new(3, 7, |_| {});
    let doc = c.create(0, json!({"firstDance": "21:00"}), 5);
    let (c01, _) = c.connect(0, 1);
    read_only(&mut c, 0, c01);
    c.connect(0, 2);
    c.run();
    assert_eq!(
        c.json(1, doc).unwrap()["firstDance"],
        "21:00",
        "the viewer reads"
    );
    // The viewer's device writes anyway (a modified app, or an API that let it through).
    set(&mut c, 1, doc, "/firstDance", json!("23:59"));
    c.run();
    assert_eq!(c.json(0, doc).unwrap()["firstDance"], "21:00");
    assert_eq!(c.json(2, doc).unwrap()["firstDance"], "21:00");
    // Editors still reach the viewer, and keep syncing with each other.
    set(&mut c, 2, doc, "/vendor", json!("florist"));
    c.run();
    assert_eq!(c.json(0, doc).unwrap()["vendor"], "florist");
    assert_eq!(c.json(1, doc).unwrap()["vendor"], "florist");
    assert_eq!(c.json(0, doc).unwrap()["firstDance"], "21:00");
}

#[test]
fn a_viewer_cannot_introduce_or_delete_documents() {
    let mut c = Cluster::new(2, 8, |_| {});
    let shared = c.create(0, json!({"seating": []}), 5);
    let own = c.create(1, json!({"fake": "run of show"}), 5);
    let (c01, _) = c.connect(0, 1);
    read_only(&mut c, 0, c01);
    c.run();
    assert!(
        c.json(0, own).is_none(),
        "a document only the viewer has stays there"
    );
    assert!(c.json(1, shared).is_some());
    assert!(c.command(1, Command::Delete { doc: shared }).is_ok());
    c.run();
    assert!(
        c.json(0, shared).is_some(),
        "the viewer's tombstone is ignored"
    );
}

#[test]
fn promoting_a_viewer_brings_in_what_it_wrote() {
    let mut c = Cluster::new(2, 9, |_| {});
    let doc = c.create(0, json!({"guests": 80}), 5);
    let (c01, _) = c.connect(0, 1);
    read_only(&mut c, 0, c01);
    c.run();
    set(&mut c, 1, doc, "/guests", json!(82));
    c.run();
    assert_eq!(c.json(0, doc).unwrap()["guests"], 80);
    c.feed(
        0,
        Input::ConnectionAccess {
            conn: c01,
            access: PeerAccess::ReadWrite,
        },
    );
    c.run();
    assert_eq!(c.json(0, doc).unwrap()["guests"], 82);
}

#[test]
fn a_viewer_relaying_an_editors_change_does_not_loop() {
    // 0 —— 1 (viewer to 2) —— 2: the change of 0 reaches 2 only once 0 and 2 meet.
    let mut c = Cluster::new(3, 10, |_| {});
    let doc = c.create(0, json!({"timeline": "v1"}), 5);
    c.connect(0, 1);
    let (_, c21) = c.connect(1, 2);
    read_only(&mut c, 2, c21);
    c.run();
    assert!(
        c.json(2, doc).is_none(),
        "a document offered only by a viewer is not taken"
    );
    c.connect(0, 2);
    c.run();
    set(&mut c, 0, doc, "/timeline", json!("v2"));
    c.run();
    for node in 0..3 {
        assert_eq!(c.json(node, doc).unwrap()["timeline"], "v2", "node {node}");
    }
}

#[test]
fn a_protected_document_takes_changes_from_read_only_peers_and_is_never_deleted() {
    let mut c = Cluster::new(2, 11, |_| {});
    let team = c.create(0, json!({"op-a": "signed by an admin"}), 5);
    let other = c.create(0, json!({"menu": "fish"}), 5);
    for node in 0..2 {
        c.feed(node, Input::ProtectDocument { doc: team });
    }
    let (c01, _) = c.connect(0, 1);
    read_only(&mut c, 0, c01);
    c.run();
    // The read-only peer's entry in the protected document is taken; elsewhere not.
    set(&mut c, 1, team, "/op-b", json!("signed by the other admin"));
    set(&mut c, 1, other, "/menu", json!("poison"));
    c.run();
    assert_eq!(
        c.json(0, team).unwrap()["op-b"],
        "signed by the other admin"
    );
    assert_eq!(c.json(0, other).unwrap()["menu"], "fish");
    // Nobody deletes it: not locally, not by a tombstone.
    assert!(c.command(1, Command::Delete { doc: team }).is_err());
    assert!(c.command(0, Command::Delete { doc: team }).is_err());
    c.run();
    assert!(c.json(0, team).is_some() && c.json(1, team).is_some());
}

#[test]
fn a_removed_device_during_its_notice_hears_only_of_protected_documents() {
    let mut c = Cluster::new(2, 12, |_| {});
    let team = c.create(0, json!({"op-a": "signed"}), 5);
    let doc = c.create(0, json!({"menu": "fish"}), 5);
    for node in 0..2 {
        c.feed(node, Input::ProtectDocument { doc: team });
    }
    let (c01, _) = c.connect(0, 1);
    c.run();
    assert_eq!(c.json(1, doc).unwrap()["menu"], "fish");
    c.feed(
        0,
        Input::ConnectionAccess {
            conn: c01,
            access: PeerAccess::ProtectedOnly,
        },
    );
    set(&mut c, 0, team, "/op-revoke", json!("device 1 removed"));
    set(&mut c, 0, doc, "/menu", json!("beef"));
    let secret = c.create(0, json!({"new": "after the removal"}), 5);
    set(&mut c, 1, doc, "/menu", json!("poison"));
    c.run();
    assert_eq!(c.json(1, team).unwrap()["op-revoke"], "device 1 removed");
    assert_eq!(c.json(1, doc).unwrap()["menu"], "poison");
    assert!(c.json(1, secret).is_none());
    assert_eq!(c.json(0, doc).unwrap()["menu"], "beef");
}
