//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by `.ci/setup`), driven through WebDriver (`support/webdriver.rs`), against
//! two daemons of one team on loopback with mDNS off. The tests read what the page shows
//! (text, elements), never pixels, and check every change through the API of both
//! daemons.
//!
//! Outside CI a missing browser prints `skipping: …` and the test passes; with `CI=true`
//! it fails. `DASHBOARD_SCREENSHOTS=DIR` saves a screenshot of each page there
//! (`docs/dashboard/` holds the committed ones).

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;
// For `skip_or_fail`, the one rule every prerequisite follows (fails with CI=true).
#[path = "support/interop.rs"]
mod interop;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::Command;

use daemon::{Daemon, eventually};
use serde_json::{Value, json};
use webdriver::Browser;

fn browser() -> Option<Browser> {
    match webdriver::available() {
        Ok(()) => Some(Browser::start()),
        Err(why) => {
            interop::skip_or_fail(&why);
            None
        }
    }
}

fn shot(browser: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("DASHBOARD_SCREENSHOTS") {
        browser.screenshot(&PathBuf::from(dir).join(format!("{name}.png")));
    }
}

/// `peerdoc open --print` against `daemon`'s data directory: the one-time link.
fn open_link(data_dir: &Path) -> String {
    let home = data_dir.with_extension("home");
    let output = Command::new(env!("CARGO_BIN_EXE_peerdoc"))
        .env_remove("PEERDOC_API_URL")
        .env_remove("PEERDOC_TOKEN")
        .env("HOME", &home)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["open", "--print"])
        .output()
        .expect("peerdoc open");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Fixed listen addresses, so a daemon restarted mid-test is found where it was.
struct Addrs {
    a: String,
    b: String,
}

/// A and B in one team: "Planner laptop" (admin) and "Sam's tablet" (editor).
fn team(dir: &Path) -> (Daemon, Daemon, Addrs) {
    let addrs = Addrs {
        a: format!("/ip4/127.0.0.1/tcp/{}", daemon::free_port()),
        b: format!("/ip4/127.0.0.1/tcp/{}", daemon::free_port()),
    };
    let a = Daemon::start_in_team_mode("A", &dir.join("a"), &addrs.a, &[]);
    let b = Daemon::start_in_team_mode("B", &dir.join("b"), &addrs.b, &[]);
    a.client
        .post(
            "/v1/team",
            &json!({"name": "Hill Barn crew", "device_name": "Planner laptop"}),
        )
        .ok(201);
    let invite = a
        .client
        .post(
            "/v1/team/invites",
            &json!({"role": "editor", "name": "Sam's tablet"}),
        )
        .ok(201);
    b.client
        .post("/v1/team/join", &json!({"code": invite["code"]}))
        .ok(200);
    wait_connected(&[&a, &b]);
    (a, b, addrs)
}

fn wait_connected(daemons: &[&Daemon]) {
    for daemon in daemons {
        eventually("the devices to connect", || {
            let peers = daemon.client.get("/v1/peers").ok(200);
            peers
                .as_array()?
                .iter()
                .any(|p| p["connected"] == true && p["sync_stream"] == true)
                .then_some(())
        });
    }
}

fn set(daemon: &Daemon, id: &str, path: &str, value: Value) {
    daemon
        .client
        .patch(
            &format!("/v1/docs/{id}"),
            &json!({"ops": [{"op": "set", "path": path, "value": value}]}),
        )
        .ok(200);
}

/// The two devices apart, each sets the seating plan's table: when they meet again,
/// both hold the conflict. Returns the daemons, restarted.
fn make_a_conflict(dir: &Path, a: Daemon, b: Daemon, addrs: &Addrs, id: &str) -> (Daemon, Daemon) {
    let (mut a, mut b) = (a, b);
    assert!(a.sigterm().success());
    set(&b, id, "/table", json!("Ben"));
    assert!(b.sigterm().success());
    let a = Daemon::start_in_team_mode("A", &dir.join("a"), &addrs.a, &[]);
    set(&a, id, "/table", json!("Cai"));
    let b = Daemon::start_in_team_mode("B", &dir.join("b"), &addrs.b, &[]);
    wait_connected(&[&a, &b]);
    for daemon in [&a, &b] {
        eventually("the conflict on both devices", || {
            let c = daemon
                .client
                .get(&format!("/v1/docs/{id}/conflicts"))
                .ok(200);
            (!c["current"].as_array()?.is_empty()).then_some(())
        });
    }
    (a, b)
}

fn content(daemon: &Daemon, id: &str) -> Value {
    daemon.client.read(id)["content"].clone()
}

#[test]
fn a_coordinator_signs_in_sees_the_team_settles_a_conflict_and_edits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(browser) = browser() else { return };
    let (a, b, addrs) = team(dir.path());
    // A seating plan on both; then a conflict made on the two of them.
    let created = a
        .client
        .post(
            "/v1/docs",
            &json!({"content": {"table": "Ana", "guests": 80}, "title": "Seating"}),
        )
        .ok(201);
    let id = created["id"].as_str().expect("id").to_owned();
    eventually("B to have the seating plan", || {
        (b.client.get(&format!("/v1/docs/{id}")).status == 200).then_some(())
    });
    let (a, b) = make_a_conflict(dir.path(), a, b, &addrs, &id);

    // Without a session: the sign-in page, saying what to do, and no data.
    browser.goto(&a.client.base);
    let text = browser.wait_for_text("peerdoc open");
    assert!(text.contains("not signed in"), "{text}");
    assert!(!text.contains("Sam's tablet"), "{text}");

    // Signed in by the one-time link: the page, at `/` (no code left in the URL).
    let link = open_link(&dir.path().join("a"));
    assert!(link.contains("/login?code="), "{link}");
    browser.goto(&link);
    let text = browser.wait_for_text("Sam's tablet");
    assert!(text.contains("All synced with 1 device"), "{text}");
    assert!(text.contains("connected over tcp"), "{text}");
    assert_eq!(browser.url(), format!("{}/", a.client.base));
    // The link worked once.
    let again = a.client.get(&link.replace(&a.client.base, ""));
    assert_eq!(again.status, 401);

    // The conflict is settled from the page on A, by keeping B's value.
    browser.click_on("nav button[data-tab=conflicts]");
    browser.wait_for_text("Seating: /table");
    let kept = a.client.get(&format!("/v1/docs/{id}/conflicts")).ok(200)["current"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .find(|v| v["device"] == "Sam's tablet")
        .expect("B's value, by B's name")
        .clone();
    assert_eq!(kept["value"], "Ben");
    let text = browser.wait_for_text("by Sam's tablet");
    assert!(text.contains("by Planner laptop"), "{text}");
    let change = kept["change"].as_str().expect("change");
    browser.click_on(&format!(".value[data-change='{change}'] button.keep"));
    browser.wait_for_text("No open conflicts.");
    for daemon in [&a, &b] {
        eventually("the kept value on both devices", || {
            let open = daemon
                .client
                .get(&format!("/v1/docs/{id}/conflicts"))
                .ok(200);
            (content(daemon, &id)["table"] == kept["value"]
                && open["current"].as_array()?.is_empty()
                && !open["log"].as_array()?.is_empty())
            .then_some(())
        });
    }

    // A field edited from the page reaches the other device.
    browser.click_on("nav button[data-tab=documents]");
    browser.click_on(&format!("li.doc[data-doc='{id}'] button"));
    browser.wait_for_text("History");
    browser.click_on(".leaf[data-path='/guests'] button.edit");
    browser.fill(".leaf[data-path='/guests'] input", "96");
    browser.click_on(".leaf[data-path='/guests'] button.save");
    eventually("the edit on B", || {
        (content(&b, &id)["guests"] == 96).then_some(())
    });
    browser.wait_for_text("edit /guests from the dashboard");
    // The list says who changed it last, by name, on both devices.
    for daemon in [&a, &b] {
        eventually("the last change's author", || {
            let docs = daemon.client.get("/v1/docs").ok(200);
            docs.as_array()?
                .iter()
                .any(|d| d["id"] == id.as_str() && d["last_change_by"] == "Planner laptop")
                .then_some(())
        });
    }
    // The priority, set from the page, is shared: B has it too.
    browser.fill("#meta-priority", "100");
    browser.click_on("#meta-save");
    browser.click_on("#doc-close");
    browser.wait_for_text("by Planner laptop");
    eventually("the priority on B", || {
        let docs = b.client.get("/v1/docs").ok(200);
        docs.as_array()?
            .iter()
            .any(|d| d["id"] == id.as_str() && d["priority"] == 100 && d["title"] == "Seating")
            .then_some(())
    });

    // Another origin cannot write with the browser's session: the cookie is SameSite
    // (a browser does not send it from another site), and the daemon also refuses a
    // cookie-authenticated write whose Origin is not its own. No CORS header lets
    // another origin read.
    let session = browser
        .cookie("peerdoc_session")
        .expect("the session cookie");
    let cookie = format!("peerdoc_session={session}");
    let body = br#"{"ops": [{"op": "set", "path": "/guests", "value": 1}]}"#.to_vec();
    let path = format!("/v1/docs/{id}");
    let anonymous = a.client.with_token(None);
    let forged = anonymous.call_with_headers(
        "PATCH",
        &path,
        &[
            ("cookie", &cookie),
            ("origin", "http://evil.example"),
            ("content-type", "application/json"),
        ],
        body.clone(),
    );
    forged.assert_error(403, "cross_origin");
    let read = anonymous.call_with_headers(
        "GET",
        "/v1/status",
        &[("cookie", &cookie), ("origin", "http://evil.example")],
        Vec::new(),
    );
    // Answered (SameSite keeps a real browser from sending the cookie), but with no
    // CORS header, so a page of that origin could not read it.
    assert_eq!(read.status, 200);
    assert_eq!(read.allow_origin, None);
    let guessed = anonymous.call_with_headers(
        "PATCH",
        &path,
        &[
            ("cookie", "peerdoc_session=0000"),
            ("origin", &a.client.base),
            ("content-type", "application/json"),
        ],
        body.clone(),
    );
    guessed.assert_error(401, "unauthorized");
    // A session cannot mint sign-in links; only the token can.
    anonymous
        .call_with_headers(
            "POST",
            "/v1/session/link",
            &[("cookie", &cookie), ("origin", &a.client.base)],
            Vec::new(),
        )
        .assert_error(403, "cross_origin");
    assert_eq!(content(&a, &id)["guests"], 96);
    // The page's own reads carry the session.
    let status = browser.run_async(
        "const done = arguments[0];
         fetch('/v1/status', {credentials: 'same-origin'}).then(r => done(r.status));",
    );
    assert_eq!(status, 200);

    // Sam's tablet leaves; the seating plan changes on A: the page lists it as what
    // the tablet misses, and the list is gone once the tablet is back and synced.
    browser.click_on("nav button[data-tab=devices]");
    browser.wait_for_text("Everything synced");
    let mut b = b;
    assert!(b.sigterm().success());
    set(&a, &id, "/guests", json!(120));
    // Page text, not elements: the live refresh replaces them at any moment.
    let text = browser.wait_for_text("Missing 1 since it left:");
    assert!(text.contains("Sam's tablet"), "{text}");
    assert!(text.contains("left "), "{text}");
    assert!(text.contains("Seating"), "{text}");
    assert!(!text.contains("Everything synced"), "{text}");
    let peers = a.client.get("/v1/peers").ok(200);
    let away = peers
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["name"] == "Sam's tablet")
        .expect("the departed tablet is listed");
    assert_eq!(away["departed"], true);
    assert_eq!(away["missing_docs"], json!([id]));
    let b = Daemon::start_in_team_mode("B", &dir.path().join("b"), &addrs.b, &[]);
    browser.wait_for_text("Everything synced");
    eventually("the change on the returned tablet", || {
        (content(&b, &id)["guests"] == 120).then_some(())
    });
    let peers = a.client.get("/v1/peers").ok(200);
    let back = &peers.as_array().expect("peers")[0];
    assert_eq!(back["departed"], false);
    assert_eq!(back["missing_docs"], json!([]));
}

#[test]
fn an_admin_invites_renames_and_removes_a_device_from_the_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(browser) = browser() else { return };
    let (a, b, _) = team(dir.path());
    let c = Daemon::start_in_team_mode("C", &dir.path().join("c"), "/ip4/127.0.0.1/tcp/0", &[]);
    browser.goto(&open_link(&dir.path().join("a")));
    browser.wait_for_text("Sam's tablet");

    // Invite from the page: the code (and its QR) appear; the new device joins with it.
    browser.fill("#invite-name", "Florist phone");
    browser.click_on("#invite");
    let code = browser.wait("the invite code", || {
        let text = browser.text_of("#invite-code");
        text.starts_with("PD-").then_some(text)
    });
    assert!(browser.find_all("img.qr").len() == 1);
    c.client
        .post("/v1/team/join", &json!({"code": code}))
        .ok(200);
    browser.wait_for_text("Florist phone");
    let c_id = c.client.get("/v1/status?docs=false").ok(200)["peer_id"]
        .as_str()
        .expect("peer id")
        .to_owned();
    // Both other devices are listed by name, each connected or not.
    let text = browser.wait_for_text("connected over tcp");
    assert!(
        text.contains("Sam's tablet") && text.contains("Florist phone"),
        "{text}"
    );
    shot(&browser, "devices-admin");

    // Rename it from the page: the team (on B too) knows the new name.
    let card = format!("li.device[data-peer='{c_id}']");
    browser.fill(&format!("{card} .controls input"), "Florist's phone");
    browser.click_on(&format!("{card} button.rename"));
    for daemon in [&a, &b] {
        eventually("the new name everywhere", || {
            let team = daemon.client.get("/v1/team").ok(200);
            team["members"]
                .as_array()?
                .iter()
                .any(|m| m["device"] == c_id.as_str() && m["name"] == "Florist's phone")
                .then_some(())
        });
    }
    // Remove it, with a second click to confirm: every member refuses it from then on.
    browser.click_on(&format!("{card} button.remove"));
    let confirm = browser.text_of(&format!("{card} button.confirm-remove"));
    assert!(confirm.contains("Florist's phone"), "{confirm}");
    browser.click_on(&format!("{card} button.confirm-remove"));
    browser.wait_for_text("removed from the team by Planner laptop");
    eventually("C to learn it was removed", || {
        (c.client.get("/v1/team").ok(200)["state"] == "removed").then_some(())
    });
}

/// Joins `daemon` to A's team under `name` with `role`.
fn join(a: &Daemon, daemon: &Daemon, name: &str, role: &str) {
    let invite = a
        .client
        .post("/v1/team/invites", &json!({"role": role, "name": name}))
        .ok(201);
    daemon
        .client
        .post("/v1/team/join", &json!({"code": invite["code"]}))
        .ok(200);
}

/// The scripted scenario behind `docs/dashboard/*.png`: a barn wedding with four
/// devices (and a fifth that left), a few documents, one conflict. It checks what each page shows; with
/// `DASHBOARD_SCREENSHOTS=DIR` it also saves each page.
#[test]
fn a_barn_wedding_on_four_devices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(browser) = browser() else { return };
    let (a, b, addrs) = team(dir.path());
    let docs = [
        (
            "Run of show",
            100,
            json!({"timeline": [
            {"at": "15:00", "what": "Ceremony in the orchard"},
            {"at": "16:30", "what": "Drinks on the lawn"},
            {"at": "18:00", "what": "Dinner in the barn"},
            {"at": "21:00", "what": "First dance"}]}),
        ),
        ("Seating", 50, json!({"table": "Ana", "guests": 96})),
        (
            "Vendors",
            10,
            json!({"florist": {"name": "Wild Stems", "phone": "555-0101"},
            "caterer": {"name": "Hayloft Kitchen", "phone": "555-0144"}}),
        ),
        (
            "Shot list",
            0,
            json!({"shots": ["Rings", "First look", "Family, all sides"]}),
        ),
    ];
    let mut ids = Vec::new();
    for (title, priority, content) in docs {
        let created = a
            .client
            .post(
                "/v1/docs",
                &json!({"content": content, "title": title, "priority": priority}),
            )
            .ok(201);
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    eventually("B to have every document", || {
        ids.iter()
            .all(|id| b.client.get(&format!("/v1/docs/{id}")).status == 200)
            .then_some(())
    });
    let (a, _b) = make_a_conflict(dir.path(), a, b, &addrs, &ids[1]);
    let c = Daemon::start_in_team_mode("C", &dir.path().join("c"), "/ip4/127.0.0.1/tcp/0", &[]);
    let d = Daemon::start_in_team_mode("D", &dir.path().join("d"), "/ip4/127.0.0.1/tcp/0", &[]);
    join(&a, &c, "Florist phone", "viewer");
    join(&a, &d, "Venue office PC", "editor");
    // The photographer's phone syncs, leaves, and misses the new shot list.
    let mut e = Daemon::start_in_team_mode("E", &dir.path().join("e"), "/ip4/127.0.0.1/tcp/0", &[]);
    join(&a, &e, "Photographer phone", "editor");
    // Stopped only once A knows it has everything, so that it misses exactly the
    // change made after.
    eventually("A to know the photographer has everything", || {
        let peers = a.client.get("/v1/peers").ok(200);
        peers
            .as_array()?
            .iter()
            .any(|p| {
                p["name"] == "Photographer phone"
                    && p["connected"] == true
                    && p["missing_docs"] == json!([])
            })
            .then_some(())
    });
    assert!(e.sigterm().success());
    set(&a, &ids[3], "/shots/-", json!("Cake cutting"));
    eventually("A to see three devices", || {
        let peers = a.client.get("/v1/peers").ok(200);
        (peers
            .as_array()?
            .iter()
            .filter(|p| p["connected"] == true)
            .count()
            == 3)
            .then_some(())
    });

    browser.goto(&open_link(&dir.path().join("a")));
    let text = browser.wait_for_text("All synced with 3 devices");
    for name in ["Sam's tablet", "Florist phone", "Venue office PC"] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    let text = browser.wait_for_text("Missing 1 since it left:");
    assert!(text.contains("Photographer phone"), "{text}");
    shot(&browser, "devices");
    // The device that left, with what it misses.
    browser.run_async(
        "const done = arguments[0];
         [...document.querySelectorAll('li.device')]
           .find((li) => li.textContent.includes('Photographer phone'))
           .scrollIntoView({block: 'center'});
         done(true);",
    );
    shot(&browser, "devices-departed");
    browser.click_on("nav button[data-tab=documents]");
    let text = browser.wait_for_text("Shot list");
    for title in ["Run of show", "Seating", "Vendors"] {
        assert!(text.contains(title), "{title} missing:\n{text}");
    }
    shot(&browser, "documents");
    browser.click_on(&format!("li.doc[data-doc='{}'] button", ids[0]));
    let text = browser.wait_for_text("First dance");
    assert!(text.contains("Ceremony in the orchard"), "{text}");
    shot(&browser, "document");
    browser.click_on("nav button[data-tab=conflicts]");
    let text = browser.wait_for_text("Seating: /table");
    assert!(
        text.contains("by Sam's tablet") && text.contains("by Planner laptop"),
        "{text}"
    );
    shot(&browser, "conflicts");
    drop((c, d));
}

#[test]
fn the_banner_says_what_the_cloud_does_not_have_yet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(browser) = browser() else { return };
    // A cloud endpoint nobody answers on (a port just freed on loopback).
    let dead = format!("/ip4/127.0.0.1/tcp/{}", daemon::free_port());
    let a = Daemon::start(
        "A",
        &dir.path().join("a"),
        "/ip4/127.0.0.1/tcp/0",
        &["--cloud", &dead],
    );
    a.client
        .post(
            "/v1/docs",
            &json!({"content": {"menu": "fish"}, "title": "Run of show"}),
        )
        .ok(201);
    browser.goto(&open_link(&dir.path().join("a")));
    let text = browser.wait_for_text("not yet in the cloud: Run of show");
    assert!(text.contains("Cloud (last contact never)"), "{text}");
    assert!(text.contains("Offline"), "{text}");
    // And why, in words, with what to do (mDNS is off here and no device is known).
    browser.wait_for_text("mDNS is off and no device address is known");
}
