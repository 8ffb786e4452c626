//! A device whose store silently went back in time, as a coordinator meets it: one
//! flipped byte in a stopped daemon's store makes sled drop the end of its log on the
//! next start. The daemon says so (log, `/v1/status`, `peerdoc status`, `/metrics`), names
//! the document that went back, and gets the lost change again from the peer that has it.
//! Two real `peerdoc run` daemons on 127.0.0.1, mDNS off.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;

use std::path::Path;

use daemon::{Daemon, content, eventually, free_port};
use peerdoc_store::{SledConfig, SledStorage};
use serde_json::json;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Flips one byte of `store`'s log among `changed` such that the store, opened, reports
/// that `doc` went back; returns the damaged log. Each try is on a copy.
fn damage_that_loses(store: &Path, changed: &[usize], doc: &str, scratch: &Path) -> Vec<u8> {
    let log = std::fs::read(store.join("db")).expect("log");
    for (attempt, &offset) in changed.iter().step_by(5).enumerate() {
        let copy = scratch.join(format!("try-{attempt}"));
        copy_dir(store, &copy);
        let mut damaged = log.clone();
        damaged[offset] ^= 0x5a;
        std::fs::write(copy.join("db"), &damaged).expect("write log");
        let lost = SledStorage::open(&copy, SledConfig::default())
            .ok()
            .and_then(|s| s.rollback().cloned())
            .is_some_and(|r| r.documents.iter().any(|d| d == doc));
        let _ = std::fs::remove_dir_all(&copy);
        if lost {
            return damaged;
        }
    }
    panic!(
        "no flipped byte among {} made the store lose {doc}",
        changed.len()
    );
}

#[test]
fn a_store_that_went_back_says_so_and_gets_the_lost_change_from_a_peer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a_dir = dir.path().join("a");
    let a_listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let mut a = Daemon::start("A", &a_dir, &a_listen, &[]);
    let b = Daemon::start(
        "B",
        &dir.path().join("b"),
        "/ip4/127.0.0.1/tcp/0",
        &["--peer", &a.dial_addr(), "--set", "net.reconnect_cap=1000"],
    );
    let id = a.client.create(json!({"venue": "Barn", "guests": 80}));
    eventually("B to have the document", || content(&b, &id));
    assert!(a.sigterm().success());
    let store = a_dir.join("store");
    let before = std::fs::read(store.join("db")).expect("log");

    // The last change A acknowledged, which B also received.
    let mut a = Daemon::start("A", &a_dir, &a_listen, &[]);
    a.client
        .patch(
            &format!("/v1/docs/{id}"),
            &json!({"ops": [{"op": "set", "path": "/guests", "value": 120}]}),
        )
        .ok(200);
    eventually("B to have the change", || {
        (content(&b, &id)?["guests"] == 120).then_some(())
    });
    assert!(a.sigterm().success());

    // One flipped byte where that change was logged.
    let after = std::fs::read(store.join("db")).expect("log");
    let changed: Vec<usize> = (0..after.len())
        .filter(|&i| before.get(i) != Some(&after[i]))
        .collect();
    let damaged = damage_that_loses(&store, &changed, &id, &dir.path().join("scratch"));
    std::fs::write(store.join("db"), damaged).expect("damage");

    let a = Daemon::start("A", &a_dir, &a_listen, &[]);
    let status = a.status();
    let rollback = &status["store_rollback"];
    assert!(
        rollback["documents"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d == &json!(id))),
        "{status}"
    );
    assert!(
        rollback["message"]
            .as_str()
            .is_some_and(|m| m.contains("went back")),
        "{status}"
    );
    assert!(
        a.log_text().contains("the store went back"),
        "{}",
        a.log_text()
    );
    let metrics = a.client.get("/metrics").text();
    assert!(
        metrics.contains("peerdoc_store_rollback_documents "),
        "{metrics}"
    );

    // B has the change and sends it again.
    eventually("A to get the lost change back from B", || {
        (content(&a, &id)?["guests"] == 120).then_some(())
    });

    // `peerdoc status` tells the person at the terminal.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_peerdoc"))
        .env_remove("PEERDOC_API_URL")
        .env_remove("PEERDOC_TOKEN")
        .arg("--data-dir")
        .arg(&a_dir)
        .arg("status")
        .output()
        .expect("peerdoc status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("went back") && text.contains(&id),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
}
