//! `--demo`: the whole stack in one process on a fresh machine (SPEC §1): the gateway on :8080
//! (or `PORT`), the in-memory store, and in-process mock reservation and payment APIs on
//! loopback. Prints curl lines to paste.
use std::net::SocketAddr;

use crate::app::{App, shutdown_signal};
use crate::config::Config;
use crate::mock_upstream::{MockUpstream, Role};

pub async fn run(mut config: Config) -> Result<(), Box<dyn std::error::Error>> {
    config.demo = true;
    config.redis = None;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let reservation = MockUpstream::start(Role::Reservation, loopback).await?;
    let payment = MockUpstream::start(Role::Payment, loopback).await?;
    config.reservation.bases = vec![reqwest::Url::parse(&reservation.url())?];
    config.payment.bases = vec![reqwest::Url::parse(&payment.url())?];

    let app = App::build(config).await?;
    let port = app.local_addr()?.port();
    println!("{}", banner(port));
    app.run(shutdown_signal()).await;
    reservation.stop().await;
    payment.stop().await;
    Ok(())
}

fn banner(port: u16) -> String {
    let base = format!("http://127.0.0.1:{port}");
    format!(
        r#"
gateway-api demo on {base}  (in-memory store, mock upstreams on loopback; Ctrl-C stops)

  curl -s {base}/healthz
  curl -s -X POST {base}/api/v1/reservations/create \
       -H 'Content-Type: application/json' -H "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)" \
       -d '{{"event_id":"concert-2026","seats":2}}'
  curl -s {base}/api/v1/reservations/<reservation_id>
  curl -s -X POST {base}/api/v1/reservations/<reservation_id>/cancel -H "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)"
"#
    )
}
