//! The scale-out test target (issue 10): a real Redis Cluster (3 masters + 3 replicas, started by
//! `scripts/cluster-up.sh`) and three `gateway` processes on it. Run alone with
//! `cargo test --test cluster`; `cargo test --all-targets` runs it too. Tests take a global lock
//! and run one at a time (each owns nine processes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../api/helpers.rs"]
mod helpers;

mod harness;

mod events;
mod failover;
mod invariants;
mod scaleout;
