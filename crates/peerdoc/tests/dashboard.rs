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
#[path = "support/webdriver.rs"]
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::Command;

use daemon::{Daemon, eventually};
use serde_json::{Value, json};
use webdriver::Browser;

fn skip_or_fail(reason: &str) {
    if std::env::var("CI")
        .is_ok_and(|ci| ci.trim().eq_ignore_ascii_case("true") || ci.trim() == "1")
    {
        panic!("{reason}; with CI=true a missing prerequisite is a failure (run .ci/setup)");
    }
    eprintln!("skipping: {reason}");
}

fn browser() -> Option<Browser> {
    match webdriver::available() {
        Ok(()) => Some(Browser::start()),
        Err(why) => {
            skip_or_fail(&why);
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

/// A and B in one team: "Planner laptop" (admin) and "Sam's tablet" (editor).
fn team(dir: &Path) -> (Daemon, Daemon) {
    let a = Daemon::start_in_team_mode("A", &dir.join("a"), "/ip4/127.0.0.1/tcp/0", &[]);
    let b = Daemon::start_in_team_mode("B", &dir.join("b"), "/ip4/127.0.0.1/tcp/0", &[]);
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
    for daemon in [&a, &b] {
        eventually("the two devices to connect", || {
            let peers = daemon.client.get("/v1/peers").ok(200);
            peers
                .as_array()?
                .iter()
                .any(|p| p["connected"] == true && p["sync_stream"] == true)
                .then_some(())
        });
    }
    (a, b)
}

/// Automerge bytes of a seating plan whose `/table` two devices set at once.
fn conflicted_document() -> Vec<u8> {
    use automerge::transaction::Transactable as _;
    use automerge::{ActorId, AutoCommit, ROOT};
    let mut base = AutoCommit::new().with_actor(ActorId::from(vec![1u8; 16]));
    base.put(ROOT, "table", "Ana").expect("put");
    base.put(ROOT, "guests", 80).expect("put");
    base.commit();
    let mut other = base.fork().with_actor(ActorId::from(vec![2u8; 16]));
    base.put(ROOT, "table", "Ben").expect("put");
    other.put(ROOT, "table", "Cai").expect("put");
    base.merge(&mut other).expect("merge");
    base.save()
}

fn content(daemon: &Daemon, id: &str) -> Value {
    daemon.client.read(id)["content"].clone()
}

#[test]
fn a_coordinator_signs_in_sees_the_team_settles_a_conflict_and_edits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(browser) = browser() else { return };
    let (a, b) = team(dir.path());

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
    shot(&browser, "devices");
    // The link worked once.
    let again = a.client.get(&link.replace(&a.client.base, ""));
    assert_eq!(again.status, 401);

    // A conflicted seating plan reaches both; it is settled from the page on A.
    let imported = a.client.call(
        "POST",
        "/v1/docs/import?title=Seating",
        Some("application/octet-stream"),
        Some(conflicted_document()),
    );
    assert_eq!(imported.status, 201, "{}", imported.text());
    let id = imported.json()["id"].as_str().expect("id").to_owned();
    eventually("B to have the seating plan", || {
        (b.client.get(&format!("/v1/docs/{id}")).status == 200).then_some(())
    });
    let tab = browser.find("nav button[data-tab=conflicts]");
    browser.click(&tab);
    browser.wait_for_text("Seating: /table");
    let loser = a.client.get(&format!("/v1/docs/{id}/conflicts")).ok(200)["current"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .find(|v| v["winner"] == false)
        .expect("a losing value")
        .clone();
    shot(&browser, "conflicts");
    let change = loser["change"].as_str().expect("change");
    let keep = browser.find(&format!(".value[data-change='{change}'] button.keep"));
    browser.click(&keep);
    browser.wait_for_text("No open conflicts.");
    for daemon in [&a, &b] {
        eventually("the kept value on both devices", || {
            let open = daemon
                .client
                .get(&format!("/v1/docs/{id}/conflicts"))
                .ok(200);
            (content(daemon, &id)["table"] == loser["value"]
                && open["current"].as_array()?.is_empty()
                && !open["log"].as_array()?.is_empty())
            .then_some(())
        });
    }

    // A field edited from the page reaches the other device.
    let tab = browser.find("nav button[data-tab=documents]");
    browser.click(&tab);
    let open = browser.find(&format!("li.doc[data-doc='{id}'] button"));
    browser.click(&open);
    browser.wait_for_text("History");
    shot(&browser, "document");
    let edit = browser.find(".leaf[data-path='/guests'] button.edit");
    browser.click(&edit);
    let input = browser.find(".leaf[data-path='/guests'] input");
    browser.clear(&input);
    browser.type_text(&input, "96");
    let save = browser.find(".leaf[data-path='/guests'] button.save");
    browser.click(&save);
    eventually("the edit on B", || {
        (content(&b, &id)["guests"] == 96).then_some(())
    });
    browser.wait_for_text("edit /guests from the dashboard");

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
    assert_eq!(read.status, 200);
    assert!(
        !read.text().is_empty()
            && !String::from_utf8_lossy(&read.body).contains("access-control-allow-origin")
    );
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
}
