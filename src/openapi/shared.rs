//! The answers a whole class of routes shares, added once to the document after the handlers'
//! own (`#[utoipa::path]`) descriptions: the bearer scheme, 401 on authenticated routes, 429 and
//! 503 on every `/api` route, the idempotency 409s, 413 where there is a body, 502/504 where the
//! route is proxied, and the request-id and rate-limit headers. The classes follow the router's
//! own rules: every `/api` route is rate limited and may be shed, a route that requires a bearer
//! token authenticates, a route with an `Idempotency-Key` parameter is an idempotent write, a
//! route tagged `reservations` or `payments` is proxied. A route's own description of a status
//! wins.
use utoipa::Modify;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, Object, OpenApi as Document, Ref, RefOr, ResponseBuilder, Type,
};

/// Adds the bearer security scheme and the answers a whole class of routes shares (see the module
/// docs).
pub struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT whose `sub` is the caller, verified against JWT_JWKS_URL \
                         (issuer JWT_ISSUER, audience JWT_AUDIENCE).",
                    ))
                    .build(),
            ),
        );
        for (name, description) in SHARED_HEADERS {
            components
                .headers
                .insert(name.to_owned(), RefOr::T(header_of(description).build()));
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                add_shared_answers(path, op);
            }
        }
    }
}

/// Response headers described once under `components/headers`.
const SHARED_HEADERS: [(&str, &str); 8] = [
    (
        "X-Request-ID",
        "The client's `X-Request-ID` when it is 1-128 characters of `[A-Za-z0-9._-]`, else a new UUID",
    ),
    ("X-Trace-Id", "The W3C trace id of this request"),
    (
        "RateLimit-Policy",
        "`\"default\";q=<RATE_LIMIT_BURST>;w=<ceil(BURST/RPS)>`",
    ),
    (
        "RateLimit",
        "`\"default\";r=<whole tokens left>;t=<seconds until the bucket is full>`",
    ),
    ("X-RateLimit-Limit", "`RATE_LIMIT_BURST`"),
    ("X-RateLimit-Remaining", "Whole tokens left"),
    ("X-RateLimit-Reset", "Seconds until the bucket is full"),
    (
        "Idempotent-Replayed",
        "`true` when this is the stored answer to an earlier request with the same key",
    ),
];

const RATE_LIMIT_HEADERS: [&str; 5] = [
    "RateLimit-Policy",
    "RateLimit",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
];

fn add_shared_answers(path: &str, op: &mut Operation) {
    let tagged = |name: &str| op.tags.iter().flatten().any(|t| t == name);
    let proxied = tagged("reservations") || tagged("payments");
    let api = path.starts_with("/api/");
    let idempotent = op.parameters.iter().flatten().any(|p| match p {
        RefOr::T(p) => p.name == "Idempotency-Key",
        RefOr::Ref(_) => false,
    });
    let has_body = op.request_body.is_some();
    let answers = &mut op.responses.responses;
    let mut add = |status: &str, response: ResponseBuilder| {
        answers
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(response.build()));
    };
    if proxied {
        add(
            "401",
            error_answer(
                "`UNAUTHENTICATED`: token missing, malformed, badly signed, unknown `kid`, \
                 expired, not yet valid, wrong `iss`/`aud` or disallowed `alg`",
            )
            .header(
                "WWW-Authenticate",
                header_of(
                    "`Bearer` when the token is missing, else `Bearer error=\"invalid_token\"`",
                )
                .build(),
            ),
        );
        add(
            "502",
            error_answer(
                "`UPSTREAM_ERROR`: the upstream answered with something that is not HTTP, or \
                 closed the connection without an answer",
            ),
        );
        add(
            "504",
            error_answer("`UPSTREAM_TIMEOUT`: the upstream did not answer within its timeout"),
        );
    }
    if has_body {
        add(
            "413",
            error_answer("`PAYLOAD_TOO_LARGE`: body over `MAX_BODY_SIZE`"),
        );
    }
    if idempotent {
        add(
            "409",
            error_answer(
                "`IDEMPOTENCY_CONFLICT` (same key, different request) or \
                 `IDEMPOTENCY_IN_PROGRESS` (the first one is still running; `Retry-After: 1`)",
            ),
        );
    }
    if api {
        add(
            "429",
            error_answer("`RATE_LIMITED`: the client's bucket is empty").header(
                "Retry-After",
                header_of("Whole seconds (at least 1) until one token is back").build(),
            ),
        );
        add(
            "503",
            error_answer(
                "`OVERLOADED`: too many requests in flight, load shed (`Retry-After: 1`); or \
                 `UPSTREAM_UNAVAILABLE`: the upstream is unreachable or its circuit is open, or \
                 the store is down where the gateway must fail closed (idempotency, waiting \
                 room), or no JWKS is loaded yet",
            ),
        );
        add(
            "500",
            error_answer("`INTERNAL_ERROR`: a bug in the gateway"),
        );
    }
    for (status, answer) in answers.iter_mut() {
        let RefOr::T(answer) = answer else { continue };
        let mut names = vec!["X-Request-ID", "X-Trace-Id"];
        if api {
            names.extend(RATE_LIMIT_HEADERS);
        }
        if idempotent && status.starts_with('2') {
            names.push("Idempotent-Replayed");
        }
        for name in names {
            answer
                .headers
                .entry(name.to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/headers/{name}"))));
        }
    }
}

/// An answer with the gateway's error body.
fn error_answer(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    )
}

/// A string-valued response header.
fn header_of(description: &str) -> HeaderBuilder {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(Type::String)))
        .description(Some(description))
}
