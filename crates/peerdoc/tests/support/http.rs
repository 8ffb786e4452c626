//! A tiny blocking HTTP client over ureq for the API tests: every call returns the
//! status, the content type and the body, whatever the status.

#![allow(dead_code, unreachable_pub)]

use serde_json::Value;

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    /// The `Access-Control-Allow-Origin` header, if the server sent one.
    pub allow_origin: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts an error answer of this status and code in the documented JSON shape.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got {} {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.content_type.starts_with("application/json"),
            "error content type {:?}",
            self.content_type
        );
        let json = self.json();
        assert_eq!(json["code"], code, "{json}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a success of this status and returns the JSON body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

/// A client of one API base URL.
#[derive(Debug, Clone)]
pub struct Client {
    pub base: String,
    pub token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str, token: Option<&str>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// Sends `method path` with an optional body of `content_type`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        self.try_call(method, path, content_type, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Sends `method path` with extra headers (a cookie, an `Origin`) and a body.
    pub fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        self.send(method, path, None, headers, Some(body))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// [`Client::call`] that reports transport failures instead of panicking.
    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, String> {
        self.send(method, path, content_type, &[], body)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, String> {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(token) = &self.token {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            builder = builder.header("Content-Type", content_type);
        }
        let result = match body {
            Some(body) => self.agent.run(builder.body(body).expect("request")),
            None => self.agent.run(builder.body(()).expect("request")),
        };
        let mut response = result.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let allow_origin = response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| format!("reading the body: {e}"))?;
        Ok(Answer {
            status,
            content_type,
            allow_origin,
            body,
        })
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, None)
    }

    pub fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, None, None)
    }

    pub fn send_json(&self, method: &str, path: &str, body: &Value) -> Answer {
        self.call(
            method,
            path,
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.send_json("POST", path, body)
    }

    pub fn patch(&self, path: &str, body: &Value) -> Answer {
        self.send_json("PATCH", path, body)
    }

    /// Creates a document and returns its id.
    pub fn create(&self, content: Value) -> String {
        let created = self
            .post("/v1/docs", &serde_json::json!({ "content": content }))
            .ok(201);
        created["id"].as_str().expect("id").to_owned()
    }

    /// The document's `{"heads", "content"}`.
    pub fn read(&self, id: &str) -> Value {
        self.get(&format!("/v1/docs/{id}")).ok(200)
    }
}
