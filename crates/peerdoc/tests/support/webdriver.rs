//! A small W3C WebDriver client for the dashboard's browser tests: Debian's `chromium`
//! driven through its `chromedriver` on 127.0.0.1, headless, over plain HTTP with the
//! `ureq` the crate already uses. Only what the tests need: open a URL, find elements by
//! CSS, read their text, click, type, run a script, take a screenshot.
//!
//! Network safety: Chromium is started with its background services off, every host
//! name but `127.0.0.1`/`localhost` unresolvable, and a dead proxy for anything not on
//! loopback, so the browser sends nothing beyond this machine.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(30);

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

/// Where Chromium and its driver are, or why a test cannot run.
pub fn available() -> Result<(), String> {
    for tool in ["chromium", "chromedriver"] {
        let works = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            return Err(format!(
                "the dashboard's browser tests need {tool} (Debian: chromium, chromium-driver; .ci/setup installs them)"
            ));
        }
    }
    Ok(())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    pub fn start() -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        let started = Instant::now();
        loop {
            let ready = agent
                .get(format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(started.elapsed() < WAIT, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1100,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-default-apps".to_owned(),
            "--disable-domain-reliability".to_owned(),
            "--disable-client-side-phishing-detection".to_owned(),
            "--metrics-recording-only".to_owned(),
            "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication"
                .to_owned(),
            // Nothing leaves this machine: no name resolves but loopback's, and anything
            // else would go to a proxy that is not there.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
                .to_owned(),
            "--proxy-server=http://127.0.0.1:9".to_owned(),
        ];
        let mut browser = Self {
            driver,
            base,
            session: String::new(),
            agent,
            _profile: profile,
        };
        let created = browser.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
            }}})),
        );
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{}", self.base, path);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, Some(body)) => self.agent.post(&url).send_json(body),
            (_, None) => self.agent.post(&url).send_json(json!({})),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let value: Value = response.body_mut().read_json().unwrap_or(Value::Null);
        value["value"].clone()
    }

    /// [`Browser::call`] that fails the test on a WebDriver error (a stale element, a
    /// click that did not land), so a step never passes silently.
    fn checked(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let value = self.call(method, path, body);
        if let Some(error) = value["error"].as_str() {
            panic!("WebDriver {method} {path}: {error}: {}", value["message"]);
        }
        value
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.checked(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.session_call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Elements matching `css` now.
    pub fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.session_call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`, waiting for one to appear.
    pub fn find(&self, css: &str) -> String {
        self.wait(&format!("an element {css}"), || {
            self.find_all(css).into_iter().next()
        })
    }

    /// The text of the first element matching `css`, found again while the live
    /// refresh replaces it (a stale element is retried, not an error).
    pub fn text_of(&self, css: &str) -> String {
        self.wait(&format!("the text of {css}"), || {
            let element = self.find_all(css).into_iter().next()?;
            let answer = self.call(
                "GET",
                &format!("/session/{}/element/{element}/text", self.session),
                None,
            );
            match answer["error"].as_str() {
                None => answer.as_str().map(str::to_owned),
                Some("stale element reference") => None,
                Some(error) => panic!("WebDriver text of {css}: {error}: {}", answer["message"]),
            }
        })
    }

    pub fn attribute(&self, element: &str, name: &str) -> Option<String> {
        self.session_call("GET", &format!("/element/{element}/attribute/{name}"), None)
            .as_str()
            .map(str::to_owned)
    }

    pub fn click(&self, element: &str) {
        self.session_call("POST", &format!("/element/{element}/click"), None);
    }

    /// Clicks the first element matching `css`. The page re-renders itself live, so an
    /// element found a moment ago may be gone: find it again and retry until it lands.
    pub fn click_on(&self, css: &str) {
        self.wait(&format!("a click on {css}"), || {
            let element = self.find_all(css).into_iter().next()?;
            let answer = self.call(
                "POST",
                &format!("/session/{}/element/{element}/click", self.session),
                None,
            );
            match answer["error"].as_str() {
                None => Some(()),
                Some("stale element reference" | "element click intercepted") => None,
                Some(error) => panic!("WebDriver click on {css}: {error}: {}", answer["message"]),
            }
        });
    }

    pub fn text(&self, element: &str) -> String {
        self.session_call("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Replaces the value of the first input matching `css` with `text`. The live
    /// refresh may replace the input between finding and typing: find it again and
    /// retry until the value sticks.
    pub fn fill(&self, css: &str, text: &str) {
        self.wait(&format!("{css} to hold {text:?}"), || {
            let element = self.find_all(css).into_iter().next()?;
            let at = |what: &str| format!("/session/{}/element/{element}/{what}", self.session);
            for (what, body) in [("clear", None), ("value", Some(json!({ "text": text })))] {
                let answer = self.call("POST", &at(what), body);
                match answer["error"].as_str() {
                    None => {}
                    Some("stale element reference" | "element not interactable") => return None,
                    Some(error) => {
                        panic!("WebDriver {what} on {css}: {error}: {}", answer["message"])
                    }
                }
            }
            let value = self.call("GET", &at("property/value"), None);
            (value.as_str() == Some(text)).then_some(())
        });
    }

    /// The visible text of the whole page.
    pub fn page_text(&self) -> String {
        let body = self.find("body");
        self.text(&body)
    }

    /// Waits until the page's text contains `needle`; returns the text.
    pub fn wait_for_text(&self, needle: &str) -> String {
        self.wait(&format!("the page to say {needle:?}"), || {
            let text = self.page_text();
            text.contains(needle).then_some(text)
        })
    }

    /// Runs an async script (`arguments[0]` is the callback) and returns its result.
    pub fn run_async(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// A cookie of the current page, HttpOnly ones included (WebDriver sees them).
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.call(
            "GET",
            &format!("/session/{}/cookie/{name}", self.session),
            None,
        )["value"]
            .as_str()
            .map(str::to_owned)
    }

    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let data = self.session_call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, bytes).expect("write screenshot");
    }

    pub fn wait<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(value) = check() {
                return value;
            }
            if started.elapsed() > WAIT {
                panic!("timed out waiting for {what}; the page says:\n{}", {
                    let body = self.find_all("body");
                    body.first().map(|b| self.text(b)).unwrap_or_default()
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
