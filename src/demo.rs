//! `--demo`: the whole stack in one process on a fresh machine (SPEC §1): the gateway on :8080
//! (or `PORT`), the in-memory store, in-process mock reservation and payment APIs on loopback,
//! and a dev signing key (Ed25519, generated at start-up) whose JWKS the gateway trusts. Prints a
//! ready-to-paste token and curl lines; `GET /demo/token?sub=…` mints more (demo mode only).
//!
//! Made for a laptop: traces are exported only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (no
//! collector to fail to reach), Ctrl-C stops at once (no `SHUTDOWN_DELAY`: no load balancer
//! to tell), and the banner's lines, pasted in order, walk every route group (a test runs them).
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::config::{Config, JwtConfig};
use crate::error::ApiError;
use crate::jwt::{ClaimRules, Claims, check_claims};
use crate::mock_upstream::{MockUpstream, Role};
use crate::state::AppState;

pub const DEMO_ISSUER: &str = "gateway-demo";
pub const DEMO_AUDIENCE: &str = "gateway-api";
const DEMO_KID: &str = "demo-ed25519";
/// Demo tokens live this long.
pub const DEMO_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

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

/// The demo's own identity provider: an Ed25519 key made at start-up and its JWKS.
pub struct DemoIssuer {
    key: EncodingKey,
    jwk: Value,
    issuer: String,
    audience: String,
}

impl DemoIssuer {
    /// A fresh key. Issuer and audience come from the config (`configure` sets the demo's).
    pub fn generate(config: &JwtConfig) -> Result<Self, jsonwebtoken::errors::Error> {
        // PKCS#8 v1 wrapping of a raw Ed25519 seed (RFC 8410): a fixed 16-byte prefix.
        const PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let seed: [u8; 32] = rand::random();
        let mut der = PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let key = EncodingKey::from_ed_der(&der);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)?;
        jwk.common.key_id = Some(DEMO_KID.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let jwk = serde_json::to_value(&jwk)?;
        Ok(DemoIssuer {
            key,
            jwk,
            issuer: config
                .issuer
                .clone()
                .unwrap_or_else(|| DEMO_ISSUER.to_owned()),
            audience: config
                .audience
                .clone()
                .unwrap_or_else(|| DEMO_AUDIENCE.to_owned()),
        })
    }

    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// A signed token for `sub`, valid for `ttl`.
    pub fn mint(&self, sub: &str, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(DEMO_KID.to_owned());
        let claims = json!({
            "sub": sub,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl.as_secs(),
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

/// `/demo/token` and `/demo/jwks.json` when `enabled` (demo mode), nothing otherwise.
pub fn routes(enabled: bool) -> Router<Arc<AppState>> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/demo/token", get(token))
        .route("/demo/jwks.json", get(jwks))
}

#[derive(Deserialize)]
struct TokenQuery {
    sub: Option<String>,
}

async fn token(
    State(state): State<Arc<AppState>>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let issuer = state.demo.as_ref().ok_or(ApiError::NotFound)?;
    let sub = q.sub.unwrap_or_else(|| "user-123".to_owned());
    // The same rule the verifier applies to `sub`, so a minted token always verifies.
    let probe = Claims {
        exp: Some(json!(u64::MAX / 2)),
        sub: Some(json!(sub)),
        ..Claims::default()
    };
    check_claims(&probe, &ClaimRules::default(), 0)
        .map_err(|_| ApiError::BadRequest("sub: 1-256 printable ASCII characters"))?;
    let token = issuer.mint(&sub, DEMO_TOKEN_TTL).map_err(|e| {
        tracing::error!(error = %e, "demo token signing failed");
        ApiError::Internal
    })?;
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": DEMO_TOKEN_TTL.as_secs(),
        "sub": sub,
    }))
    .into_response())
}

async fn jwks(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let issuer = state.demo.as_ref().ok_or(ApiError::NotFound)?;
    Ok(Json(issuer.jwks()))
}
