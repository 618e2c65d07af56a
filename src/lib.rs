//! gateway-api: the single entry point of the ticket-booking platform.
//!
//! Map of the crate (the life of a request is told in `router.rs`). Imports point down: a module
//! uses only those below it in this order (checked by `scripts/import_cycles.py`): `headers`,
//! `framing`, `client_addr`, `config`, `error`, `body`, `telemetry`, `store`, `jwt`, `queue`,
//! `limiter`, `upstream` →
//! `middleware` → `state` → `openapi` → `routes` → `router` → `app` → `demo`/`main`.
//! - `headers`: every header name of SPEC §3/§5/§6/§7, once.
//! - `client_addr`: who the client is (peer or trusted hop, SPEC §7), its rate-limit identity.
//! - `framing`: request-framing refusals the socket's bytes show (SPEC §4).
//! - `body`: request bodies within their size and time limits (SPEC §4).
//! - `app`: binds the listener, serves, shuts down gracefully.
//! - `build_info`: version, git sha and build time baked in by `build.rs`.
//! - `cli`: the `gateway` command line (clap): flags, `--help` with every variable.
//! - `config`: typed, validated environment (SPEC §8).
//! - `error`: `ApiError`, the one JSON error shape (SPEC §4).
//! - `state`: `AppState`, built once and shared.
//! - `jwt`: bearer-token checks and the JWKS cache (the auth layer is in `middleware`).
//! - `router`: every route and layer, in request order; the OpenAPI document read from the same
//!   route groups (`router::document`).
//! - `limiter`: the per-client rate limiter, with its local fallback while the store is down.
//! - `middleware`: one concern a layer: metrics, client address, request id, server span, access
//!   line, security headers, refusals; then the policy layers (overload, rate limit, auth, scope,
//!   idempotency).
//! - `routes`: thin handlers, each with its `#[utoipa::path]` and typed answer; `routes::input`,
//!   the extractors that turn ids, JSON bodies and query strings into values or JSON 400s.
//! - `upstream`: pooled clients for the reservation and payment APIs, header rules.
//! - `queue`: the waiting room's domain: tokens, identities, admission arithmetic.
//! - `store`: Redis / in-memory state shared by replicas.
//! - `telemetry`: logs, metrics, traces.
//! - `mock_upstream`: fake reservation and payment APIs that record what they receive.
//! - `demo`: `--demo`, the whole stack in one process.
//! - `openapi`: what the OpenAPI 3.1 document (`/openapi.json`) has beyond the handlers: info and
//!   tags, the answers a class of routes shares, shared schemas; `/docs/`.
pub mod app;
pub mod body;
pub mod build_info;
pub mod cli;
pub mod client_addr;
pub mod config;
pub mod demo;
pub mod error;
pub mod framing;
pub mod headers;
pub mod jwt;
pub mod limiter;
pub mod middleware;
pub mod mock_upstream;
pub mod openapi;
pub mod queue;
pub mod router;
pub mod routes;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod upstream;

pub use app::App;
pub use config::Config;
