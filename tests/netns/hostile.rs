//! Venue Wi-Fi that fights back, on the namespace LAN: multicast blocked for every host,
//! and client isolation with one host that is not isolated. The devices find each other
//! at the addresses members publish in the membership document (`docs/teams.md`), and
//! an isolated device syncs through the one every device can reach.

use serde_json::{Value, json};

use crate::GUARD;
use crate::daemon::{Daemon, DaemonOptions, eventually};
use crate::lan::Lan;

fn code(admin: &Daemon, name: &str) -> String {
    let invite = admin
        .cli(&["team", "invite", "--role", "editor", "--name", name])
        .unwrap_or_else(|e| panic!("{e}"));
    invite["code"].as_str().expect("code").to_owned()
}

/// Starts a daemon on each of hosts `1..=n`, creates the team on host 1 and brings every
/// other host in with its own invite code.
fn team(lan: &Lan, dir: &std::path::Path, n: usize, hub: bool) -> Vec<Daemon> {
    let daemons: Vec<Daemon> = (1..=n)
        .map(|i| {
            // Host 1, the inviter, runs with `--hub` when asked.
            let options = DaemonOptions {
                settings: if hub && i == 1 {
                    vec!["team.hub=true".into()]
                } else {
                    Vec::new()
                },
                ..DaemonOptions::default()
            };
            Daemon::start(lan.host(i), &dir.join(format!("host{i}")), &options)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    daemons[0]
        .cli(&["team", "create", "--name", "Crew", "--device-name", "host1"])
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, d) in daemons.iter().enumerate().skip(1) {
        let name = format!("host{}", i + 1);
        d.cli(&["team", "join", &code(&daemons[0], &name)])
            .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    }
    daemons
}

fn reads(d: &Daemon, id: &str, path: &str, value: &Value) {
    eventually(
        &format!("{} reads {path} = {value}", d.host.ns),
        GUARD,
        || {
            d.doc(id)
                .filter(|doc| doc.pointer(path) == Some(value))
                .map(drop)
        },
    );
}

#[test]
fn five_hosts_without_multicast_each_given_one_code_converge_across_a_cut() {
    if crate::skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let lan = Lan::new(5).expect("build the LAN");
    for i in 1..=5 {
        lan.nomcast(i).expect("block multicast");
    }
    let hosts = team(&lan, tmp.path(), 5, false);
    // Each knows only host 1's address from its code; every pair meets anyway.
    for d in &hosts {
        eventually(
            &format!("{} connected to the 4 others", d.host.ns),
            GUARD,
            || (d.connected_peers() == 4).then_some(()),
        );
    }
    let id = hosts[1]
        .create(&json!({"cake": "lemon"}))
        .unwrap_or_else(|e| panic!("{e}"));
    for d in &hosts {
        reads(d, &id, "/cake", &json!("lemon"));
    }
    // The inviter drops off the Wi-Fi; the others still sync with each other.
    lan.cut(1).expect("cut host 1");
    hosts[2]
        .set(&id, "/cake", &json!("carrot"))
        .unwrap_or_else(|e| panic!("{e}"));
    for d in &hosts[1..] {
        reads(d, &id, "/cake", &json!("carrot"));
    }
    lan.heal(1).expect("heal host 1");
    reads(&hosts[0], &id, "/cake", &json!("carrot"));
    hosts[0]
        .set(&id, "/band", &json!("The Hay Bales"))
        .unwrap_or_else(|e| panic!("{e}"));
    for d in &hosts {
        reads(d, &id, "/band", &json!("The Hay Bales"));
    }
}

#[test]
fn four_isolated_hosts_sync_through_the_one_that_is_not() {
    if crate::skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let lan = Lan::new(5).expect("build the LAN");
    // Hosts 2–5 are Wi-Fi clients kept apart; host 1 is a laptop on a cable.
    for i in 2..=5 {
        lan.isolate(i).expect("isolate");
    }
    let hosts = team(&lan, tmp.path(), 5, true);
    let id = hosts[1]
        .create(&json!({"firstDance": "21:00"}))
        .unwrap_or_else(|e| panic!("{e}"));
    for d in &hosts {
        reads(d, &id, "/firstDance", &json!("21:00"));
    }
    for (i, d) in hosts.iter().enumerate().skip(1) {
        d.set(&id, &format!("/host{}", i + 1), &json!(true))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for d in &hosts {
        for i in 2..=5 {
            reads(d, &id, &format!("/host{i}"), &json!(true));
        }
    }
    // The isolated hosts reach only the laptop, and say the others sync through it.
    for d in &hosts[1..] {
        assert_eq!(
            d.connected_peers(),
            1,
            "{} sees through the isolation",
            d.host.ns
        );
    }
    eventually("host 3 to name the members behind the hub", GUARD, || {
        let status = hosts[2].cli(&["status"]).ok()?;
        let behind: Vec<&str> = status["peers"]
            .as_array()?
            .iter()
            .filter(|p| p["via_hub"] == "host1")
            .filter_map(|p| p["name"].as_str())
            .collect();
        let said = status["network"]
            .as_array()?
            .iter()
            .any(|p| p["code"] == "through_hub");
        (behind.len() == 3 && said).then_some(())
    });
}
