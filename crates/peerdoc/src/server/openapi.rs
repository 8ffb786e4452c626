//! `GET /v1/openapi.json`: the OpenAPI 3.1 description, `docs/openapi.json` with its
//! `servers` set to the URL this daemon serves on (the file says the default port).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// The OpenAPI 3.1 document of this API (`docs/openapi.json`).
pub const OPENAPI_JSON: &str = include_str!("../../../../docs/openapi.json");

/// `GET /v1/openapi.json`.
pub(super) async fn openapi(State(state): State<AppState>) -> Json<Value> {
    // The file is checked against the router by a test; it always parses.
    let mut doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap_or_else(|_| json!({}));
    doc["servers"] = json!([{ "url": state.config.api_url }]);
    Json(doc)
}
