//! The OpenAPI 3.1 document, generated: the schemas come from the body types
//! ([`crate::api`]), the operations from the `#[utoipa::path]` annotation on each
//! handler, and [`ApiDoc`] puts them together in the router's order.
//!
//! `docs/openapi.json` is [`openapi_json`]'s output, committed so that people can read
//! it; the `api_errors` tests fail when the two differ and say how to regenerate it
//! (`UPDATE_OPENAPI=1 cargo test -p peerdoc --test api_errors openapi`).
//! `GET /v1/openapi.json` serves the same document with `servers` set to the URL this
//! daemon serves on.
//!
//! Three things utoipa cannot see are added here ([`SentFields`], [`EventSchemas`],
//! [`RequestRules`]): which response fields are always sent (the types' lenient
//! `#[serde(default)]` reads as "optional" to utoipa), which schema each Server-Sent
//! Event's data has, and what the server checks in a request body beyond its type.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::schema::AdditionalProperties;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema, Server};
use utoipa::{Modify, OpenApi, ToResponse};

use super::AppState;
use crate::api::events::EVENT_SCHEMAS;
use crate::api::{self, ErrorBody};

/// The API's operations and the components they use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "peerdoc local API",
        description = "The local HTTP API of the peerdoc daemon (`docs/api.md` explains it \
            in prose). Every request but `GET /health` and `GET /v1/sync` carries \
            `Authorization: Bearer <token>` (the token is in `<data_dir>/api.token`), or the \
            dashboard's session cookie. Every error is `{\"code\", \"message\"}` JSON with a \
            4xx/5xx status, axum's own rejections included; a user's mistake is never a 5xx. \
            Unknown query parameters are `400 bad_request`; unknown routes answer \
            `404 not_found`, wrong methods `405 method_not_allowed`.\n\n\
            Generated from the server's types (`crates/peerdoc/src/api.rs`) and handlers; \
            do not edit `docs/openapi.json` by hand."
    ),
    servers((url = "http://127.0.0.1:7420", description = "The default API address; \
        GET /v1/openapi.json names the address it is served on")),
    paths(
        super::status::health,
        super::status::status,
        super::status::peers,
        super::status::add_peer,
        super::status::remove_peer,
        super::docs::list,
        super::docs::create,
        super::docs::import,
        super::docs::read,
        super::docs::edit,
        super::docs::delete,
        super::docs::export,
        super::docs::fetch,
        super::docs::set_meta,
        super::docs::conflicts,
        super::resolve::resolve,
        super::docs::history,
        super::events::events,
        super::session::link,
        openapi,
        super::metrics::metrics,
        super::sync_ws::sync,
        super::team::status,
        super::team::create,
        super::team::join,
        super::team::invites,
        super::team::create_invite,
        super::team::revoke_invite,
        super::team::invite_qr,
        super::team::update_member,
        super::team::revoke_member,
    ),
    components(
        schemas(
            api::ChangeEvent,
            api::DocumentEvent,
            api::ConflictEvent,
            api::PeerEvent,
            api::LaggedEvent,
        ),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Gone,
            Conflict,
            TooLarge,
            UnsupportedMediaType,
            Unprocessable,
            Unavailable,
        )
    ),
    modifiers(&Bearer, &SentFields, &EventSchemas, &RequestRules),
    security(("bearer" = [])),
    tags(
        (name = "node", description = "This device: health, status, peers"),
        (name = "documents", description = "Documents: create, read, edit, delete, \
            metadata, conflicts, history, import and export"),
        (name = "events", description = "Server-Sent Events"),
        (name = "team", description = "Teams (`docs/teams.md`): membership, invites, roles"),
        (name = "sync", description = "automerge-repo sync over WebSocket"),
        (name = "meta", description = "This document, metrics, dashboard sign-in"),
    )
)]
pub(crate) struct ApiDoc;

/// Bad request: `bad_json` (the body is not JSON, or not the expected shape: a missing
/// or unknown field, a wrong JSON type), `bad_request` (a query parameter or header is
/// malformed or unknown), `bad_document_id` (the `{id}` is not a document id: checksum,
/// base58, length; `automerge:` URLs are accepted), `bad_path` (an edit op's JSON
/// pointer is malformed).
#[derive(ToResponse)]
#[allow(dead_code)] // a description, never built
pub(crate) struct BadRequest(ErrorBody);

/// The token is missing or wrong (`unauthorized`).
#[derive(ToResponse)]
#[allow(dead_code)] // a description, never built
pub(crate) struct Unauthorized(ErrorBody);

/// Not allowed: not an admin (`not_admin`), a write on a viewer's or removed device
/// (`read_only`), an invite the inviting device refused (`invite_refused`), or deleting
/// one of peerdoc's own documents (`system_document`).
#[derive(ToResponse)]
#[allow(dead_code)] // a description, never built
pub(crate) struct Forbidden(ErrorBody);

/// No such document (`not_found`), or `?heads=` names changes the document does not
/// contain (`unknown_heads`).
#[derive(ToResponse)]
#[allow(dead_code)] // a description, never built
pub(crate) struct NotFound(ErrorBody);

/// The document was deleted (`deleted`); deletion is final.
#[derive(ToResponse)]
#[allow(dead_code)] // a description, never built
pub(crate) struct Gone(ErrorBody);

/// Not possible in this state: not in a team (`not_in_team`), already in one
/// (`already_in_team`), run with `--open` or a key file (`team_mode`), the inviting
/// device unreachable (`inviter_unreachable`), a removed device (`revoked`), the last
/// admin (`last_admin`), no address to enrol on (`no_enrolment_address`).
#[derive(ToResponse)]
#[allow(dead_code)] // a description, never built
pub(crate) struct Conflict(ErrorBody);

/// The body is over the limit (`too_large`; `[api] max_body_bytes`, default 64 MiB).
#[derive(ToResponse)]
#[allow(dead_code)] // a description, never built
pub(crate) struct TooLarge(ErrorBody);

/// Wrong `Content-Type` (`unsupported_media_type`).
#[derive(ToResponse)]
#[allow(dead_code)] // a description, never built
pub(crate) struct UnsupportedMediaType(ErrorBody);

/// The edit does not fit the document (`invalid_change`: wrong type at the path, index
/// out of range, missing key; nothing was changed), or imported bytes are not an
/// automerge document (`invalid_document`).
#[derive(ToResponse)]
#[allow(dead_code)] // a description, never built
pub(crate) struct Unprocessable(ErrorBody);

/// Too many commands queued (`busy`: retry), or the daemon is stopping
/// (`shutting_down`).
#[derive(ToResponse)]
#[allow(dead_code)] // a description, never built
pub(crate) struct Unavailable(ErrorBody);

/// The bearer token scheme every operation uses unless it says otherwise.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token in `<data_dir>/api.token`"))
                    .build(),
            ),
        );
    }
}

/// Marks the fields a response type always sends as `required`.
///
/// The response types derive `Deserialize` with `#[serde(default)]` so that the client
/// reads older and newer daemons; utoipa reads that as "every field optional". What the
/// server sends is known exactly: every field but those skipped when empty
/// (`skip_serializing_if`), so a type's default value, serialised, has exactly the
/// fields that are always there.
struct SentFields;

/// A response type's schema name and the fields it always sends.
fn sent<T: utoipa::ToSchema + Serialize + Default>() -> (String, Vec<String>) {
    let fields = match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    (T::name().into_owned(), fields)
}

/// Every response object type (the request types are exact already).
fn response_types() -> Vec<(String, Vec<String>)> {
    vec![
        sent::<ErrorBody>(),
        sent::<api::Health>(),
        sent::<api::Status>(),
        sent::<api::Receipts>(),
        sent::<api::StoreProblem>(),
        sent::<api::StoreRollback>(),
        sent::<api::ConflictSummary>(),
        sent::<api::ConflictDoc>(),
        sent::<api::CloudEndpoint>(),
        sent::<api::DocStatus>(),
        sent::<api::DocPeer>(),
        sent::<api::Peer>(),
        sent::<api::PeerAdded>(),
        sent::<api::SessionLink>(),
        sent::<api::DocSummary>(),
        sent::<api::Created>(),
        sent::<api::DocContent>(),
        sent::<api::Heads>(),
        sent::<api::Conflicts>(),
        sent::<api::CurrentConflict>(),
        sent::<api::ConflictValue>(),
        sent::<api::ConflictRecord>(),
        sent::<api::Resolved>(),
        sent::<api::HistoryEntry>(),
        sent::<api::TeamStatus>(),
        sent::<api::Member>(),
        sent::<api::Revoked>(),
        sent::<api::InviteInfo>(),
        sent::<api::ChangeEvent>(),
        sent::<api::Patch>(),
        sent::<api::DocumentEvent>(),
        sent::<api::ConflictEvent>(),
        sent::<api::PeerEvent>(),
        sent::<api::LaggedEvent>(),
    ]
}

impl Modify for SentFields {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        // `#[serde(default)]` also makes utoipa write each field's `Default` as its
        // `default`: noise in an answer, and said in words where it matters in a request.
        for schema in components.schemas.values_mut() {
            if let RefOr::T(Schema::Object(object)) = schema {
                object.properties.values_mut().for_each(without_default);
            }
        }
        for (name, fields) in response_types() {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(&name) {
                // In the order the properties are written.
                object.required = object
                    .properties
                    .keys()
                    .filter(|p| fields.contains(p))
                    .cloned()
                    .collect();
            }
        }
    }
}

fn without_default(schema: &mut RefOr<Schema>) {
    match schema {
        RefOr::T(Schema::Object(s)) => s.default = None,
        RefOr::T(Schema::Array(s)) => s.default = None,
        RefOr::T(Schema::OneOf(s)) => s.default = None,
        RefOr::T(Schema::AllOf(s)) => s.default = None,
        RefOr::T(Schema::AnyOf(s)) => s.default = None,
        RefOr::Ref(r) => r.default = None,
        _ => {}
    }
}

/// What the server checks in a request body beyond its type, so that the document
/// admits only what the server takes (the fuzz run, `tests/api_fuzz.rs`, sends what the
/// schema admits): team and device names go through `peerdoc_team::validate_name`, and
/// `deny_unknown_fields` on the internally tagged `EditOp` closes each of its variants.
struct RequestRules;

/// The request fields that hold a team or device name.
const NAME_FIELDS: &[(&str, &str)] = &[
    ("CreateTeam", "name"),
    ("CreateTeam", "device_name"),
    ("CreateInvite", "name"),
    ("UpdateMember", "name"),
];

/// A name `validate_name` takes: something besides white space, and no control
/// character (it trims, then allows 1 to `MAX_NAME_CHARS` characters).
const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";

impl Modify for RequestRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (schema, field) in NAME_FIELDS {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(*schema)
                && let Some(RefOr::T(Schema::Object(name))) = object.properties.get_mut(*field)
            {
                name.min_length = Some(1);
                name.max_length = Some(peerdoc_team::MAX_NAME_CHARS);
                name.pattern = Some(NAME_PATTERN.to_owned());
            }
        }
        if let Some(RefOr::T(Schema::OneOf(ops))) = components.schemas.get_mut("EditOp") {
            for op in &mut ops.items {
                if let RefOr::T(Schema::Object(op)) = op {
                    op.additional_properties =
                        Some(Box::new(AdditionalProperties::FreeForm(false)));
                }
            }
        }
    }
}

/// An automerge document's `save()` bytes, as a request or response body.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // a description, never built
pub(crate) struct AutomergeBytes(Vec<u8>);

/// Names the schema of each event's `data:` on `GET /v1/events`, as the extension
/// `x-events` (OpenAPI 3.1 has no per-event schemas for a stream).
struct EventSchemas;

impl Modify for EventSchemas {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let events: serde_json::Map<String, serde_json::Value> = EVENT_SCHEMAS
            .iter()
            .map(|(event, schema)| {
                let reference = format!("#/components/schemas/{schema}");
                (
                    (*event).to_owned(),
                    serde_json::json!({ "$ref": reference }),
                )
            })
            .collect();
        let Some(item) = openapi.paths.paths.get_mut("/v1/events") else {
            return;
        };
        if let Some(get) = item.get.as_mut() {
            get.extensions
                .get_or_insert_with(Default::default)
                .insert("x-events".to_owned(), serde_json::Value::Object(events));
        }
    }
}

/// The generated document (built once).
fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// The OpenAPI document as committed in `docs/openapi.json`: pretty JSON, with a final
/// newline.
pub fn openapi_json() -> String {
    let mut json = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

/// The OpenAPI document (this one)
///
/// The document describes the API of this version of the daemon, with `servers` set to
/// the URL it is served on. It is generated from the server's types and handlers, and
/// `docs/openapi.json` is a copy (with the default address).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses(
        (status = 200, description = "OpenAPI 3.1", body = Object),
        (status = 401, response = Unauthorized),
    )
)]
pub(super) async fn openapi(State(state): State<AppState>) -> Response {
    let mut doc = document().clone();
    doc.servers = Some(vec![Server::new(state.config.api_url.clone())]);
    let json = doc.to_json().unwrap_or_else(|_| "{}".to_owned());
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}
