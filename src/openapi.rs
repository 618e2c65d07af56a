//! The OpenAPI 3.1 document of every public route (SPEC §2), served at `GET /openapi.json` (and
//! printed by `gateway --print-openapi`).
//!
//! The document is generated from the handlers (utoipa-axum): each handler carries its
//! `#[utoipa::path]` and returns a `Serialize + ToSchema` body, and `router.rs` registers it with
//! `routes!`, so the served routes are the documented routes by construction
//! (`router::document()` reads them from the same route groups). This module holds what is not
//! any one handler's:
//! - [`ApiDoc`]: info, servers and tags;
//! - `shared`: the answers a whole class of routes shares (401, 429, 503, the idempotency 409s,
//!   the request-id and rate-limit headers), added once by [`complete`];
//! - [`schemas`]: the error body, the upstreams' bodies (passed through unparsed: they describe
//!   what the bundled mock upstreams answer), the headers and parameters several routes take;
//! - [`docs`]: `/docs/`, Swagger UI over the document.
//!
//! `tests/api/openapi.rs` fails when a route is served but not documented, or the other way round.

pub mod docs;
pub mod schemas;
mod shared;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

use self::shared::SharedAnswers;

/// The document's frame: info, servers, tags. Its paths and their schemas come from the handlers
/// (`router::document`), then [`complete`] adds what classes of routes share.
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
    servers((url = "/", description = "The gateway serving this document (same origin)")),
    tags(
        (name = "operations", description = "Health, readiness, version, metrics: never rate limited, shed or authenticated."),
        (name = "queue", description = "The per-event virtual waiting room (SPEC §5)."),
        (name = "reservations", description = "Proxied to the reservation API; bearer token required."),
        (name = "payments", description = "Proxied to the payment API; bearer token required."),
        (name = "admin", description = "Operators steer events (SPEC §5a): a bearer token with ADMIN_SCOPE; never rate limited per client or shed."),
    )
)]
pub struct ApiDoc;

/// The document with what classes of routes share added to every route of `doc` (see `shared`).
pub fn complete(mut doc: Document) -> Document {
    SharedAnswers.modify(&mut doc);
    doc
}

/// `GET /openapi.json`'s answer: the document, serialized once by the caller.
pub fn json_response(document: &'static str) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document,
    )
        .into_response()
}

/// Every `(method, path template)` `doc` describes, for the route-coverage test.
pub fn documented_routes(doc: &Document) -> Vec<(Method, String)> {
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

/// The document against the gateway's own errors, and the shared answers on every route. (The
/// document is read from the router: tests may reach anywhere.)
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::Value;

    use super::documented_routes;
    use crate::error::{ApiError, AuthFailure};

    fn document() -> Value {
        serde_json::to_value(crate::router::document()).unwrap()
    }

    /// One of each `ApiError`. The match is exhaustive on purpose: a new variant stops this test
    /// from compiling until it is listed here, and so checked against the documented codes.
    fn every_api_error() -> Vec<ApiError> {
        let all = vec![
            ApiError::BadRequest("x"),
            ApiError::Unauthenticated(AuthFailure::Missing),
            ApiError::Forbidden("x"),
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::IdempotencyConflict,
            ApiError::IdempotencyInProgress,
            ApiError::PayloadTooLarge,
            ApiError::IdempotencyRequired,
            ApiError::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
            },
            ApiError::Internal,
            ApiError::BadGateway,
            ApiError::UpstreamUnavailable("x"),
            ApiError::Overloaded,
            ApiError::UpstreamTimeout,
            ApiError::RequestTimeout,
            ApiError::UriTooLong,
            ApiError::HeadersTooLarge,
            ApiError::InvalidInput("x: missing field".to_owned()),
            ApiError::EventNotFound("x"),
            ApiError::EventClosed,
        ];
        for e in &all {
            match e {
                ApiError::BadRequest(_)
                | ApiError::Unauthenticated(_)
                | ApiError::Forbidden(_)
                | ApiError::NotFound
                | ApiError::MethodNotAllowed
                | ApiError::IdempotencyConflict
                | ApiError::IdempotencyInProgress
                | ApiError::PayloadTooLarge
                | ApiError::IdempotencyRequired
                | ApiError::RateLimited { .. }
                | ApiError::Internal
                | ApiError::BadGateway
                | ApiError::UpstreamUnavailable(_)
                | ApiError::Overloaded
                | ApiError::UpstreamTimeout
                | ApiError::RequestTimeout
                | ApiError::UriTooLong
                | ApiError::HeadersTooLarge
                | ApiError::InvalidInput(_)
                | ApiError::EventNotFound(_)
                | ApiError::EventClosed => {}
            }
        }
        all
    }

    #[test]
    fn every_gateway_error_code_is_documented_and_nothing_more() {
        let doc = document();
        let documented: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut codes: Vec<&str> = every_api_error().iter().map(ApiError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        let mut sorted = documented.clone();
        sorted.sort_unstable();
        assert_eq!(codes, sorted);
    }

    #[tokio::test]
    async fn the_real_error_body_has_the_documented_shape() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for e in every_api_error() {
            let res = axum::response::IntoResponse::into_response(e);
            let bytes = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            let keys = |v: &Value| {
                let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
                k.sort();
                k
            };
            let required = |name: &str| {
                let mut k: Vec<String> = schemas[name]["required"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
                k.sort();
                k
            };
            assert_eq!(keys(&body), required("ErrorBody"));
            assert_eq!(keys(&body["error"]), required("ErrorDetail"));
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_shared_answers() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                let has = |s: &str| responses.contains_key(s);
                if path.starts_with("/api/") {
                    assert!(has("429") && has("503"), "{method} {path}");
                } else {
                    assert!(!has("429"), "{method} {path} is never rate limited");
                }
                let protected = op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|r| r.get("bearerAuth").is_some()));
                assert_eq!(has("401"), protected, "{method} {path}");
            }
        }
        assert_eq!(documented_routes(&crate::router::document()).len(), 21);
    }
}
