//! Request middleware. `context` wraps every route; the policy layers (auth, rate limit,
//! idempotency) are route layers so an unknown path is a 404, never a 401 or 429.
pub mod auth;
pub mod client_ip;
pub mod context;
pub mod idempotency;
pub mod overload;
pub mod ratelimit;
pub mod scope;
