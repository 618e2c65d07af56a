//! Every header name the gateway itself reads or writes (SPEC §3, §5, §6, §7), declared once.
//! The bottom of the crate: it imports nothing of it. Standard names (`Content-Type`, …) come
//! from `http::header`.
use http::HeaderName;

/// SPEC §3: the request id, the client's when well formed, else a new UUID.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// SPEC §3: the trace id of the request, on every response.
pub static X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");
/// W3C trace context.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// SPEC §3: the verified caller, set by the gateway only.
pub static X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// SPEC §6.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// SPEC §5: the reservation token may come as a header instead of a body field.
pub static X_RESERVATION_TOKEN: HeaderName = HeaderName::from_static("x-reservation-token");
/// SPEC §7: the IETF draft's headers and the widely used `X-RateLimit-*` ones.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
