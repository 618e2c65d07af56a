//! The document against the gateway's own errors, and the shared answers on every route.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::error::{ApiError, AuthFailure};
use serde_json::Value;

fn document() -> Value {
    serde_json::from_str(document_json()).unwrap()
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
    assert_eq!(documented_routes().len(), 21);
}
