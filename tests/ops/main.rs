//! The operator-kit test target (issue 18): what needs real outside programs besides Redis.
//! - `docs`: `/docs` in a real headless Chromium (Debian's `chromium`).
//! - `dashboard`: every panel query of `deploy/grafana/gateway-api.json` through a real
//!   Prometheus (Debian's `prometheus`) scraping a real gateway under a little traffic.
//!
//! `test = false` in Cargo.toml: `cargo test --all-targets` leaves it out, `scripts/validate.sh`
//! installs the programs and runs it (`cargo test --test ops`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../api/helpers.rs"]
mod helpers;

mod dashboard;
mod docs;

/// The path of `program`, or a panic saying how to get it.
pub fn require(program: &str, package: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} not found: apt-get install -y {package} (scripts/validate.sh does)")
        })
}
