//! Bearer-token authentication (SPEC §2, §4; issue #3): [`AuthLayer`] adapts
//! [`JwtVerifier`](crate::jwt::JwtVerifier) to the request path. What later layers and handlers
//! rely on is [`Caller`], put in the request extensions from a verified token only: a client can
//! never choose who it is (`routes::forward_with_body` sends it upstream as `X-User-ID`).
//!
//! Two modes:
//! - [`AuthLayer::required`] (protected routes): no valid token → 401.
//! - [`AuthLayer::optional`] (queue `join`/`enter`): no `Authorization` header → the request
//!   goes on with no `Caller` (anonymous); a header that is present but not a valid bearer
//!   token → 401, never silently anonymous. Use it as a route layer on those routes:
//!   ```ignore
//!   Router::new()
//!       .route("/api/v1/queue/join", post(queue::join))
//!       .route_layer(AuthLayer::optional(state.jwt.clone(), state.metrics.clone()))
//!   ```
//!   and read `Option<Extension<Caller>>` (or `parts.extensions.get::<Caller>()`) in the handler.
//!
//! Refusals: header missing (or another scheme, e.g. `Basic`) → 401 with `WWW-Authenticate:
//! Bearer`; a bad token → 401 with `error="invalid_token"`; no JWKS loaded yet → 503
//! `UPSTREAM_UNAVAILABLE`. The reason goes to the log (with a short hash of the token, never the
//! token) and to `jwt_verifications_total{result}`; the client reads a generic message.
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, Either, Ready, ready};
use http::{HeaderMap, header};
use tower::{Layer, Service};

use crate::error::{ApiError, AuthFailure};
use crate::jwt::{self, JwtVerifier, VerifyError};
use crate::telemetry::{AccessLog, Metrics};
use prometheus::IntCounter;

/// The verified caller: the token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    sub: Arc<str>,
}

impl Caller {
    pub fn new(sub: impl Into<Arc<str>>) -> Self {
        Caller { sub: sub.into() }
    }

    pub fn user_id(&self) -> &str {
        &self.sub
    }

    /// The same, shared (the access line keeps it without a copy).
    pub fn shared_user_id(&self) -> &Arc<str> {
        &self.sub
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Required,
    Optional,
}

/// Builds [`Auth`] services (tower-http naming).
#[derive(Clone)]
pub struct AuthLayer {
    verifier: JwtVerifier,
    metrics: Arc<Metrics>,
    /// `jwt_verifications_total{result="ok"}`, resolved once.
    verified: IntCounter,
    mode: Mode,
}

impl AuthLayer {
    /// Protected routes: a valid bearer token is required.
    pub fn required(verifier: JwtVerifier, metrics: Arc<Metrics>) -> Self {
        AuthLayer::new(verifier, metrics, Mode::Required)
    }

    /// Queue routes: no `Authorization` header → anonymous; present but invalid → 401.
    pub fn optional(verifier: JwtVerifier, metrics: Arc<Metrics>) -> Self {
        AuthLayer::new(verifier, metrics, Mode::Optional)
    }

    fn new(verifier: JwtVerifier, metrics: Arc<Metrics>, mode: Mode) -> Self {
        AuthLayer {
            verified: metrics.jwt_verifications.with_label_values(&["ok"]),
            verifier,
            metrics,
            mode,
        }
    }

    /// The caller for these headers: `Ok(None)` is anonymous (optional mode only).
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
        let Some(token) = self.bearer(headers)? else {
            return Ok(None);
        };
        let verified = self.verifier.verify(token).await;
        self.judge(token, verified).map(Some)
    }

    /// As [`AuthLayer::authenticate`] when that needs no waiting (almost always: a cached or
    /// loaded-key token); `None` when it must wait for a JWKS refresh.
    fn authenticate_now(&self, headers: &HeaderMap) -> Option<Result<Option<Caller>, ApiError>> {
        let token = match self.bearer(headers) {
            Ok(Some(token)) => token,
            Ok(None) => return Some(Ok(None)),
            Err(e) => return Some(Err(e)),
        };
        let verified = self.verifier.verify_now(token)?;
        Some(self.judge(token, verified).map(Some))
    }

    /// The bearer token of these headers; `Ok(None)` when there is none and that is allowed.
    fn bearer<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, ApiError> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (value, more) = (values.next(), values.next().is_some());
        let Some(value) = value else {
            return match self.mode {
                Mode::Optional => Ok(None),
                Mode::Required => Err(self.refuse("missing", AuthFailure::Missing, None)),
            };
        };
        if more {
            return Err(self.refuse("multiple_headers", AuthFailure::Invalid, None));
        }
        let Ok(value) = value.to_str() else {
            return Err(self.refuse("malformed", AuthFailure::Invalid, None));
        };
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            // RFC 6750 §3.1: another scheme is "no bearer credentials", so no error code.
            return Err(self.refuse("wrong_scheme", AuthFailure::Missing, None));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(self.refuse("empty", AuthFailure::Invalid, None));
        }
        Ok(Some(token))
    }

    /// The verifier's answer as a caller or a refusal, counted and logged.
    fn judge(
        &self,
        token: &str,
        verified: Result<jwt::Verified, VerifyError>,
    ) -> Result<Caller, ApiError> {
        match verified {
            Ok(v) => {
                self.verified.inc();
                Ok(Caller::new(v.sub))
            }
            Err(VerifyError::Invalid(reason)) => {
                Err(self.refuse(reason.label(), AuthFailure::Invalid, Some(token)))
            }
            Err(VerifyError::NoKeys) => {
                self.metrics
                    .jwt_verifications
                    .with_label_values(&["no_keys"])
                    .inc();
                tracing::warn!("token not checked: no JWKS loaded yet");
                Err(ApiError::UpstreamUnavailable(
                    "authentication is not available yet, retry later",
                ))
            }
        }
    }

    /// Puts the verified caller where later layers and handlers read it.
    fn admit(req: &mut Request, caller: Option<Caller>) {
        if let Some(caller) = caller {
            if let Some(log) = req.extensions().get::<AccessLog>() {
                log.user(caller.shared_user_id());
            }
            req.extensions_mut().insert(caller);
        }
    }

    fn refuse(&self, reason: &'static str, failure: AuthFailure, token: Option<&str>) -> ApiError {
        self.metrics
            .jwt_verifications
            .with_label_values(&[reason])
            .inc();
        match token {
            Some(t) => tracing::info!(
                auth.reason = reason,
                token.hash = %jwt::fingerprint(t),
                "authentication refused"
            ),
            None => tracing::info!(auth.reason = reason, "authentication refused"),
        }
        ApiError::Unauthenticated(failure)
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

/// Authenticates, then calls the inner service with [`Caller`] in the extensions.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S> Service<Request> for Auth<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    /// Refused at once, the inner service called at once, or (waiting for a JWKS refresh) boxed.
    type Future = Either<
        Either<Ready<Result<Response, S::Error>>, S::Future>,
        BoxFuture<'static, Result<Response, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        match self.layer.authenticate_now(req.headers()) {
            Some(Ok(caller)) => {
                AuthLayer::admit(&mut req, caller);
                // The service made ready by `poll_ready`, called at once: no clone, no box.
                Either::Left(Either::Right(self.inner.call(req)))
            }
            Some(Err(e)) => Either::Left(Either::Left(ready(Ok(e.into_response())))),
            None => {
                // Take the service that was driven to readiness; leave a clone in its place.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let layer = self.layer.clone();
                Either::Right(Box::pin(async move {
                    match layer.authenticate(req.headers()).await {
                        Ok(caller) => AuthLayer::admit(&mut req, caller),
                        Err(e) => return Ok(e.into_response()),
                    }
                    inner.call(req).await
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::convert::Infallible;

    use axum::body::Body;
    use base64::Engine;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::config::Config;

    fn skip_verify_layer(optional: bool) -> AuthLayer {
        let config = Config::from_vars([("JWT_SKIP_VERIFY", "true")]).unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let v = JwtVerifier::new(&config.jwt, metrics.clone()).unwrap();
        if optional {
            AuthLayer::optional(v, metrics)
        } else {
            AuthLayer::required(v, metrics)
        }
    }

    fn unsigned(sub: &str) -> String {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        format!(
            "Bearer {}.{}.c2ln",
            b64(serde_json::json!({"alg": "RS256", "kid": "k"})),
            b64(serde_json::json!({"sub": sub, "exp": exp}))
        )
    }

    /// Echoes the caller it saw as the body.
    async fn echo(req: Request) -> Result<Response, Infallible> {
        let who = req
            .extensions()
            .get::<Caller>()
            .map_or("anonymous".to_owned(), |c| c.user_id().to_owned());
        Ok(Response::new(Body::from(who)))
    }

    async fn call(layer: AuthLayer, auth: Option<&str>) -> (u16, String, Option<String>) {
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service(tower::service_fn(echo));
        let mut req = Request::builder().uri("/x");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = svc.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status().as_u16();
        let www = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned(), www)
    }

    #[tokio::test]
    async fn required_mode_refuses_a_missing_or_foreign_scheme_without_error_code() {
        for auth in [None, Some("Basic dXNlcjpwYXNz")] {
            let (status, _, www) = call(skip_verify_layer(false), auth).await;
            assert_eq!(status, 401, "{auth:?}");
            assert_eq!(www.as_deref(), Some("Bearer"));
        }
    }

    #[tokio::test]
    async fn a_bad_bearer_is_invalid_token_in_both_modes() {
        for optional in [false, true] {
            for auth in ["Bearer", "Bearer ", "Bearer a.b", "Bearer !!.??.**"] {
                let (status, _, www) = call(skip_verify_layer(optional), Some(auth)).await;
                assert_eq!(status, 401, "{auth:?}");
                assert_eq!(www.as_deref(), Some("Bearer error=\"invalid_token\""));
            }
        }
    }

    #[tokio::test]
    async fn optional_mode_lets_anonymous_through_but_never_a_bad_header() {
        let (status, body, _) = call(skip_verify_layer(true), None).await;
        assert_eq!((status, body.as_str()), (200, "anonymous"));
        let (status, _, _) = call(skip_verify_layer(true), Some("Basic eA==")).await;
        assert_eq!(status, 401);
        let token = unsigned("user-9");
        let (status, body, _) = call(skip_verify_layer(true), Some(&token)).await;
        assert_eq!((status, body.as_str()), (200, "user-9"));
    }

    #[tokio::test]
    async fn the_scheme_is_case_insensitive_and_the_caller_is_the_sub() {
        let token = unsigned("user-1").replacen("Bearer", "bEaReR", 1);
        let (status, body, _) = call(skip_verify_layer(false), Some(&token)).await;
        assert_eq!((status, body.as_str()), (200, "user-1"));
    }
}
