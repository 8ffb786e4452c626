//! Teams across a namespace LAN, as a venue meets them: a device joins by invite code
//! with multicast blocked in its namespace (the code's addresses are all it has), a
//! stranger with mDNS on learns nothing, and a removed device that kept the old team
//! key cannot even complete a handshake once the key was rotated.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::GUARD;
use crate::daemon::{Daemon, DaemonOptions, eventually};
use crate::lan::Lan;

/// Whether any file under `dir` contains `needle` (the stranger's store must hold no
/// trace of the team's document ids).
fn any_file_contains(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            any_file_contains(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}

/// Copies a (stopped) daemon's data directory.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from)
        .expect("read the directory")
        .flatten()
    {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

fn code(admin: &Daemon, role: &str, name: &str) -> String {
    let invite = admin
        .cli(&["team", "invite", "--role", role, "--name", name])
        .unwrap_or_else(|e| panic!("{e}"));
    invite["code"].as_str().expect("code").to_owned()
}

fn key_epochs(daemon: &Daemon) -> Vec<String> {
    let text = std::fs::read_to_string(daemon.data_dir.join("team.json")).unwrap_or_default();
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            v["team"]["keys"]
                .as_object()
                .map(|k| k.keys().cloned().collect())
        })
        .unwrap_or_default()
}

#[test]
fn a_device_joins_by_code_without_multicast_a_stranger_learns_nothing_a_removed_one_is_shut_out() {
    if crate::skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let lan = Lan::new(4).expect("build the LAN");
    // Host 2 gets no multicast: no mDNS, only the addresses in its invite code.
    lan.nomcast(2).expect("block multicast on host 2");
    // No grace for the previous key: after a rotation it stops working at once.
    let options = DaemonOptions {
        settings: vec!["team.previous_key_grace_secs=0".into()],
        ..DaemonOptions::default()
    };
    let start = |i: usize, options: &DaemonOptions| {
        Daemon::start(lan.host(i), &tmp.path().join(format!("host{i}")), options)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let planner = start(1, &options);
    let tablet = start(2, &options);
    // The stranger runs open: it would take anything anyone offered it.
    let stranger = start(
        3,
        &DaemonOptions {
            settings: vec!["team.open=true".into()],
            ..DaemonOptions::default()
        },
    );
    let mut phone = start(4, &options);

    planner
        .cli(&[
            "team",
            "create",
            "--name",
            "Hill Barn crew",
            "--device-name",
            "Planner",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let joined = tablet
        .cli(&["team", "join", &code(&planner, "editor", "Tablet")])
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", planner.log(), tablet.log()));
    assert_eq!(joined["me"]["name"], "Tablet");
    phone
        .cli(&["team", "join", &code(&planner, "editor", "Phone")])
        .unwrap_or_else(|e| panic!("{e}"));

    let id = planner
        .create(&json!({"firstDance": "21:00"}))
        .unwrap_or_else(|e| panic!("{e}"));
    for d in [&tablet, &phone] {
        eventually(&format!("{} has the document", d.host.ns), GUARD, || {
            d.doc(&id).map(drop)
        });
    }
    // The stranger saw the team's devices by mDNS all along, and holds nothing.
    assert_eq!(stranger.documents().unwrap_or(usize::MAX), 0);
    assert_eq!(stranger.connected_peers(), 0);
    assert!(
        !any_file_contains(&stranger.data_dir, id.as_bytes()),
        "the stranger's data directory holds the team's document id"
    );

    // The phone is removed. Keep its whole data directory as it was (stopped, so the
    // copy is consistent): a device restored from before its removal, with the old key
    // and no record of the removal.
    drop(phone);
    let backup = tmp.path().join("host4-backup");
    copy_dir(&tmp.path().join("host4"), &backup);
    let _ = std::fs::remove_file(tmp.path().join("host4/api.addr"));
    phone = start(4, &options);
    planner
        .cli(&["team", "revoke", "Phone"])
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the tablet holds the new key", GUARD, || {
        key_epochs(&tablet).contains(&"1".to_owned()).then_some(())
    });
    eventually("the phone learns it was removed", GUARD, || {
        (phone.cli(&["team", "status"]).ok()?["state"] == "removed").then_some(())
    });
    assert_eq!(
        key_epochs(&phone),
        ["0"],
        "the removed phone got the new key"
    );

    // It comes back with its old team file, believing it is a member, mDNS on, once the
    // members have switched keys (2 s after they learned of the removal).
    std::thread::sleep(Duration::from_secs(3));
    drop(phone);
    std::fs::remove_dir_all(tmp.path().join("host4")).expect("remove host4");
    copy_dir(&backup, &tmp.path().join("host4"));
    // The killed daemon's address file would be taken for the new one's.
    let _ = std::fs::remove_file(tmp.path().join("host4/api.addr"));
    phone = start(4, &options);
    let later = planner
        .create(&json!({"cake": "lemon"}))
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the tablet has the later document", GUARD, || {
        tablet.doc(&later).map(drop)
    });
    // Its dials fail at the private-network handshake: no key of the team's fits.
    let refused = |d: &Daemon| d.log().contains("none of our team keys");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(refused(&planner) || refused(&tablet)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no member refused the old key at the handshake\n== planner ==\n{}\n== phone ==\n{}",
            planner.log(),
            phone.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // And it says why, in words, in its own peer list.
    eventually("the phone says why it is not connected", GUARD, || {
        let peers = phone.cli(&["peers"]).ok()?;
        peers
            .as_array()?
            .iter()
            .any(|p| {
                p["not_connected"]
                    .as_str()
                    .is_some_and(|why| why.contains("not with this team's key"))
            })
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        phone.doc(&later).is_none(),
        "the removed phone got a later document"
    );
    assert_eq!(phone.connected_peers(), 0);
    assert!(
        !any_file_contains(&stranger.data_dir, later.as_bytes()),
        "the stranger holds a later document id"
    );
}
