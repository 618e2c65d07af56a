//! The OpenAPI 3.1 document of every public route (SPEC §2), built from code with `utoipa` and
//! served at `GET /openapi.json` (and printed by `gateway --print-openapi`).
//!
//! The whole document lives in this module rather than as annotations on the handlers: each
//! route is described by a doc-only function in [`paths`] (its `#[utoipa::path]`), its bodies by
//! the types in [`schemas`]. The answers a whole class of routes shares (401, 429, 503, the
//! idempotency 409s, the request-id and rate-limit headers) are added once by `shared`,
//! following the router's own rules: every `/api` route is rate limited and may be shed, a route
//! that requires a bearer token authenticates, a route with an `Idempotency-Key` parameter is an
//! idempotent write, a route tagged `reservations` or `payments` is proxied.
//!
//! Not here: the upstreams' own bodies are passed through unparsed (SPEC §2), so their schemas
//! describe what the bundled mock upstreams answer; the real APIs own their contracts.
//! `tests/api/openapi.rs` fails when a route is served but not documented, or the other way round.

pub mod docs;
pub mod paths;
pub mod schemas;
mod shared;

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};
use utoipa::OpenApi;

use self::shared::SharedAnswers;

/// The document, with the shared answers added.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gateway-api",
        description = "The single entry point of the ticket-booking platform: authentication (JWT), \
rate limits, overload shedding, a virtual waiting room, idempotent writes, and a proxy to the \
reservation and payment APIs.\n\nEvery response carries `X-Request-ID` and `X-Trace-Id`. Every \
error the gateway itself produces has the `ErrorBody` shape; upstream answers (status, body, \
`Content-Type`) are passed through unchanged."
    ),
    paths(
        paths::healthz,
        paths::readyz,
        paths::version,
        paths::metrics,
        paths::openapi_json,
        paths::docs,
        paths::queue_join,
        paths::queue_status,
        paths::queue_enter,
        paths::queue_leave,
        paths::reservation_create,
        paths::reservation_create_alias,
        paths::reservation_get,
        paths::reservation_cancel,
        paths::reservation_confirm,
        paths::payment_intent_create,
        paths::payment_intent_get,
        paths::admin_events_list,
        paths::admin_event_get,
        paths::admin_event_put,
        paths::admin_event_delete,
    ),
    servers((url = "/", description = "The gateway serving this document (same origin)")),
    modifiers(&SharedAnswers),
    tags(
        (name = "operations", description = "Health, readiness, version, metrics: never rate limited, shed or authenticated."),
        (name = "queue", description = "The per-event virtual waiting room (SPEC §5)."),
        (name = "reservations", description = "Proxied to the reservation API; bearer token required."),
        (name = "payments", description = "Proxied to the payment API; bearer token required."),
        (name = "admin", description = "Operators steer events (SPEC §5a): a bearer token with ADMIN_SCOPE; never rate limited per client or shed."),
    )
)]
pub struct ApiDoc;

/// The serialized document, built once (compact: it is served on every `GET /openapi.json`).
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().unwrap_or_default());

/// The document as compact JSON, as `GET /openapi.json` serves it.
pub fn document_json() -> &'static str {
    &DOCUMENT
}

/// The document as pretty JSON (`gateway --print-openapi`).
pub fn document_pretty() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

/// `GET /openapi.json`.
pub async fn serve() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document_json(),
    )
        .into_response()
}

/// Every `(method, path template)` the document describes, for the route-coverage test.
pub fn documented_routes() -> Vec<(Method, String)> {
    let doc = ApiDoc::openapi();
    let mut routes = Vec::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::DELETE, &item.delete),
            (Method::PATCH, &item.patch),
            (Method::HEAD, &item.head),
            (Method::OPTIONS, &item.options),
        ];
        for (method, op) in ops {
            if op.is_some() {
                routes.push((method, path.clone()));
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests;
