//! `--demo`: the whole stack in one process on a fresh machine (SPEC §1): the gateway on :8080
//! (or `PORT`), the in-memory store, in-process mock reservation and payment APIs on loopback,
//! and a dev signing key (Ed25519, generated at start-up) whose JWKS the gateway trusts. Prints a
//! ready-to-paste token and curl lines; `GET /demo/token?sub=…` mints more (demo mode only).
//!
//! Made for a laptop: traces are exported only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (no
//! collector to fail to reach), Ctrl-C stops at once (no `SHUTDOWN_DELAY`: no load balancer
//! to tell), and the banner's lines, pasted in order, walk every route group (a test runs them).
use std::net::SocketAddr;

use std::time::Duration;

use crate::app::App;
use crate::config::Config;
pub use crate::jwt::dev::DEMO_TOKEN_TTL;
use crate::mock_upstream::{MockUpstream, Role};

pub const DEMO_ISSUER: &str = "gateway-demo";
pub const DEMO_AUDIENCE: &str = "gateway-api";

/// Applies what `--demo` means to a configuration: demo routes on, a generated key trusted
/// instead of a remote JWKS, signatures always checked, no shutdown delay, traces only to a
/// collector someone named.
pub fn configure(config: &mut Config) {
    config.demo = true;
    config.shutdown_delay = Duration::ZERO;
    config.telemetry.export_traces = config.telemetry.otlp_endpoint_set;
    config.jwt.skip_verify = false;
    config.jwt.jwks_url = None;
    config.jwt.issuer = Some(DEMO_ISSUER.to_owned());
    config.jwt.audience = Some(DEMO_AUDIENCE.to_owned());
}

pub async fn run(
    mut config: Config,
    signal: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error>> {
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
    app.run(signal).await;
    reservation.stop().await;
    payment.stop().await;
    Ok(())
}

/// The first line of the block of commands in the banner, and the line after its last one.
pub const BANNER_COMMANDS_START: &str =
    "Paste these lines in order (bash or zsh; needs curl and sed):";
pub const BANNER_COMMANDS_END: &str = "# end of the demo's commands";

fn banner(port: u16, token: &str) -> String {
    let base = format!("http://127.0.0.1:{port}");
    format!(
        r#"
gateway-api demo on {base}
(in-memory store, mock upstreams on loopback; Ctrl-C stops, a second Ctrl-C exits at once)

{BANNER_COMMANDS_START}

  export BASE={base}
  # A token for user-123 (EdDSA, signed by a key generated at start-up, valid 24 h):
  export TOKEN='{token}'
  pick() {{ sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }}
  uuid() {{ cat /proc/sys/kernel/random/uuid 2>/dev/null || uuidgen; }}

  # 1. Waiting room: join, poll, enter. Entering gives a reservation token for this event and user.
  WAITING=$(curl -fsS -X POST "$BASE/api/v1/queue/join" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{{"event_id":"concert-2026"}}' -w '\n' | tee /dev/stderr | pick waiting_token)
  curl -fsS "$BASE/api/v1/queue/status?token=$WAITING" -w '\n'
  RESERVATION_TOKEN=$(curl -fsS -X POST "$BASE/api/v1/queue/enter" -H "Authorization: Bearer $TOKEN" \
    -H "Idempotency-Key: $(uuid)" -H 'Content-Type: application/json' \
    -d "{{\"waiting_token\":\"$WAITING\"}}" -w '\n' | tee /dev/stderr | pick reservation_token)

  # 2. Reservations: create (with the reservation token), read, cancel.
  RESERVATION=$(curl -fsS -X POST "$BASE/api/v1/reservations/create" -H "Authorization: Bearer $TOKEN" \
    -H "Idempotency-Key: $(uuid)" -H 'Content-Type: application/json' \
    -d "{{\"event_id\":\"concert-2026\",\"seats\":2,\"reservation_token\":\"$RESERVATION_TOKEN\"}}" \
    -w '\n' | tee /dev/stderr | pick reservation_id)
  curl -fsS "$BASE/api/v1/reservations/$RESERVATION" -H "Authorization: Bearer $TOKEN" -w '\n'
  curl -fsS -X POST "$BASE/api/v1/reservations/$RESERVATION/cancel" -H "Authorization: Bearer $TOKEN" \
    -H "Idempotency-Key: $(uuid)" -w '\n'

  # 3. Payments: a payment intent.
  curl -fsS -X POST "$BASE/api/v1/payment/intent" -H "Authorization: Bearer $TOKEN" \
    -H "Idempotency-Key: $(uuid)" -H 'Content-Type: application/json' \
    -d "{{\"reservation_id\":\"$RESERVATION\",\"amount\":9900,\"currency\":\"EUR\"}}" -w '\n'

  # 4. Operations: metrics, the API document page (open it in a browser), and a refusal.
  curl -fsS "$BASE/metrics" | grep '^http_server_requests_total'
  curl -fsS -o /dev/null -w "%{{http_code}} $BASE/docs/  (open it in a browser)\n" "$BASE/docs/"
  curl -sS -o /dev/null -w '%{{http_code}} without a token\n' "$BASE/api/v1/reservations/$RESERVATION"
  {BANNER_COMMANDS_END}

Another user's token:   curl -s '{base}/demo/token?sub=user-456'
The trusted JWKS:       curl -s {base}/demo/jwks.json
Try the waiting room's gate: QUEUE_REQUIRE_ADMISSION=true cargo run --release -- --demo
"#
    )
}
