//! `GET /v1/openapi.json`: the OpenAPI 3.1 description, `docs/openapi.json` verbatim.

use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI 3.1 document of this API (`docs/openapi.json`).
pub const OPENAPI_JSON: &str = include_str!("../../../../docs/openapi.json");

/// `GET /v1/openapi.json`.
pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
