//! `--demo`: the whole stack in one process on a fresh machine (SPEC §1): the gateway on :8080
//! (or `PORT`), the in-memory store, in-process mock reservation and payment APIs on loopback,
//! and a dev signing key (Ed25519, generated at start-up) whose JWKS the gateway trusts. Prints a
//! ready-to-paste token and curl lines; `GET /demo/token?sub=…` mints more (demo mode only).
use std::net::SocketAddr;

use crate::app::{App, shutdown_signal};
use crate::config::Config;
pub use crate::jwt::dev::DEMO_TOKEN_TTL;
use crate::mock_upstream::{MockUpstream, Role};

pub const DEMO_ISSUER: &str = "gateway-demo";
pub const DEMO_AUDIENCE: &str = "gateway-api";

/// Applies what `--demo` means to a configuration: demo routes on, a generated key trusted
/// instead of a remote JWKS, signatures always checked.
pub fn configure(config: &mut Config) {
    config.demo = true;
    config.jwt.skip_verify = false;
    config.jwt.jwks_url = None;
    config.jwt.issuer = Some(DEMO_ISSUER.to_owned());
    config.jwt.audience = Some(DEMO_AUDIENCE.to_owned());
}

pub async fn run(mut config: Config) -> Result<(), Box<dyn std::error::Error>> {
    configure(&mut config);
    config.redis = None;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let reservation = MockUpstream::start(Role::Reservation, loopback).await?;
    let payment = MockUpstream::start(Role::Payment, loopback).await?;
    config.reservation.bases = vec![reqwest::Url::parse(&reservation.url())?];
    config.payment.bases = vec![reqwest::Url::parse(&payment.url())?];

    let app = App::build(config).await?;
    let port = app.local_addr()?.port();
    let token = match &app.state().demo {
        Some(issuer) => issuer.mint("user-123", DEMO_TOKEN_TTL)?,
        None => return Err("demo signing key missing".into()),
    };
    println!("{}", banner(port, &token));
    app.run(shutdown_signal()).await;
    reservation.stop().await;
    payment.stop().await;
    Ok(())
}

fn banner(port: u16, token: &str) -> String {
    let base = format!("http://127.0.0.1:{port}");
    format!(
        r#"
gateway-api demo on {base}  (in-memory store, mock upstreams on loopback; Ctrl-C stops)

A token for user-123 (EdDSA, signed by a key generated at start-up, valid 24 h):

  export TOKEN='{token}'

  curl -s {base}/healthz
  curl -s -X POST {base}/api/v1/reservations/create \
       -H "Authorization: Bearer $TOKEN" \
       -H 'Content-Type: application/json' -H "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)" \
       -d '{{"event_id":"concert-2026","seats":2}}'
  curl -s {base}/api/v1/reservations/<reservation_id> -H "Authorization: Bearer $TOKEN"
  curl -s -X POST {base}/api/v1/reservations/<reservation_id>/cancel \
       -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)"
  curl -s -i {base}/api/v1/reservations/abc             # no token: 401

Another user's token:   curl -s '{base}/demo/token?sub=user-456'
The trusted JWKS:       curl -s {base}/demo/jwks.json
"#
    )
}
