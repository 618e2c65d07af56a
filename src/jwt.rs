//! Bearer-token verification (SPEC §2, §4, §8; issue #3): the JWKS cache and the token checks.
//! No tower or HTTP request types here; `middleware/auth.rs` adapts this to the request path.
//!
//! - Keys come only from `JWT_JWKS_URL`, never from a token's `jku`, `x5u`, `jwk` or `x5c`.
//! - The algorithms a key accepts are derived from its JWK (`kty`/`crv`/`alg`): RS*/PS* for RSA
//!   (≥ 2048 bits), ES256/ES384 for P-256/P-384, EdDSA for Ed25519. `none` and HS* never pass.
//! - `exp`, `iss`, `aud` and `sub` are required; `nbf` is honoured; 30 s of clock leeway.
//! - The JWKS is fetched at start-up and then every `JWT_CACHE_TTL` in the background (1 s → 30 s
//!   backoff while nothing is loaded or a refresh fails; a failed refresh keeps the last good
//!   set). An unknown `kid` starts one single-flight refresh, at most once per
//!   `JWT_REFRESH_MIN_INTERVAL` (30 s) counted from the last fetch of any kind, and a request
//!   waits for it at most [`UNKNOWN_KID_WAIT`].
//! - Verified tokens are cached (keyed by SHA-256 of the token, until `exp`, bounded, sharded)
//!   so a hot token is not re-verified on every request. A JWKS change empties it in effect.
//!
//! The checks themselves are plain functions with `now` passed in ([`parse`], [`check_claims`],
//! [`allowed_algorithms`]), unit-tested below.
//!
//! The pieces, one file each: `token` splits and decodes a token, `claims` checks what it
//! says, `keys` turns a JWKS into verifying keys and checks a signature, `fetch` loads the
//! JWKS (single flight, in the background), `cache` remembers verified tokens, and `dev` is
//! the demo's own issuer. This file holds the verifier that ties them together.
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use self::cache::TokenCache;
use self::fetch::{FetchState, refresh_loop};
use self::keys::{KeySet, check_signature};
use crate::config::JwtConfig;
use crate::telemetry::Metrics;

mod cache;
mod claims;
pub mod dev;
mod fetch;
mod keys;
#[cfg(test)]
mod proptests;
mod token;

pub use self::claims::{ClaimRules, Claims, check_claims};
pub use self::keys::allowed_algorithms;
pub use self::token::{Parsed, parse};

/// Tokens longer than this are refused before any parsing (a JWT is typically under 2 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock leeway for `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// The longest a request waits for the JWKS refresh its unknown `kid` started.
pub const UNKNOWN_KID_WAIT: Duration = Duration::from_millis(500);
/// Verified tokens kept, in total (spread over independently locked shards).
pub const CACHE_CAPACITY: usize = 65_536;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a token was refused. `label()` is the `jwt_verifications{result}` value and the log
/// field; the client only ever sees a generic 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("token over {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token is not three base64url segments of JSON")]
    Malformed,
    #[error("alg none")]
    AlgNone,
    #[error("symmetric (HS*) alg")]
    AlgSymmetric,
    #[error("unsupported alg")]
    AlgUnsupported,
    #[error("alg not allowed for this key")]
    AlgMismatch,
    #[error("unsupported critical header")]
    CriticalHeader,
    #[error("unknown kid")]
    UnknownKid,
    #[error("bad signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not yet valid (nbf)")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    #[error("claim {0} has the wrong type or value")]
    BadClaim(&'static str),
}

impl Reason {
    pub fn label(&self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::AlgNone => "alg_none",
            Reason::AlgSymmetric => "alg_symmetric",
            Reason::AlgUnsupported => "alg_unsupported",
            Reason::AlgMismatch => "alg_mismatch",
            Reason::CriticalHeader => "crit_header",
            Reason::UnknownKid => "unknown_kid",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::MissingClaim(_) => "missing_claim",
            Reason::BadClaim(_) => "bad_claim",
        }
    }
}

/// Verification did not produce a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token is bad: 401.
    #[error("{0}")]
    Invalid(Reason),
    /// No JWKS has been loaded yet, so no token can be judged: 503, not 401.
    #[error("no JWKS loaded yet")]
    NoKeys,
}

/// A verified token: who, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub sub: Arc<str>,
    pub exp: u64,
}

/// Checks bearer tokens against the JWKS of `JWT_JWKS_URL`. Cheap to clone; built once per
/// `AppState`. Call [`JwtVerifier::start`] inside a Tokio runtime to begin fetching.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    jwks_url: Option<reqwest::Url>,
    rules: ClaimRules,
    skip_verify: bool,
    cache_ttl: Duration,
    refresh_min_interval: Duration,
    keys: ArcSwapOption<KeySet>,
    fetch: Mutex<FetchState>,
    /// Bumped when a fetch ends (either way); requests waiting on an unknown `kid` watch it.
    fetched: watch::Sender<u64>,
    http: reqwest::Client,
    cache: TokenCache,
    metrics: Arc<Metrics>,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?;
        let (fetched, _) = watch::channel(0);
        Ok(JwtVerifier {
            inner: Arc::new(Inner {
                jwks_url: config.jwks_url.clone(),
                rules: ClaimRules {
                    issuer: config.issuer.clone(),
                    audience: config.audience.clone(),
                },
                skip_verify: config.skip_verify,
                cache_ttl: config.cache_ttl,
                refresh_min_interval: config.refresh_min_interval,
                keys: ArcSwapOption::empty(),
                fetch: Mutex::new(FetchState::default()),
                fetched,
                http,
                cache: TokenCache::new(CACHE_CAPACITY),
                metrics,
            }),
        })
    }

    /// Trusts this JWKS as if it had been fetched (`--demo`, benchmarks). Returns how many usable
    /// keys it held.
    pub fn trust(&self, jwks: &Value) -> usize {
        let body = jwks.to_string();
        match KeySet::parse(body.as_bytes(), 1) {
            Ok(set) => {
                let n = set.keys.len();
                self.inner.keys.store(Some(Arc::new(set)));
                self.inner.lock_fetch().generation = 1;
                n
            }
            Err(_) => 0,
        }
    }

    /// Starts the background JWKS refresh (needs a Tokio runtime). Does nothing (but warn) when
    /// verification is skipped, nor without a `JWT_JWKS_URL` (keys given with `trust`).
    pub fn start(&self) {
        if self.inner.skip_verify {
            tracing::warn!(
                "JWT_SKIP_VERIFY=true: token SIGNATURES ARE NOT CHECKED; anyone can claim \
                 any user. Development only, never in production."
            );
            return;
        }
        if self.inner.jwks_url.is_none() {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(refresh_loop(weak));
    }

    /// Whether tokens can be judged: a JWKS is loaded, or verification is skipped.
    pub fn is_ready(&self) -> bool {
        self.inner.skip_verify || self.inner.keys.load().is_some()
    }

    pub fn skips_verification(&self) -> bool {
        self.inner.skip_verify
    }

    /// Verifies a bearer token (without the `Bearer ` prefix).
    pub async fn verify(&self, token: &str) -> Result<Verified, VerifyError> {
        self.verify_at(token, unix_now(), true).await
    }

    /// As [`JwtVerifier::verify`] when the answer needs no waiting (a cached token, or one whose
    /// key is loaded or whose claims fail); `None` when it would wait for a JWKS refresh (an
    /// unknown `kid`): then call `verify`. The request path's fast path, with no future.
    pub fn verify_now(&self, token: &str) -> Option<Result<Verified, VerifyError>> {
        match self.check(token, unix_now(), true) {
            Checked::Done(result) => Some(result),
            Checked::UnknownKid => None,
        }
    }

    /// As [`JwtVerifier::verify`], bypassing the verified-token cache (benchmarks measure what
    /// the cache saves with it).
    pub async fn verify_uncached(&self, token: &str) -> Result<Verified, VerifyError> {
        self.verify_at(token, unix_now(), false).await
    }

    async fn verify_at(
        &self,
        token: &str,
        now: u64,
        use_cache: bool,
    ) -> Result<Verified, VerifyError> {
        match self.check(token, now, use_cache) {
            Checked::Done(result) => result,
            Checked::UnknownKid => {
                // Unknown kid: maybe the IdP rotated. One single-flight refresh, rate limited,
                // waited for briefly; the answer for this request is whatever is loaded then.
                if let Some(mut done) = Inner::begin_fetch(&self.inner, true) {
                    let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, done.changed()).await;
                }
                match self.check(token, now, use_cache) {
                    Checked::Done(result) => result,
                    Checked::UnknownKid => Err(VerifyError::Invalid(Reason::UnknownKid)),
                }
            }
        }
    }

    /// Everything but the wait for a refresh: the cache, the key, the signature, the claims.
    fn check(&self, token: &str, now: u64, use_cache: bool) -> Checked {
        if token.len() > MAX_TOKEN_BYTES {
            return Checked::Done(Err(VerifyError::Invalid(Reason::TooLarge)));
        }
        let inner = &self.inner;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let keys = inner.keys.load_full();
        let generation = keys.as_ref().map_or(0, |k| k.generation);
        if use_cache && let Some(hit) = inner.cache.get(&hash, now, generation) {
            inner.metrics.jwt_cache_hits.inc();
            return Checked::Done(Ok(hit));
        }
        let parsed = match parse(token) {
            Ok(p) => p,
            Err(reason) => return Checked::Done(Err(VerifyError::Invalid(reason))),
        };
        if !inner.skip_verify {
            let Some(keys) = keys.as_ref() else {
                return Checked::Done(Err(VerifyError::NoKeys));
            };
            let Some(key) = keys.find(parsed.kid.as_deref()) else {
                return Checked::UnknownKid;
            };
            if let Err(reason) = check_signature(&parsed, key) {
                return Checked::Done(Err(VerifyError::Invalid(reason)));
            }
        }
        let verified = match check_claims(&parsed.claims, &inner.rules, now) {
            Ok(v) => v,
            Err(reason) => return Checked::Done(Err(VerifyError::Invalid(reason))),
        };
        if use_cache {
            inner.cache.insert(hash, &verified, generation, now);
        }
        Checked::Done(Ok(verified))
    }
}

/// What [`JwtVerifier::check`] could decide without waiting.
enum Checked {
    Done(Result<Verified, VerifyError>),
    /// No loaded key has the token's `kid`: a refresh may bring it.
    UnknownKid,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A short, non-reversible handle for a token in logs (never the token itself).
pub fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    hex::encode(&digest[..6])
}
