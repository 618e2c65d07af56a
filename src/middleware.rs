//! Request middleware, outermost first as `router.rs` stacks them.
//!
//! Every request: `update_metrics`, `real_ip`, `request_id`, `server_span`, `access_log`,
//! `common_headers`, `refusals`, each one concern, most of them the [`around::Around`] shape.
//! The policy layers (`overload`, `ratelimit`, `auth`, `scope`, `idempotency`) are route layers
//! so an unknown path is a 404, never a 401 or 429.
pub mod access_log;
pub mod around;
pub mod auth;
pub mod common_headers;
pub mod idempotency;
pub mod overload;
pub mod ratelimit;
pub mod real_ip;
pub mod refusals;
pub mod request_id;
pub mod scope;
pub mod server_span;
pub mod update_metrics;
