//! A daemon whose documents live in PostgreSQL (`peerdoc run --store …`), as an operator
//! runs the cloud tier: a device's document reaches it and lands in the database (not
//! in the data directory), survives a restart of the daemon, and while the database is
//! down a write is a clear JSON error, not a hang; once it is back, writes work again
//! without a restart. A real PostgreSQL server the test starts (Unix socket only) and
//! real `peerdoc run` daemons on 127.0.0.1 with mDNS off.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;
#[path = "../../peerdoc-store-postgres/tests/support/pg.rs"]
mod pg;

use daemon::{Daemon, content, eventually, free_port};
use serde_json::json;

#[test]
fn a_daemon_on_postgres_keeps_documents_in_the_database_and_rides_out_an_outage() {
    let Some(pg) = pg::start_or_skip("cloud_postgres") else {
        return;
    };
    pg.create_database("cloud");
    let store = pg.connection_string("cloud");
    let dir = tempfile::tempdir().unwrap();
    let cloud_dir = dir.path().join("cloud");
    let cloud_listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let cloud_args = ["--store", store.as_str()];
    let mut cloud = Daemon::start("cloud", &cloud_dir, &cloud_listen, &cloud_args);
    let tablet = Daemon::start(
        "tablet",
        &dir.path().join("tablet"),
        "/ip4/127.0.0.1/tcp/0",
        &[
            "--peer",
            &cloud.dial_addr(),
            "--set",
            "net.reconnect_cap=1000",
        ],
    );
    let id = tablet
        .client
        .create(json!({"venue": "The Old Mill", "guests": 80}));
    eventually("the cloud to have the document", || content(&cloud, &id));
    assert!(
        cloud
            .log_text()
            .contains("documents are kept in PostgreSQL")
    );

    // In the database, not in the data directory.
    assert!(!cloud_dir.join("store").exists());
    let rows: u64 = pg
        .sql("cloud", "SELECT count(*) FROM peerdoc.peerdoc_entries")
        .trim()
        .parse()
        .unwrap();
    assert!(rows >= 2, "{rows} rows");

    // A restart reads it back from the database.
    assert!(cloud.sigterm().success());
    let cloud = Daemon::start("cloud", &cloud_dir, &cloud_listen, &cloud_args);
    assert_eq!(content(&cloud, &id).unwrap()["guests"], 80);

    // The database goes away: a write is an error the caller can read, promptly.
    pg.stop();
    let edit = json!({"ops": [{"op": "set", "path": "/guests", "value": 95}]});
    let failed = cloud.client.patch(&format!("/v1/docs/{id}"), &edit);
    assert!(failed.status >= 500, "{}", failed.status);
    let body = failed.json();
    assert!(
        body["code"].is_string() && body["message"].is_string(),
        "{body}"
    );
    let status = cloud.status();
    assert!(
        status["store_problem"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("database unreachable")),
        "{status}"
    );

    // Back: writes work again with no restart, and the tablet gets them.
    pg.start_server();
    eventually("a write to succeed again", || {
        (cloud.client.patch(&format!("/v1/docs/{id}"), &edit).status == 200).then_some(())
    });
    eventually("the tablet to have the edit", || {
        (content(&tablet, &id)?["guests"] == 95).then_some(())
    });
}
