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
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::config::JwtConfig;

pub mod dev;
use crate::telemetry::Metrics;

/// Tokens longer than this are refused before any parsing (a JWT is typically under 2 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock leeway for `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// The longest a request waits for the JWKS refresh its unknown `kid` started.
pub const UNKNOWN_KID_WAIT: Duration = Duration::from_millis(500);
/// Verified tokens kept, in total (spread over [`CACHE_SHARDS`] independently locked shards).
pub const CACHE_CAPACITY: usize = 65_536;
const CACHE_SHARDS: usize = 64;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// RSA keys shorter than this (in bytes of modulus) are ignored.
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// `sub` becomes the `X-User-ID` header: bounded and printable ASCII.
const MAX_SUB_BYTES: usize = 256;

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

#[derive(Default)]
struct FetchState {
    last_started: Option<Instant>,
    in_flight: bool,
    /// Fingerprint of the last installed JWKS body: an unchanged body keeps the generation.
    fingerprint: Option<[u8; 32]>,
    generation: u64,
}

/// What the claims must say (from `JWT_ISSUER`/`JWT_AUDIENCE`; unset = not checked, which only
/// `JWT_SKIP_VERIFY=true` allows).
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
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
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::Invalid(Reason::TooLarge));
        }
        let inner = &self.inner;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut keys = inner.keys.load_full();
        let generation = keys.as_ref().map_or(0, |k| k.generation);
        if use_cache && let Some(hit) = inner.cache.get(&hash, now, generation) {
            inner.metrics.jwt_cache_hits.inc();
            return Ok(hit);
        }
        let parsed = parse(token).map_err(VerifyError::Invalid)?;
        if !inner.skip_verify {
            let mut key = keys
                .as_ref()
                .ok_or(VerifyError::NoKeys)?
                .find(parsed.kid.as_deref());
            if key.is_none() {
                // Unknown kid: maybe the IdP rotated. One single-flight refresh, rate limited,
                // waited for briefly; the answer for this request is whatever is loaded then.
                if let Some(mut done) = Inner::begin_fetch(inner, true) {
                    let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, done.changed()).await;
                }
                keys = inner.keys.load_full();
                key = keys.as_ref().and_then(|k| k.find(parsed.kid.as_deref()));
            }
            let key = key.ok_or(VerifyError::Invalid(Reason::UnknownKid))?;
            check_signature(&parsed, key).map_err(VerifyError::Invalid)?;
        }
        let verified =
            check_claims(&parsed.claims, &inner.rules, now).map_err(VerifyError::Invalid)?;
        if use_cache {
            let generation = keys.as_ref().map_or(0, |k| k.generation);
            inner.cache.insert(hash, &verified, generation, now);
        }
        Ok(verified)
    }
}

impl Inner {
    fn lock_fetch(&self) -> MutexGuard<'_, FetchState> {
        self.fetch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a JWKS fetch unless one is running (single flight) or, when `rate_limited`, one
    /// started less than `JWT_REFRESH_MIN_INTERVAL` ago. Returns a receiver that changes when
    /// the running fetch ends, or `None` when nothing runs.
    fn begin_fetch(this: &Arc<Inner>, rate_limited: bool) -> Option<watch::Receiver<u64>> {
        let url = this.jwks_url.clone()?;
        let done = this.fetched.subscribe();
        {
            let mut st = this.lock_fetch();
            if st.in_flight {
                return Some(done);
            }
            if rate_limited
                && st
                    .last_started
                    .is_some_and(|t| t.elapsed() < this.refresh_min_interval)
            {
                return None;
            }
            st.in_flight = true;
            st.last_started = Some(Instant::now());
        }
        let inner = this.clone();
        // Its own task: a request that stops waiting never cancels the fetch.
        tokio::spawn(async move {
            let result = inner.fetch_once(&url).await;
            {
                let mut st = inner.lock_fetch();
                st.in_flight = false;
                match result {
                    Ok((body, fingerprint)) => {
                        let changed = st.fingerprint != Some(fingerprint);
                        let generation = if changed {
                            st.generation + 1
                        } else {
                            st.generation
                        };
                        match KeySet::parse(&body, generation) {
                            Ok(set) => {
                                if changed {
                                    tracing::info!(
                                        keys = set.keys.len(),
                                        generation,
                                        "JWKS loaded"
                                    );
                                }
                                st.generation = generation;
                                st.fingerprint = Some(fingerprint);
                                inner.keys.store(Some(Arc::new(set)));
                                inner.metrics.jwks_fetches.with_label_values(&["ok"]).inc();
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "JWKS refused, keeping the last good set");
                                inner
                                    .metrics
                                    .jwks_fetches
                                    .with_label_values(&["error"])
                                    .inc();
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "JWKS fetch failed, keeping the last good set");
                        inner
                            .metrics
                            .jwks_fetches
                            .with_label_values(&["error"])
                            .inc();
                    }
                }
            }
            inner.fetched.send_modify(|n| *n = n.wrapping_add(1));
        });
        Some(done)
    }

    async fn fetch_once(&self, url: &reqwest::Url) -> Result<(Vec<u8>, [u8; 32]), FetchError> {
        let mut res = self
            .http
            .get(url.clone())
            .send()
            .await?
            .error_for_status()?;
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let fingerprint: [u8; 32] = Sha256::digest(&body).into();
        Ok((body, fingerprint))
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("JWKS over {MAX_JWKS_BYTES} bytes")]
    TooLarge,
}

/// Fetch at once, then every `JWT_CACHE_TTL`; while nothing is loaded, or after a failure, retry
/// with backoff 1 s → 30 s. Ends when the verifier is dropped.
async fn refresh_loop(weak: Weak<Inner>) {
    let mut backoff = BACKOFF_START;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let before = inner.metrics.jwks_fetches.with_label_values(&["ok"]).get();
        if let Some(mut done) = Inner::begin_fetch(&inner, false) {
            let _ = done.changed().await;
        }
        let ok = inner.metrics.jwks_fetches.with_label_values(&["ok"]).get() > before;
        // Verified tokens past their `exp` go with each refresh: the cache is bounded by count
        // (CACHE_CAPACITY) and by time (exp + at most one JWT_CACHE_TTL).
        inner.cache.sweep(unix_now());
        let wait = if ok && inner.keys.load().is_some() {
            backoff = BACKOFF_START;
            inner.cache_ttl
        } else {
            let wait = backoff.min(inner.cache_ttl.max(BACKOFF_START));
            backoff = (backoff * 2).min(BACKOFF_MAX);
            wait
        };
        drop(inner);
        tokio::time::sleep(wait).await;
    }
}

/// The usable keys of one JWKS, by `kid`.
struct KeySet {
    generation: u64,
    keys: HashMap<String, VerifyKey>,
}

struct VerifyKey {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

#[derive(Debug, thiserror::Error)]
enum KeySetError {
    #[error("not a JWKS document: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("JWKS has no usable signing key")]
    NoUsableKey,
}

impl KeySet {
    fn parse(body: &[u8], generation: u64) -> Result<KeySet, KeySetError> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc = serde_json::from_slice(body)?;
        let mut keys = HashMap::new();
        for raw in doc.keys {
            // One odd key (an encryption key, an unknown curve) must not sink the whole set.
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
                continue;
            };
            let Some(algorithms) = allowed_algorithms(&jwk) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            if let DecodingKeyKind::RsaModulusExponent { n, .. } = key.kind() {
                let significant = n.iter().skip_while(|b| **b == 0).count();
                if significant < MIN_RSA_MODULUS_BYTES {
                    continue;
                }
            }
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            keys.insert(kid, VerifyKey { key, algorithms });
        }
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(KeySet { generation, keys })
    }

    /// The key for a token's `kid`; a token without one matches only a one-key set.
    fn find(&self, kid: Option<&str>) -> Option<&VerifyKey> {
        match kid {
            Some(kid) => self.keys.get(kid),
            None if self.keys.len() == 1 => self.keys.values().next(),
            None => None,
        }
    }
}

/// The algorithms a JWK may verify, from its key type and curve, narrowed by its `alg` when it
/// has one. `None`: not a signing key we accept (symmetric, encryption, unknown curve, or an
/// `alg` its key type cannot have).
pub fn allowed_algorithms(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let by_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return None,
        },
        // `oct` (HMAC secrets) and anything else: never.
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type.to_vec()),
        Some(alg) => {
            let alg = Algorithm::try_from(alg).ok()?;
            by_type.contains(&alg).then(|| vec![alg])
        }
    }
}

/// A token split and decoded, not yet trusted.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// `header.payload`, what the signature covers.
    message: &'a str,
    signature: &'a str,
    pub claims: Claims,
}

/// The registered claims, as they came (types are checked by [`check_claims`]).
#[derive(Debug, Default, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub exp: Option<Value>,
    #[serde(default)]
    pub nbf: Option<Value>,
    #[serde(default)]
    pub iss: Option<Value>,
    #[serde(default)]
    pub aud: Option<Value>,
    #[serde(default)]
    pub sub: Option<Value>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Splits a compact JWS and decodes its header and claims. Refuses `none`, HS* and unknown
/// algorithms, and any `crit` header (we understand no extensions). The `jku`, `x5u`, `jwk`
/// and `x5c` headers are ignored: keys come from the JWKS only.
pub fn parse(token: &str) -> Result<Parsed<'_>, Reason> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Reason::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::Malformed);
    };
    if h.is_empty() || p.is_empty() {
        return Err(Reason::Malformed);
    }
    let header_bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| Reason::Malformed)?;
    let header: Header = from_object(&header_bytes)?;
    if header.crit.is_some() {
        return Err(Reason::CriticalHeader);
    }
    let alg = match header.alg.as_str() {
        a if a.eq_ignore_ascii_case("none") => return Err(Reason::AlgNone),
        a if a.starts_with("HS") => return Err(Reason::AlgSymmetric),
        a => Algorithm::from_str(a).map_err(|_| Reason::AlgUnsupported)?,
    };
    let claims_bytes = URL_SAFE_NO_PAD.decode(p).map_err(|_| Reason::Malformed)?;
    let claims: Claims = from_object(&claims_bytes)?;
    Ok(Parsed {
        alg,
        kid: header.kid,
        message: &token[..h.len() + 1 + p.len()],
        signature: s,
        claims,
    })
}

/// Decodes a JOSE header or claims set: a JSON **object** without duplicate member names
/// (RFC 7515 §4, RFC 7519 §4; SPEC §8a). serde would fill a struct from an array in field order
/// and let a later duplicate win, so the document is read as an object first.
fn from_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Reason> {
    let object: UniqueObject = serde_json::from_slice(bytes).map_err(|_| Reason::Malformed)?;
    T::deserialize(Value::Object(object.0)).map_err(|_| Reason::Malformed)
}

/// A top-level JSON object whose member names are unique; anything else fails to deserialize.
struct UniqueObject(serde_json::Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object with unique member names")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom("duplicate member name"));
                    }
                    out.insert(k, v);
                }
                Ok(UniqueObject(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Signature check with a key from the JWKS, for an algorithm that key allows.
fn check_signature(parsed: &Parsed<'_>, key: &VerifyKey) -> Result<(), Reason> {
    if !key.algorithms.contains(&parsed.alg) {
        return Err(Reason::AlgMismatch);
    }
    match jsonwebtoken::crypto::verify(
        parsed.signature,
        parsed.message.as_bytes(),
        &key.key,
        parsed.alg,
    ) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(Reason::BadSignature),
    }
}

/// The claim rules: `exp` (a number; past `exp + leeway` is expired), `nbf` (a number when
/// present; after `now + leeway` is not yet valid), `iss` and `aud` when configured (`aud` a
/// string or an array holding ours), `sub` 1–256 printable-ASCII characters that neither start
/// nor end with a space.
pub fn check_claims(claims: &Claims, rules: &ClaimRules, now: u64) -> Result<Verified, Reason> {
    let exp = match &claims.exp {
        None | Some(Value::Null) => return Err(Reason::MissingClaim("exp")),
        Some(v) => numeric_date(v).ok_or(Reason::BadClaim("exp"))?,
    };
    if now > exp.saturating_add(LEEWAY_SECS) {
        return Err(Reason::Expired);
    }
    if let Some(nbf) = claims.nbf.as_ref().filter(|v| !v.is_null()) {
        let nbf = numeric_date(nbf).ok_or(Reason::BadClaim("nbf"))?;
        if nbf > now.saturating_add(LEEWAY_SECS) {
            return Err(Reason::NotYetValid);
        }
    }
    if let Some(want) = &rules.issuer {
        match &claims.iss {
            None | Some(Value::Null) => return Err(Reason::MissingClaim("iss")),
            Some(Value::String(iss)) if iss == want => {}
            Some(Value::String(_)) => return Err(Reason::WrongIssuer),
            Some(_) => return Err(Reason::BadClaim("iss")),
        }
    }
    if let Some(want) = &rules.audience {
        match &claims.aud {
            None | Some(Value::Null) => return Err(Reason::MissingClaim("aud")),
            Some(Value::String(aud)) if aud == want => {}
            Some(Value::String(_)) => return Err(Reason::WrongAudience),
            Some(Value::Array(auds)) => {
                if !auds.iter().any(|a| a.as_str() == Some(want.as_str())) {
                    return Err(Reason::WrongAudience);
                }
            }
            Some(_) => return Err(Reason::BadClaim("aud")),
        }
    }
    let sub = match &claims.sub {
        None | Some(Value::Null) => return Err(Reason::MissingClaim("sub")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(Reason::BadClaim("sub")),
    };
    // Byte for byte what `X-User-ID` carries and what the gateway's records are keyed by: an HTTP
    // parser trims the spaces a header value starts or ends with, so such a `sub` would name
    // another user upstream (SPEC §8a).
    let printable = sub.bytes().all(|b| (0x20..0x7f).contains(&b));
    let padded = sub.starts_with(' ') || sub.ends_with(' ');
    if sub.is_empty() || sub.len() > MAX_SUB_BYTES || !printable || padded {
        return Err(Reason::BadClaim("sub"));
    }
    Ok(Verified {
        sub: Arc::from(sub.as_str()),
        exp,
    })
}

/// RFC 7519 NumericDate: a JSON number (integer or not), never a string.
fn numeric_date(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
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

/// Verified tokens by SHA-256 of the token: sharded so that concurrent requests rarely meet on
/// a lock, bounded per shard (expired entries go first, then an arbitrary one).
struct TokenCache {
    shards: Box<[Shard]>,
    per_shard: usize,
}

type Shard = Mutex<HashMap<[u8; 32], CachedToken>>;

struct CachedToken {
    sub: Arc<str>,
    exp: u64,
    generation: u64,
}

impl TokenCache {
    fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(CACHE_SHARDS).max(1);
        TokenCache {
            shards: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            per_shard,
        }
    }

    fn shard(&self, key: &[u8; 32]) -> MutexGuard<'_, HashMap<[u8; 32], CachedToken>> {
        // The key is already a uniform hash: its first byte picks the shard.
        let i = usize::from(key[0]) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A hit is a token verified under the current JWKS generation and not past its `exp`.
    fn get(&self, key: &[u8; 32], now: u64, generation: u64) -> Option<Verified> {
        let shard = self.shard(key);
        let hit = shard.get(key)?;
        (hit.generation == generation && now <= hit.exp).then(|| Verified {
            sub: hit.sub.clone(),
            exp: hit.exp,
        })
    }

    fn insert(&self, key: [u8; 32], v: &Verified, generation: u64, now: u64) {
        let mut shard = self.shard(&key);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, t| t.exp >= now);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(
            key,
            CachedToken {
                sub: v.sub.clone(),
                exp: v.exp,
                generation,
            },
        );
    }

    /// Drops every token past its `exp` and gives the memory back.
    fn sweep(&self, now: u64) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|_, t| t.exp >= now);
            shard.shrink_to_fit();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://idp".into()),
            audience: Some("gw".into()),
        }
    }

    fn claims(v: Value) -> Claims {
        serde_json::from_value(v).unwrap()
    }

    fn good() -> Value {
        json!({"sub": "u1", "iss": "https://idp", "aud": "gw", "exp": NOW + 60})
    }

    fn with(k: &str, v: Value) -> Claims {
        let mut c = good();
        c[k] = v;
        claims(c)
    }

    fn without(k: &str) -> Claims {
        let mut c = good();
        c.as_object_mut().unwrap().remove(k);
        claims(c)
    }

    fn token(header: Value, claims: Value) -> String {
        let b = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.c2ln", b(header), b(claims))
    }

    #[test]
    fn good_claims_give_the_sub_and_exp() {
        let v = check_claims(&claims(good()), &rules(), NOW).unwrap();
        assert_eq!(&*v.sub, "u1");
        assert_eq!(v.exp, NOW + 60);
        // aud may be an array holding ours; exp may be a float.
        let v = check_claims(&with("aud", json!(["x", "gw"])), &rules(), NOW).unwrap();
        assert_eq!(&*v.sub, "u1");
        assert!(check_claims(&with("exp", json!((NOW + 5) as f64 + 0.5)), &rules(), NOW).is_ok());
    }

    #[test]
    fn exp_iss_aud_sub_are_required() {
        for k in ["exp", "iss", "aud", "sub"] {
            assert_eq!(
                check_claims(&without(k), &rules(), NOW),
                Err(Reason::MissingClaim(match k {
                    "exp" => "exp",
                    "iss" => "iss",
                    "aud" => "aud",
                    _ => "sub",
                })),
                "{k}"
            );
        }
    }

    #[test]
    fn exp_as_a_string_is_refused() {
        let c = with("exp", json!((NOW + 60).to_string()));
        assert_eq!(
            check_claims(&c, &rules(), NOW),
            Err(Reason::BadClaim("exp"))
        );
        let c = with("nbf", json!("0"));
        assert_eq!(
            check_claims(&c, &rules(), NOW),
            Err(Reason::BadClaim("nbf"))
        );
        let c = with("exp", json!(-5));
        assert_eq!(
            check_claims(&c, &rules(), NOW),
            Err(Reason::BadClaim("exp"))
        );
    }

    #[test]
    fn leeway_is_thirty_seconds_both_ways() {
        let exp = |e: u64| with("exp", json!(e));
        assert!(check_claims(&exp(NOW - 30), &rules(), NOW).is_ok());
        assert_eq!(
            check_claims(&exp(NOW - 31), &rules(), NOW),
            Err(Reason::Expired)
        );
        let nbf = |n: u64| with("nbf", json!(n));
        assert!(check_claims(&nbf(NOW + 30), &rules(), NOW).is_ok());
        assert_eq!(
            check_claims(&nbf(NOW + 31), &rules(), NOW),
            Err(Reason::NotYetValid)
        );
    }

    #[test]
    fn wrong_issuer_audience_or_sub_are_refused() {
        let r = rules();
        assert_eq!(
            check_claims(&with("iss", json!("https://evil")), &r, NOW),
            Err(Reason::WrongIssuer)
        );
        assert_eq!(
            check_claims(&with("aud", json!("other")), &r, NOW),
            Err(Reason::WrongAudience)
        );
        assert_eq!(
            check_claims(&with("aud", json!(["a", "b"])), &r, NOW),
            Err(Reason::WrongAudience)
        );
        for bad in [
            json!(""),
            json!(42),
            json!("a\nb"),
            json!("ü"),
            json!("x".repeat(300)),
            json!(" alice"),
            json!("alice "),
            json!("\talice"),
        ] {
            assert_eq!(
                check_claims(&with("sub", bad.clone()), &r, NOW),
                Err(Reason::BadClaim("sub")),
                "{bad}"
            );
        }
    }

    #[test]
    fn unset_issuer_and_audience_are_not_checked() {
        let c = claims(json!({"sub": "u", "exp": NOW}));
        assert!(check_claims(&c, &ClaimRules::default(), NOW).is_ok());
    }

    #[test]
    fn parse_refuses_bad_shapes_and_algorithms() {
        let c = good();
        let ok = token(json!({"alg": "RS256", "kid": "k1"}), c.clone());
        let p = parse(&ok).unwrap();
        assert_eq!(p.alg, Algorithm::RS256);
        assert_eq!(p.kid.as_deref(), Some("k1"));
        assert_eq!(p.signature, "c2ln");

        assert_eq!(parse("a.b").unwrap_err(), Reason::Malformed);
        assert_eq!(parse("a.b.c.d").unwrap_err(), Reason::Malformed);
        assert_eq!(parse("!!.??.x").unwrap_err(), Reason::Malformed);
        let not_json = format!(
            "{}.{}.x",
            URL_SAFE_NO_PAD.encode("{oops"),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert_eq!(parse(&not_json).unwrap_err(), Reason::Malformed);
        for (alg, reason) in [
            ("none", Reason::AlgNone),
            ("NONE", Reason::AlgNone),
            ("HS256", Reason::AlgSymmetric),
            ("HS512", Reason::AlgSymmetric),
            ("ES512", Reason::AlgUnsupported),
        ] {
            let t = token(json!({"alg": alg}), c.clone());
            assert_eq!(parse(&t).unwrap_err(), reason, "{alg}");
        }
        let crit = token(json!({"alg": "RS256", "crit": ["exp"]}), c.clone());
        assert_eq!(parse(&crit).unwrap_err(), Reason::CriticalHeader);
        // RFC 7515/7519: header and claims set are JSON objects with unique member names.
        let seg = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let h = seg(r#"{"alg":"RS256"}"#);
        let array_claims = format!(
            "{h}.{}.c2ln",
            seg(r#"[9999999999,null,"https://issuer","aud","alice"]"#)
        );
        assert_eq!(parse(&array_claims).unwrap_err(), Reason::Malformed);
        let array_header = format!("{}.{}.c2ln", seg(r#"["RS256"]"#), seg("{}"));
        assert_eq!(parse(&array_header).unwrap_err(), Reason::Malformed);
        for not_object in ["1", "\"x\"", "null", "true"] {
            let t = format!("{h}.{}.c2ln", seg(not_object));
            assert_eq!(parse(&t).unwrap_err(), Reason::Malformed, "{not_object}");
        }
        let dup_claims = format!("{h}.{}.c2ln", seg(r#"{"sub":"alice","sub":"bob"}"#));
        assert_eq!(parse(&dup_claims).unwrap_err(), Reason::Malformed);
        let dup_header = format!(
            "{}.{}.c2ln",
            seg(r#"{"alg":"RS256","alg":"ES256"}"#),
            seg("{}")
        );
        assert_eq!(parse(&dup_header).unwrap_err(), Reason::Malformed);
        let big = format!("{ok}{}", "A".repeat(MAX_TOKEN_BYTES));
        assert_eq!(parse(&big).unwrap_err(), Reason::TooLarge);
    }

    fn jwk(v: Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn algorithms_come_from_the_jwk_never_hmac() {
        let rsa = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
        assert_eq!(allowed_algorithms(&jwk(rsa.clone())).unwrap().len(), 6);
        let mut rs256 = rsa.clone();
        rs256["alg"] = json!("RS256");
        assert_eq!(
            allowed_algorithms(&jwk(rs256)),
            Some(vec![Algorithm::RS256])
        );
        let mut lying = rsa.clone();
        lying["alg"] = json!("ES256");
        assert_eq!(allowed_algorithms(&jwk(lying)), None);
        let mut enc = rsa;
        enc["use"] = json!("enc");
        assert_eq!(allowed_algorithms(&jwk(enc)), None);
        let p256 = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        assert_eq!(allowed_algorithms(&jwk(p256)), Some(vec![Algorithm::ES256]));
        let p384 = json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"});
        assert_eq!(allowed_algorithms(&jwk(p384)), Some(vec![Algorithm::ES384]));
        let p521 = json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"});
        assert_eq!(allowed_algorithms(&jwk(p521)), None);
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"});
        assert_eq!(allowed_algorithms(&jwk(ed)), Some(vec![Algorithm::EdDSA]));
        let oct = json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"});
        assert_eq!(allowed_algorithms(&jwk(oct)), None);
    }

    #[test]
    fn a_jwks_without_usable_keys_is_refused_and_short_rsa_keys_are_skipped() {
        let short = json!({"keys": [{"kty": "RSA", "kid": "tiny", "n": "AQAB", "e": "AQAB"}]});
        assert!(KeySet::parse(short.to_string().as_bytes(), 1).is_err());
        let oct = json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]});
        assert!(KeySet::parse(oct.to_string().as_bytes(), 1).is_err());
        assert!(KeySet::parse(b"not json", 1).is_err());
    }

    #[test]
    fn cache_hits_until_exp_and_only_for_the_same_jwks_generation() {
        let cache = TokenCache::new(64);
        let v = Verified {
            sub: "u".into(),
            exp: NOW + 10,
        };
        cache.insert([7; 32], &v, 1, NOW);
        assert_eq!(cache.get(&[7; 32], NOW, 1), Some(v.clone()));
        assert_eq!(cache.get(&[7; 32], NOW + 10, 1), Some(v));
        assert_eq!(cache.get(&[7; 32], NOW + 11, 1), None);
        assert_eq!(cache.get(&[7; 32], NOW, 2), None);
        assert_eq!(cache.get(&[8; 32], NOW, 1), None);
        // A sweep keeps live tokens and drops expired ones.
        cache.sweep(NOW + 5);
        assert_eq!(cache.len(), 1);
        cache.sweep(NOW + 11);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn cache_never_grows_past_its_bound() {
        let cache = TokenCache::new(CACHE_SHARDS * 4);
        for i in 0..10_000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            key[0] = (i % 251) as u8;
            let v = Verified {
                sub: "u".into(),
                exp: NOW + 100,
            };
            cache.insert(key, &v, 1, NOW);
        }
        assert!(cache.len() <= CACHE_SHARDS * 4, "{}", cache.len());
    }
}

/// Property tests (issue #15): the token parser never panics, and the header and claims set are
/// JSON objects without duplicate members (SPEC §8a), whatever else a token holds.
#[cfg(test)]
mod proptests {
    #![allow(clippy::unwrap_used)]
    use std::sync::LazyLock;

    use jsonwebtoken::EncodingKey;
    use proptest::prelude::*;
    use proptest::sample::select;
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: Some("https://idp".into()),
            audience: Some("gw".into()),
        }
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// Header and claims given as JSON text (so that duplicate members can be written).
    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(claims))
    }

    /// Everything but the signature: what `verify` concludes about a token.
    fn verdict(token: &str) -> Result<Verified, Reason> {
        let parsed = parse(token)?;
        check_claims(&parsed.claims, &rules(), NOW)
    }

    const HEADER: &str = r#"{"alg":"RS256","kid":"k1"}"#;

    /// The members the header and claims structs name.
    const REGISTERED: [&str; 8] = ["alg", "kid", "crit", "exp", "nbf", "iss", "aud", "sub"];

    fn good_claims() -> Value {
        json!({"sub": "u1", "iss": "https://idp", "aud": "gw", "exp": NOW + 60})
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            ".{0,8}".prop_map(Value::String),
            select(vec![
                "RS256",
                "ES256",
                "EdDSA",
                "none",
                "HS256",
                "u1",
                "gw",
                "https://idp"
            ])
            .prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    select(vec![
                        "alg", "kid", "crit", "exp", "nbf", "iss", "aud", "sub", "x"
                    ]),
                    inner,
                    0..6,
                )
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.into(), v)).collect())),
            ]
        })
    }

    /// A JSON array, number, string, bool or null, as JSON text. Arrays include the ones whose
    /// elements would fill the struct's fields in order.
    fn not_an_object(filling: Vec<Value>) -> impl Strategy<Value = String> {
        prop_oneof![
            2 => Just(Value::Array(filling)),
            1 => Just(json!([])),
            2 => proptest::collection::vec(any_json(), 0..6).prop_map(Value::Array),
            1 => any::<i64>().prop_map(|n| json!(n)),
            1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            1 => ".{0,12}".prop_map(Value::String),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => Just(Value::Null),
        ]
        .prop_map(|v| v.to_string())
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,12}".prop_map(Value::String),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ]
        .prop_map(|v| v.to_string())
    }

    /// The claims fields in declaration order (exp, nbf, iss, aud, sub), all valid.
    fn claims_filling() -> Vec<Value> {
        vec![
            json!(NOW + 60),
            Value::Null,
            json!("https://idp"),
            json!("gw"),
            json!("u1"),
        ]
    }

    /// The header fields in declaration order (alg, kid, crit).
    fn header_filling() -> Vec<Value> {
        vec![json!("RS256"), json!("k1")]
    }

    /// A JSON object as text with `name` written twice (the given values, in place of any
    /// member of that name), the other members of `base` around them.
    fn with_duplicate(base: &Value, name: &str, first: &Value, second: &Value) -> String {
        let mut members: Vec<String> = base
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.as_str() != name)
            .map(|(k, v)| format!("{}:{v}", json!(k)))
            .collect();
        members.insert(0, format!("{}:{first}", json!(name)));
        members.push(format!("{}:{second}", json!(name)));
        format!("{{{}}}", members.join(","))
    }

    fn is_refused(r: &Result<Verified, Reason>) -> bool {
        r.is_err()
    }

    /// The Ed25519 fixture key, trusted by a verifier (no JWKS URL: nothing is fetched).
    struct Signer {
        key: EncodingKey,
        verifier: JwtVerifier,
        runtime: tokio::runtime::Runtime,
    }

    static SIGNER: LazyLock<Signer> = LazyLock::new(|| {
        let key =
            EncodingKey::from_ed_pem(include_bytes!("../tests/fixtures/ed25519.pem")).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
        jwk.common.key_id = Some("ed".into());
        let config = JwtConfig {
            issuer: Some("https://idp".into()),
            audience: Some("gw".into()),
            jwks_url: None,
            cache_ttl: Duration::from_secs(300),
            skip_verify: false,
            refresh_min_interval: Duration::from_secs(30),
        };
        let verifier = JwtVerifier::new(&config, Arc::new(Metrics::new().unwrap())).unwrap();
        assert_eq!(verifier.trust(&json!({"keys": [jwk]})), 1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Signer {
            key,
            verifier,
            runtime,
        }
    });

    impl Signer {
        /// Signs the header and claims texts as they are, and verifies the token now.
        fn verify(&self, header: &str, claims: &str) -> Result<Verified, VerifyError> {
            let message = format!("{}.{}", b64(header), b64(claims));
            let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &self.key, Algorithm::EdDSA)
                .unwrap();
            let token = format!("{message}.{sig}");
            self.runtime.block_on(self.verifier.verify_uncached(&token))
        }
    }

    fn live_claims(sub: &str) -> Value {
        json!({"sub": sub, "iss": "https://idp", "aud": "gw", "exp": unix_now() + 600})
    }

    const ED_HEADER: &str = r#"{"alg":"EdDSA","kid":"ed"}"#;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any string at all: no panic; not three segments (two dots) is malformed.
        #[test]
        fn any_string_is_judged_without_panic(s in "(?s).{0,300}") {
            let got = parse(&s);
            if s.split('.').count() != 3 {
                prop_assert_eq!(got.unwrap_err(), Reason::Malformed);
            }
        }

        /// Three segments of base64url (and not quite base64url) text, or encodings of any
        /// bytes or any JSON: no panic in parsing or in the claim checks.
        #[test]
        fn any_segments_are_judged_without_panic(
            h in prop_oneof![
                "[A-Za-z0-9_=+/-]{0,60}",
                proptest::collection::vec(any::<u8>(), 0..60)
                    .prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
                any_json().prop_map(|v| b64(&v.to_string())),
            ],
            p in prop_oneof![
                "[A-Za-z0-9_=+/-]{0,60}",
                proptest::collection::vec(any::<u8>(), 0..60)
                    .prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
                any_json().prop_map(|v| b64(&v.to_string())),
            ],
            s in "[A-Za-z0-9_=-]{0,20}",
        ) {
            let _ = verdict(&format!("{h}.{p}.{s}"));
            let _ = verdict(&format!("{}.{p}.{s}", b64(HEADER)));
            let _ = verdict(&format!("{h}.{}.{s}", b64(&good_claims().to_string())));
        }

        /// Any claims object (registered names with values of any type): no panic; accepted
        /// only with `exp`, `iss`, `aud` and `sub` as the rules want them.
        #[test]
        fn any_claims_object_is_judged_without_panic(claims in any_json()) {
            if let Ok(v) = verdict(&token(HEADER, &claims.to_string())) {
                prop_assert_eq!(claims["sub"].as_str(), Some(&*v.sub));
                prop_assert_eq!(claims["iss"].as_str(), Some("https://idp"));
                prop_assert!(claims["exp"].is_number());
            }
        }

        /// A header that is a number, string, bool or null is refused.
        #[test]
        fn a_scalar_header_is_refused(header in scalar()) {
            prop_assert!(is_refused(&verdict(&token(&header, &good_claims().to_string()))));
        }

        /// A claims set that is a number, string, bool or null is refused.
        #[test]
        fn a_scalar_claims_set_is_refused(claims in scalar()) {
            prop_assert!(is_refused(&verdict(&token(HEADER, &claims))));
        }

        /// A header that is not an object — an array, even one filling `alg` and `kid` in
        /// order — is refused.
        #[test]
        fn a_header_that_is_not_an_object_is_refused(header in not_an_object(header_filling())) {
            let got = verdict(&token(&header, &good_claims().to_string()));
            prop_assert!(is_refused(&got), "{} gave {:?}", header, got);
        }

        /// A claims set that is not an object — an array, even one filling exp, nbf, iss, aud
        /// and sub in order — is refused.
        #[test]
        fn a_claims_set_that_is_not_an_object_is_refused(
            claims in not_an_object(claims_filling()),
        ) {
            let got = verdict(&token(HEADER, &claims));
            prop_assert!(is_refused(&got), "{} gave {:?}", claims, got);
        }

        /// A registered member written twice (same value or not) is refused, in the header
        /// and in the claims set.
        #[test]
        fn a_registered_member_twice_is_refused(
            claim in select(vec!["exp", "nbf", "iss", "aud", "sub"]),
            header_member in select(vec!["alg", "kid"]),
            same in any::<bool>(),
        ) {
            let good = good_claims();
            let first = good.get(claim).cloned().unwrap_or(json!(NOW));
            let second = if same { first.clone() } else { json!("other") };
            let claims = with_duplicate(&good, claim, &first, &second);
            prop_assert!(is_refused(&verdict(&token(HEADER, &claims))), "{}", claims);
            let header: Value = serde_json::from_str(HEADER).unwrap();
            let first = header[header_member].clone();
            let second = if same { first.clone() } else { json!("ES256") };
            let header = with_duplicate(&header, header_member, &first, &second);
            let got = verdict(&token(&header, &good.to_string()));
            prop_assert!(is_refused(&got), "{}", header);
        }

        /// Any member written twice, registered or not (`typ`, `iat`, `jti`, private names),
        /// is refused: SPEC §8a says no duplicate member names.
        #[test]
        fn any_member_twice_is_refused(
            name in prop_oneof![
                select(vec!["typ", "cty", "iat", "jti", "x5t"]).prop_map(String::from),
                "[a-z]{1,6}",
            ],
            first in any_json(),
            second in any_json(),
            in_header in any::<bool>(),
        ) {
            let good = good_claims();
            let header: Value = serde_json::from_str(HEADER).unwrap();
            let t = if in_header {
                token(&with_duplicate(&header, &name, &first, &second), &good.to_string())
            } else {
                token(HEADER, &with_duplicate(&good, &name, &first, &second))
            };
            prop_assert!(is_refused(&verdict(&t)), "{} twice", name);
        }

        /// A good token stays good with any unregistered members added, in any order, and
        /// gives its `sub` back unchanged.
        #[test]
        fn extra_members_change_nothing(
            extra in proptest::collection::btree_map("[a-z]{1,6}", any_json(), 0..5),
            sub in "[!-~]([ -~]{0,40}[!-~])?",
        ) {
            let mut claims = good_claims();
            claims["sub"] = json!(sub);
            let mut header: Value = serde_json::from_str(HEADER).unwrap();
            for (k, v) in extra {
                if !REGISTERED.contains(&k.as_str()) {
                    claims[&k] = v.clone();
                    header[&k] = v;
                }
            }
            let got = verdict(&token(&header.to_string(), &claims.to_string())).unwrap();
            prop_assert_eq!(&*got.sub, sub.as_str());
        }

        /// `sub` is refused when empty, over 256 bytes, or holding control or non-ASCII
        /// characters; accepted as it is when 1–256 visible ASCII characters.
        #[test]
        fn sub_must_be_short_printable_ascii(
            good in "[!-~]([ -~]{0,254}[!-~])?",
            bad in prop_oneof![
                Just(String::new()),
                "[!-~]{257,300}",
                "[ -~]{0,5}[\\x00-\\x1f\\x7f][ -~]{0,5}",
                "[ -~]{0,5}[\\u{80}-\\u{10ffff}][ -~]{0,5}",
            ],
        ) {
            let mut claims = good_claims();
            claims["sub"] = json!(good);
            let v = verdict(&token(HEADER, &claims.to_string())).unwrap();
            prop_assert_eq!(&*v.sub, good.as_str());
            claims["sub"] = json!(bad);
            prop_assert_eq!(
                verdict(&token(HEADER, &claims.to_string())).unwrap_err(),
                Reason::BadClaim("sub")
            );
        }

        /// `sub` with leading or trailing whitespace is refused (SPEC §8a: the identity the
        /// upstream receives is byte for byte the gateway's own).
        #[test]
        fn sub_with_surrounding_whitespace_is_refused(
            core in "[!-~]{1,20}",
            before in "[ \\t]{0,2}",
            after in "[ \\t]{0,2}",
        ) {
            prop_assume!(!before.is_empty() || !after.is_empty());
            let mut claims = good_claims();
            claims["sub"] = json!(format!("{before}{core}{after}"));
            let got = verdict(&token(HEADER, &claims.to_string()));
            prop_assert!(is_refused(&got), "{:?}", claims["sub"]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// End to end with a real signature (the Ed25519 fixture key): a correctly signed token
        /// whose claims set is not an object is still refused by the verifier.
        #[test]
        fn a_signed_claims_set_that_is_not_an_object_is_refused(
            claims in not_an_object(vec![
                json!(unix_now() + 600),
                Value::Null,
                json!("https://idp"),
                json!("gw"),
                json!("u1"),
            ]),
        ) {
            let got = SIGNER.verify(ED_HEADER, &claims);
            prop_assert!(got.is_err(), "{} gave {:?}", claims, got);
        }

        /// The same for a correctly signed token whose header is not an object.
        #[test]
        fn a_signed_header_that_is_not_an_object_is_refused(
            header in not_an_object(vec![json!("EdDSA"), json!("ed")]),
        ) {
            let got = SIGNER.verify(&header, &live_claims("u1").to_string());
            prop_assert!(got.is_err(), "{} gave {:?}", header, got);
        }

        /// ... while the same key's tokens with object claims pass, `sub` unchanged.
        #[test]
        fn a_signed_good_token_passes(sub in "[!-~]([ -~]{0,40}[!-~])?") {
            let got = SIGNER.verify(ED_HEADER, &live_claims(&sub).to_string()).unwrap();
            prop_assert_eq!(&*got.sub, sub.as_str());
        }
    }
}
