//! Two cloud daemons on one PostgreSQL database (`peerdoc run --store …` twice), as an
//! operator scales the cloud tier: a device on one node sees what is written through
//! the other within the poll of this test (the nodes hear each other's commits through
//! `LISTEN/NOTIFY`, not by polling), and when one node is killed with SIGKILL while a
//! device uploads, the device finishes through the other and nothing it wrote is
//! missing from the database. A real PostgreSQL server the test starts (Unix socket
//! only) and real `peerdoc run` daemons on 127.0.0.1 with mDNS off.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;
#[path = "../../peerdoc-store-postgres/tests/support/pg.rs"]
mod pg;

use std::path::Path;

use daemon::{Daemon, content, eventually, free_port};
use serde_json::{Value, json};

fn cloud(name: &'static str, dir: &Path, store: &str) -> Daemon {
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    Daemon::start(name, &dir.join(name), &listen, &["--store", store])
}

fn device(name: &'static str, dir: &Path, clouds: &[&Daemon]) -> Daemon {
    let mut args = vec!["--set".to_string(), "net.reconnect_cap=1000".to_string()];
    for cloud in clouds {
        args.push("--peer".into());
        args.push(cloud.dial_addr());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(name, &dir.join(name), "/ip4/127.0.0.1/tcp/0", &args)
}

fn set(daemon: &Daemon, id: &str, path: &str, value: Value) {
    let edit = json!({"ops": [{"op": "set", "path": path, "value": value}]});
    let answer = daemon.client.patch(&format!("/v1/docs/{id}"), &edit);
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[test]
fn an_edit_through_one_cloud_node_reaches_the_devices_of_the_other() {
    let Some(pg) = pg::start_or_skip("cloud_nodes") else {
        return;
    };
    pg.create_database("cloud");
    let store = pg.connection_string("cloud");
    let dir = tempfile::tempdir().unwrap();
    let node1 = cloud("cloud-1", dir.path(), &store);
    let node2 = cloud("cloud-2", dir.path(), &store);
    for node in [&node1, &node2] {
        eventually("the node to listen for the other's changes", || {
            node.log_text()
                .contains("listening for other cloud nodes' changes")
                .then_some(())
        });
    }
    let coordinator = device("coordinator", dir.path(), &[&node1]);
    let assistant = device("assistant", dir.path(), &[&node2]);
    let vendor = device("vendor", dir.path(), &[&node2]);

    // Created on a device of node 1: the devices of node 2 get it.
    let id = coordinator
        .client
        .create(json!({"venue": "The Old Mill", "guests": 80}));
    for other in [&assistant, &vendor] {
        eventually("a device of node 2 to have the document", || {
            content(other, &id)
        });
    }

    // One edit through node 1's own API: seen on a device of node 2.
    set(&node1, &id, "/guests", json!(95));
    eventually("the assistant to see the edit made through node 1", || {
        (content(&assistant, &id)?["guests"] == 95).then_some(())
    });

    // How long it takes (printed, not asserted: a figure for docs/cloud.md).
    let mut waits = Vec::new();
    for round in 0..20 {
        let started = std::time::Instant::now();
        set(&node1, &id, "/round", json!(round));
        eventually("the assistant to see each edit", || {
            (content(&assistant, &id)?["round"] == round).then_some(())
        });
        waits.push(started.elapsed());
    }
    waits.sort();
    eprintln!(
        "edit through node 1 -> visible on a device of node 2 (API poll every 100 ms): \
         median {:?}, max {:?} over {} edits",
        waits[waits.len() / 2],
        waits[waits.len() - 1],
        waits.len()
    );

    // And the other way: a vendor's edit on node 2 reaches the coordinator on node 1.
    set(&vendor, &id, "/caterer", json!("Rosa's"));
    eventually("the coordinator to see the vendor's edit", || {
        (content(&coordinator, &id)?["caterer"] == "Rosa's").then_some(())
    });
    // Both nodes end on the same document, and no node wrote the other's change back
    // (no echo): node 2 held no unsaved change when node 1's arrived.
    let one = content(&node1, &id).unwrap();
    assert_eq!(one, content(&node2, &id).unwrap());
    assert_eq!(
        one,
        json!({"venue": "The Old Mill", "guests": 95, "caterer": "Rosa's", "round": 19})
    );
}

/// A TCP load balancer in front of the cloud nodes, as an operator puts one: each
/// connection goes to the first backend that accepts it, and the bytes are piped both
/// ways. Runs until the test process ends.
fn load_balancer(backends: Vec<u16>) -> u16 {
    use std::io::copy;
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the balancer");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Some(server) = backends
                .iter()
                .find_map(|port| TcpStream::connect(("127.0.0.1", *port)).ok())
            else {
                continue;
            };
            let (mut client_in, mut server_in) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut client_out, mut server_out) = (client, server);
            std::thread::spawn(move || {
                let _ = copy(&mut client_in, &mut server_out);
                let _ = server_out.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let _ = copy(&mut server_in, &mut client_out);
                let _ = client_out.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn a_device_finishes_its_upload_through_the_other_node_when_one_is_killed() {
    let Some(pg) = pg::start_or_skip("cloud_nodes_kill") else {
        return;
    };
    pg.create_database("cloud");
    let store = pg.connection_string("cloud");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("team.key");
    std::fs::write(&key_file, "5e".repeat(32)).expect("team key");
    let key = key_file.to_str().expect("utf-8 path");
    let cloud_node = |name: &'static str, port: u16| {
        Daemon::start(
            name,
            &dir.path().join(name),
            &format!("/ip4/127.0.0.1/tcp/{port}"),
            &[
                "--profile",
                "cloud",
                "--team-key-file",
                key,
                "--store",
                &store,
            ],
        )
    };
    let (port1, port2) = (free_port(), free_port());
    let mut node1 = cloud_node("cloud-1", port1);
    let node2 = cloud_node("cloud-2", port2);
    // One address for the cloud, no peer id in it: whichever node answers serves.
    let balancer = format!("/ip4/127.0.0.1/tcp/{}", load_balancer(vec![port1, port2]));
    let tablet = Daemon::start(
        "tablet",
        &dir.path().join("tablet"),
        "/ip4/127.0.0.1/tcp/0",
        &[
            "--cloud",
            &balancer,
            "--team-key-file",
            key,
            "--set",
            "net.reconnect_cap=1000",
        ],
    );

    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(tablet.client.create(json!({"table": i, "seats": 8})));
        if i == 15 {
            eventually("the tablet to upload through node 1", || {
                content(&node1, &ids[0])
            });
            // SIGKILL: no goodbye, nothing beyond what PostgreSQL committed.
            node1.child.kill().expect("kill node 1");
            node1.wait();
        }
    }
    for id in &ids {
        eventually("node 2 to hold every document", || content(&node2, id));
    }
    eventually("the tablet to be safe to wipe, through node 2", || {
        (tablet.status()["receipts"]["safe_to_wipe"] == true).then_some(())
    });
    // In the database: a third node started afterwards serves every one of them.
    let node3 = cloud_node("cloud-3", free_port());
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            content(&node3, id).expect("in the database")["table"],
            i,
            "document {id}"
        );
    }
}

#[test]
fn receipts_come_only_for_what_the_database_committed() {
    let Some(pg) = pg::start_or_skip("cloud_nodes_receipts") else {
        return;
    };
    pg.create_database("cloud");
    let store = pg.connection_string("cloud");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("team.key");
    std::fs::write(&key_file, "5e".repeat(32)).expect("team key");
    let key = key_file.to_str().expect("utf-8 path");
    let cloud_node = |name: &'static str| {
        let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
        Daemon::start(
            name,
            &dir.path().join(name),
            &listen,
            &[
                "--profile",
                "cloud",
                "--team-key-file",
                key,
                "--store",
                &store,
            ],
        )
    };
    let node1 = cloud_node("cloud-1");
    let node2 = cloud_node("cloud-2");
    let (addr1, addr2) = (node1.dial_addr(), node2.dial_addr());
    let tablet = Daemon::start(
        "tablet",
        &dir.path().join("tablet"),
        "/ip4/127.0.0.1/tcp/0",
        &[
            "--cloud",
            &addr1,
            "--cloud",
            &addr2,
            "--team-key-file",
            key,
            "--set",
            "net.reconnect_cap=1000",
        ],
    );
    let ids: Vec<String> = (0..3)
        .map(|i| tablet.client.create(json!({"table": i})))
        .collect();
    let receipts = eventually("the tablet to be safe to wipe", || {
        let receipts = tablet.status()["receipts"].clone();
        (receipts["safe_to_wipe"] == true).then_some(receipts)
    });
    // On PostgreSQL a cloud confirms with `power` durability: COMMIT waited for the
    // WAL flush.
    assert_eq!(receipts["confirmed_power_safe"], 3, "{receipts}");

    // The database goes away mid-sync: the tablet keeps working, and nothing it writes
    // now is confirmed, however long it waits.
    pg.stop();
    set(&tablet, &ids[0], "/seats", json!(10));
    let receipts = eventually("the tablet to see its edit unconfirmed", || {
        let receipts = tablet.status()["receipts"].clone();
        (receipts["safe_to_wipe"] == false).then_some(receipts)
    });
    assert_eq!(receipts["unconfirmed"], 1, "{receipts}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        tablet.status()["receipts"]["safe_to_wipe"],
        false,
        "no receipt while the database is down"
    );

    // Back: the edit is committed, then confirmed; a node started now reads it.
    pg.start_server();
    eventually("the tablet to be safe to wipe again", || {
        (tablet.status()["receipts"]["safe_to_wipe"] == true).then_some(())
    });
    drop((node1, node2));
    let node3 = cloud_node("cloud-3");
    assert_eq!(
        content(&node3, &ids[0]).expect("in the database")["seats"],
        10
    );
}

#[test]
fn two_teams_on_one_database_never_see_each_other() {
    let Some(pg) = pg::start_or_skip("cloud_nodes_teams") else {
        return;
    };
    pg.create_database("cloud");
    let store = pg.connection_string("cloud");
    let dir = tempfile::tempdir().unwrap();
    let team = |name: &'static str, byte: &str| {
        let key_file = dir.path().join(format!("{name}.key"));
        std::fs::write(&key_file, byte.repeat(32)).expect("team key");
        let key = key_file.to_str().expect("utf-8 path").to_owned();
        let schema = format!("storage.schema=\"{name}\"");
        let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
        let cloud = Daemon::start(
            name,
            &dir.path().join(format!("{name}-cloud")),
            &listen,
            &[
                "--profile",
                "cloud",
                "--team-key-file",
                &key,
                "--store",
                &store,
                "--set",
                &schema,
            ],
        );
        let tablet = Daemon::start(
            name,
            &dir.path().join(format!("{name}-tablet")),
            "/ip4/127.0.0.1/tcp/0",
            &[
                "--cloud",
                &cloud.dial_addr(),
                "--team-key-file",
                &key,
                "--set",
                "net.reconnect_cap=1000",
            ],
        );
        (cloud, tablet)
    };
    let (wedding_cloud, wedding) = team("team_wedding", "a1");
    let (gala_cloud, gala) = team("team_gala", "b2");
    let wedding_doc = wedding.client.create(json!({"couple": "Ada & Grace"}));
    let gala_doc = gala.client.create(json!({"sponsor": "Initech"}));
    eventually("each cloud to hold its team's document", || {
        (content(&wedding_cloud, &wedding_doc).is_some()
            && content(&gala_cloud, &gala_doc).is_some())
        .then_some(())
    });
    // An edit on each side, to let any crossing notice be heard.
    set(&wedding, &wedding_doc, "/guests", json!(80));
    set(&gala, &gala_doc, "/guests", json!(300));
    eventually("the edits to reach the clouds", || {
        (content(&wedding_cloud, &wedding_doc)?["guests"] == 80
            && content(&gala_cloud, &gala_doc)?["guests"] == 300)
            .then_some(())
    });
    for (daemon, other) in [
        (&wedding_cloud, &gala_doc),
        (&wedding, &gala_doc),
        (&gala_cloud, &wedding_doc),
        (&gala, &wedding_doc),
    ] {
        assert_eq!(
            daemon.client.get(&format!("/v1/docs/{other}")).status,
            404,
            "{} must not know the other team's document",
            daemon.name
        );
        let listed = daemon.client.get("/v1/docs").ok(200).to_string();
        assert!(
            !listed.contains(other.as_str()),
            "{}: {listed}",
            daemon.name
        );
    }
    // In the database, each team's schema holds its own document only.
    for (schema, ours, theirs) in [
        ("team_wedding", &wedding_doc, &gala_doc),
        ("team_gala", &gala_doc, &wedding_doc),
    ] {
        let keys = pg.sql(
            "cloud",
            &format!("SELECT encode(key, 'escape') FROM {schema}.peerdoc_entries"),
        );
        assert!(keys.contains(ours.as_str()), "{schema}: {keys}");
        assert!(!keys.contains(theirs.as_str()), "{schema}: {keys}");
    }
}
