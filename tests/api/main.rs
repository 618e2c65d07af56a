//! One integration test binary (zero-to-production layout): `helpers` starts the real gateway,
//! a real redis-server and recording mock upstreams; one module per feature.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod auth;
mod cli;
mod cors;
mod demo;
mod events;
mod idempotency;
mod input;
mod listener;
mod observability;
mod openapi;
mod outages;
mod proxy;
mod queue;
mod ratelimit;
mod slow_clients;

mod routing;
