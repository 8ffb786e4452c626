//! Teams through real `peerdoc run` processes on 127.0.0.1 (mDNS off), as a coordinator
//! would use them: closed by default, a team created on one device, others brought in
//! with invite codes, names everywhere, viewers that cannot write, revocation.
//!
//! Timeouts are hang guards only; "never arrives" is checked over a few seconds after a
//! later change that did arrive, so it cannot pass by being early.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;

use std::path::Path;
use std::time::Duration;

use daemon::{Daemon, content, eventually};
use serde_json::{Value, json};

fn start(name: &'static str, dir: &Path, extra: &[&str]) -> Daemon {
    Daemon::start_in_team_mode(name, &dir.join(name), "/ip4/127.0.0.1/tcp/0", extra)
}

fn connected_peers(daemon: &Daemon) -> Vec<Value> {
    daemon
        .client
        .get("/v1/peers")
        .ok(200)
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["connected"] == true)
        .collect()
}

/// Makes an invite on `admin` and returns its code.
fn invite(admin: &Daemon, role: &str, name: &str) -> String {
    let invite = admin
        .client
        .post("/v1/team/invites", &json!({"role": role, "name": name}))
        .ok(201);
    invite["code"].as_str().expect("code").to_owned()
}

fn join(daemon: &Daemon, code: &str) -> Value {
    daemon
        .client
        .post("/v1/team/join", &json!({"code": code}))
        .ok(200)
}

fn edit(daemon: &Daemon, id: &str, path: &str, value: Value) -> http::Answer {
    daemon.client.patch(
        &format!("/v1/docs/{id}"),
        &json!({"ops": [{"op": "set", "path": path, "value": value}]}),
    )
}

/// Waits until every daemon reads `value` at `path`.
fn everyone_reads(daemons: &[&Daemon], id: &str, path: &str, value: &Value) {
    for daemon in daemons {
        eventually(&format!("{} reads {path} = {value}", daemon.name), || {
            content(daemon, id)
                .filter(|c| c.pointer(path) == Some(value))
                .map(drop)
        });
    }
}

#[test]
fn a_fresh_daemon_is_in_no_team_and_syncs_with_nobody() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start("A", dir.path(), &[]);
    let b = start("B", dir.path(), &["--peer", &a.dial_addr()]);
    let id = a.client.create(json!({"seating": "table 4: Ana"}));
    let team = b.client.get("/v1/team").ok(200);
    assert_eq!(team["state"], "none");
    let summary = team["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("peerdoc team create") && summary.contains("peerdoc team join"));
    assert_eq!(b.status()["team"]["state"], "none");
    // B keeps dialing A's address; nothing may come through, for a while.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        content(&b, &id).is_none(),
        "a device in no team received a document"
    );
    assert!(connected_peers(&a).is_empty() && connected_peers(&b).is_empty());
    // Team commands that need a team say so.
    b.client
        .post("/v1/team/invites", &json!({}))
        .assert_error(409, "not_in_team");
}

#[test]
fn a_team_forms_by_invite_code_with_names_roles_and_revocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start("A", dir.path(), &[]);
    let b = start("B", dir.path(), &[]);
    let c = start("C", dir.path(), &[]);

    let created = a
        .client
        .post(
            "/v1/team",
            &json!({"name": "Hill Barn crew", "device_name": "Planner laptop"}),
        )
        .ok(201);
    assert_eq!(created["state"], "member");
    assert_eq!(created["me"]["role"], "admin");

    // B joins as an editor with no address but the one in the code.
    let joined = join(&b, &invite(&a, "editor", "Sam's tablet"));
    assert_eq!(joined["name"], "Hill Barn crew");
    assert_eq!(joined["me"]["name"], "Sam's tablet");
    assert_eq!(joined["me"]["role"], "editor");
    // C joins as a viewer.
    let joined = join(&c, &invite(&a, "viewer", "Florist phone"));
    assert_eq!(joined["me"]["role"], "viewer");

    let id = a.client.create(json!({"firstDance": "21:00"}));
    everyone_reads(&[&b, &c], &id, "/firstDance", &json!("21:00"));
    assert_eq!(edit(&b, &id, "/firstDance", json!("21:15")).status, 200);
    everyone_reads(&[&a, &c], &id, "/firstDance", &json!("21:15"));

    // Names everywhere: members, peers, history.
    for daemon in [&a, &b, &c] {
        let members = eventually(&format!("{} knows 3 members", daemon.name), || {
            let team = daemon.client.get("/v1/team").ok(200);
            let members = team["members"].as_array().cloned().unwrap_or_default();
            (members.len() == 3).then_some(members)
        });
        let mut names: Vec<&str> = members.iter().filter_map(|m| m["name"].as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["Florist phone", "Planner laptop", "Sam's tablet"]);
    }
    let peers = a.client.get("/v1/peers").ok(200);
    let named: Vec<&str> = peers
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(named.contains(&"Sam's tablet"), "{peers}");
    let history = a.client.get(&format!("/v1/docs/{id}/history")).ok(200);
    let authors: Vec<&str> = history
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["device"].as_str())
        .collect();
    assert_eq!(authors, ["Planner laptop", "Sam's tablet"], "{history}");

    // A viewer's API refuses writes.
    edit(&c, &id, "/firstDance", json!("23:59")).assert_error(403, "read_only");
    c.client
        .post("/v1/docs", &json!({"content": {}}))
        .assert_error(403, "read_only");

    // Revoke B: it is told, its edits reach nobody, it cannot reconnect, and A and C
    // keep syncing.
    let b_id = b.status()["peer_id"].as_str().expect("peer id").to_owned();
    let revoked = a
        .client
        .delete(&format!("/v1/team/members/{}", "Sam%27s%20tablet"))
        .ok(200);
    let b_entry = revoked["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["device"] == b_id.as_str())
        .cloned()
        .expect("B listed");
    assert_eq!(b_entry["revoked"]["by"], "Planner laptop");
    eventually("B learns it was removed", || {
        (b.client.get("/v1/team").ok(200)["state"] == "removed").then_some(())
    });
    edit(&b, &id, "/firstDance", json!("22:00")).assert_error(403, "read_only");
    eventually("B is disconnected from A", || {
        connected_peers(&a)
            .iter()
            .all(|p| p["peer_id"] != b_id.as_str())
            .then_some(())
    });
    assert_eq!(edit(&a, &id, "/cake", json!("lemon")).status, 200);
    everyone_reads(&[&c], &id, "/cake", &json!("lemon"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        content(&b, &id).is_some_and(|c| c.get("cake").is_none()),
        "a revoked device still receives changes"
    );
    assert!(
        connected_peers(&a)
            .iter()
            .all(|p| p["peer_id"] != b_id.as_str())
    );
}

/// A viewer's device that writes anyway (here: restarted with the team's key file and
/// no team rules, a stand-in for a modified app) gets its changes refused by every
/// member it syncs with, so they never reach anyone.
#[test]
fn a_viewer_that_writes_anyway_is_refused_by_every_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start("A", dir.path(), &[]);
    let b = start("B", dir.path(), &[]);
    let mut v = start("V", dir.path(), &[]);
    a.client
        .post(
            "/v1/team",
            &json!({"name": "Crew", "device_name": "Planner"}),
        )
        .ok(201);
    join(&b, &invite(&a, "editor", "Assistant"));
    join(&v, &invite(&a, "viewer", "Vendor"));
    let id = a.client.create(json!({"menu": "fish"}));
    everyone_reads(&[&b, &v], &id, "/menu", &json!("fish"));

    // Restart V outside the team rules, with the team's transport key.
    let team_file: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("V/team.json")).expect("team.json"),
    )
    .expect("team.json is JSON");
    let key = team_file["team"]["transport_key"]
        .as_str()
        .expect("transport key")
        .to_owned();
    let key_file = dir.path().join("team.key");
    std::fs::write(&key_file, key).expect("key file");
    assert!(v.sigterm().success());
    let v = start(
        "V",
        dir.path(),
        &[
            "--team-key-file",
            key_file.to_str().expect("utf-8 path"),
            "--peer",
            &a.dial_addr(),
        ],
    );
    eventually("V reconnects to A", || {
        (!connected_peers(&v).is_empty()).then_some(())
    });
    assert_eq!(edit(&v, &id, "/menu", json!("poison")).status, 200);
    // A later change from an editor arrives at V, so V's has had every chance to travel.
    assert_eq!(edit(&b, &id, "/dessert", json!("cake")).status, 200);
    everyone_reads(&[&a, &v], &id, "/dessert", &json!("cake"));
    std::thread::sleep(Duration::from_secs(2));
    for daemon in [&a, &b] {
        assert_eq!(
            content(daemon, &id).expect("document")["menu"],
            "fish",
            "{} applied a viewer's change",
            daemon.name
        );
    }
}

#[test]
fn used_expired_and_unknown_invites_are_refused_in_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start("A", dir.path(), &[]);
    let b = start("B", dir.path(), &[]);
    let c = start("C", dir.path(), &[]);
    a.client.post("/v1/team", &json!({"name": "Crew"})).ok(201);
    let code = invite(&a, "editor", "Tablet");
    join(&b, &code);
    // The same single-use code again, from another device.
    let used = c.client.post("/v1/team/join", &json!({"code": code}));
    used.assert_error(403, "invite_refused");
    assert!(
        used.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("used")
    );

    let expiring = a
        .client
        .post("/v1/team/invites", &json!({"expires_in_secs": 1}))
        .ok(201);
    std::thread::sleep(Duration::from_millis(1500));
    let expired = c.client.post(
        "/v1/team/join",
        &json!({"code": expiring["code"].as_str().expect("code")}),
    );
    expired.assert_error(403, "invite_refused");
    assert!(
        expired.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired")
    );

    // Peers added by address at run time: words for a bad address, remembered in the
    // team file, removable.
    let bad = b
        .client
        .post("/v1/peers", &json!({"addr": "127.0.0.1:notaport"}));
    bad.assert_error(400, "bad_request");
    assert!(
        bad.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1:notaport")
    );
    let added = b
        .client
        .post("/v1/peers", &json!({"addr": "127.0.0.1:4999"}))
        .ok(201);
    assert_eq!(added["addr"], "/ip4/127.0.0.1/tcp/4999");
    assert_eq!(added["remembered"], true);
    let file = std::fs::read_to_string(dir.path().join("B/team.json")).expect("team.json");
    assert!(file.contains("/ip4/127.0.0.1/tcp/4999"));
    assert_eq!(
        b.client
            .send_json(
                "DELETE",
                "/v1/peers",
                &json!({"addr": "/ip4/127.0.0.1/tcp/4999"})
            )
            .status,
        204
    );
    b.client
        .send_json(
            "DELETE",
            "/v1/peers",
            &json!({"addr": "/ip4/127.0.0.1/tcp/4999"}),
        )
        .assert_error(404, "not_found");

    // A device in no team given a member's address: it cannot connect, and says why
    // in words (API and `peerdoc peers`).
    c.client
        .post("/v1/peers", &json!({"addr": a.dial_addr()}))
        .ok(201);
    let why = eventually("C says why it is not connected to A", || {
        let peers = c.client.get("/v1/peers").ok(200);
        peers.as_array()?.iter().find_map(|p| {
            if p["connected"] == false {
                p["not_connected"].as_str().map(str::to_owned)
            } else {
                None
            }
        })
    });
    assert!(why.contains("in no team yet"), "{why}");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_peerdoc"))
        .arg("--data-dir")
        .arg(dir.path().join("C"))
        .arg("peers")
        .output()
        .expect("peerdoc peers");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains("none: it is not a member of this device's team"),
        "{table}"
    );

    // A typo is caught by the checksum before anything is dialed.
    let mut typo = code.clone();
    let last = typo.pop().expect("a character");
    typo.push(if last == '0' { '1' } else { '0' });
    c.client
        .post("/v1/team/join", &json!({"code": typo}))
        .assert_error(400, "bad_invite_code");
    assert_eq!(c.client.get("/v1/team").ok(200)["state"], "none");
}

/// The CLI a coordinator types: `team create`, `team invite --code-only`, `team join`,
/// `team members`, `status`.
#[test]
fn the_cli_forms_a_team() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start("A", dir.path(), &[]);
    let b = start("B", dir.path(), &[]);
    let cli = |name: &str, args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_peerdoc"))
            .arg("--data-dir")
            .arg(dir.path().join(name))
            .args(args)
            .output()
            .expect("run peerdoc");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{args:?}: {stderr}");
        stdout
    };
    let status = cli("A", &["status"]);
    assert!(status.contains("not in a team yet"), "{status}");
    let created = cli(
        "A",
        &[
            "team",
            "create",
            "--name",
            "Hill Barn crew",
            "--device-name",
            "Planner laptop",
        ],
    );
    assert!(
        created.contains("created team \"Hill Barn crew\""),
        "{created}"
    );
    let code = cli(
        "A",
        &["team", "invite", "--name", "Sam's tablet", "--code-only"],
    );
    let joined = cli("B", &["team", "join", code.trim()]);
    assert!(
        joined.contains("joined team \"Hill Barn crew\" as \"Sam's tablet\" (editor)"),
        "{joined}"
    );
    let members = eventually("A sees B connected", || {
        let members = cli("A", &["team", "members"]);
        members
            .lines()
            .any(|l| l.starts_with("Sam's tablet") && l.contains("connected"))
            .then_some(members)
    });
    assert!(
        members.contains("Planner laptop  admin   this device"),
        "{members}"
    );
    let status = cli("B", &["status"]);
    assert!(
        status.contains("\"Sam's tablet\" is an editor of team \"Hill Barn crew\""),
        "{status}"
    );
    drop((a, b));
}

fn team_file(dir: &Path, name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir.join(name).join("team.json")).expect("team.json"),
    )
    .expect("team.json is JSON")
}

/// How many transport keys a device holds, and for which epochs.
fn key_epochs(dir: &Path, name: &str) -> Vec<String> {
    team_file(dir, name)["team"]["keys"]
        .as_object()
        .map(|keys| keys.keys().cloned().collect())
        .unwrap_or_default()
}

/// Revoking a device rotates the team key: the remaining members get the new key
/// (sealed to each of them), the removed device never does; a member that was away
/// during the removal reconnects with the old key during the grace period, learns the
/// new one, and syncs.
#[test]
fn revoking_rotates_the_team_key_and_an_absent_member_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start("A", dir.path(), &[]);
    let b = start("B", dir.path(), &[]);
    let mut d = start("D", dir.path(), &[]);
    a.client
        .post(
            "/v1/team",
            &json!({"name": "Crew", "device_name": "Planner"}),
        )
        .ok(201);
    join(&b, &invite(&a, "editor", "Lost tablet"));
    join(&d, &invite(&a, "editor", "Photographer"));
    let id = a.client.create(json!({"shots": 1}));
    everyone_reads(&[&b, &d], &id, "/shots", &json!(1));

    // The photographer's phone is away while the tablet is removed.
    assert!(d.sigterm().success());
    a.client.delete("/v1/team/members/Lost%20tablet").ok(200);
    eventually("A holds the epoch-1 key", || {
        key_epochs(dir.path(), "A")
            .contains(&"1".to_owned())
            .then_some(())
    });
    eventually("B learns it was removed", || {
        (b.client.get("/v1/team").ok(200)["state"] == "removed").then_some(())
    });
    assert_eq!(
        key_epochs(dir.path(), "B"),
        ["0"],
        "a removed device must not get the new key"
    );
    assert_eq!(edit(&a, &id, "/shots", json!(2)).status, 200);

    // D comes back with only the old key, reaches A within the grace period, learns
    // the new key and the change.
    let d = start("D", dir.path(), &[]);
    everyone_reads(&[&d], &id, "/shots", &json!(2));
    eventually("D holds the epoch-1 key", || {
        key_epochs(dir.path(), "D")
            .contains(&"1".to_owned())
            .then_some(())
    });
    assert!(
        content(&b, &id).is_some_and(|c| c["shots"] == 1),
        "the removed device received a change"
    );
}

fn connected_to(daemon: &Daemon, name: &str) -> bool {
    connected_peers(daemon)
        .iter()
        .any(|p| p["name"] == name && p["sync_stream"] == true)
}

/// mDNS is off and each device was only given the inviter's address: the others are
/// found at the addresses every member publishes in the membership document, also once
/// the inviter is gone, and after a restart on a new port.
#[test]
fn members_find_each_other_at_the_addresses_they_publish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = start("A", dir.path(), &[]);
    let b = start("B", dir.path(), &[]);
    let mut c = start("C", dir.path(), &[]);
    a.client
        .post(
            "/v1/team",
            &json!({"name": "Crew", "device_name": "Planner"}),
        )
        .ok(201);
    join(&b, &invite(&a, "editor", "Tablet"));
    join(&c, &invite(&a, "editor", "Phone"));
    // Only A's address came with the invites; B and C meet through what they published.
    eventually("B and C connected to each other", || {
        (connected_to(&b, "Phone") && connected_to(&c, "Tablet")).then_some(())
    });
    let c_id = c.client.get("/v1/status").ok(200)["peer_id"]
        .as_str()
        .expect("peer id")
        .to_owned();
    let known = team_file(dir.path(), "B")["known_peers"].clone();
    assert!(
        !known.to_string().contains(&c_id),
        "C's address must come from the membership document, not B's own list: {known}"
    );

    // The inviter leaves; the two still sync with each other.
    assert!(a.sigterm().success());
    let id = b.client.create(json!({"cake": "lemon"}));
    everyone_reads(&[&c], &id, "/cake", &json!("lemon"));

    // C restarts on another port: it finds B at the address B published (the stored
    // document; A, the only address it was given, is down), and publishes its new one.
    assert!(c.sigterm().success());
    let c = start("C", dir.path(), &[]);
    eventually("C back with B", || {
        (connected_to(&b, "Phone") && connected_to(&c, "Tablet")).then_some(())
    });
    assert_eq!(edit(&c, &id, "/cake", json!("carrot")).status, 200);
    everyone_reads(&[&b], &id, "/cake", &json!("carrot"));
}

/// An invite made on any admin carries the hub's addresses: the newcomer remembers them
/// and reaches the hub once the inviting device is gone.
#[test]
fn an_invite_names_the_team_s_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = start("A", dir.path(), &[]);
    let hub = start("H", dir.path(), &["--hub"]);
    a.client
        .post(
            "/v1/team",
            &json!({"name": "Crew", "device_name": "Planner"}),
        )
        .ok(201);
    join(&hub, &invite(&a, "editor", "Office laptop"));
    let hub_id = hub.client.get("/v1/status").ok(200)["peer_id"]
        .as_str()
        .expect("peer id")
        .to_owned();
    // A holds the hub's address record once the membership document synced.
    let team_doc = a
        .client
        .get("/v1/docs?system=true")
        .ok(200)
        .as_array()
        .expect("docs")
        .iter()
        .find(|d| {
            d["title"]
                .as_str()
                .is_some_and(|t| t.contains("membership"))
        })
        .and_then(|d| d["id"].as_str().map(str::to_owned))
        .expect("the membership document");
    eventually("A to hold the hub's address record", || {
        content(&a, &team_doc)?
            .get(format!("addrs:{hub_id}"))
            .map(drop)
    });
    let id = a.client.create(json!({"menu": "fish"}));
    everyone_reads(&[&hub], &id, "/menu", &json!("fish"));
    let n = start("N", dir.path(), &[]);
    join(&n, &invite(&a, "editor", "Newcomer"));
    let known = team_file(dir.path(), "N")["known_peers"].to_string();
    assert!(
        known.contains(&hub_id),
        "the invite did not carry the hub: {known}"
    );
    assert!(a.sigterm().success());
    everyone_reads(&[&n], &id, "/menu", &json!("fish"));
    assert_eq!(edit(&n, &id, "/menu", json!("lamb")).status, 200);
    everyone_reads(&[&hub], &id, "/menu", &json!("lamb"));
}
