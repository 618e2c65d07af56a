//! Typed, validated configuration (SPEC §8). The only module that reads environment variables.
//!
//! `envy` collects every variable as text into [`RawConfig`]; each one is then parsed by a
//! function that knows the variable's name, so a bad value stops start-up with
//! `NAME="value": expected …` and never silently becomes the default.
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// A configuration error: which variable, what it held, what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}={value:?}: expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{name} is required{why}")]
    Missing {
        name: &'static str,
        why: &'static str,
    },
    #[error("reading the environment: {0}")]
    Env(String),
}

/// A value that must never be printed (passwords). `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// `None`: the in-memory store (single replica only).
    pub redis: Option<RedisConfig>,
    pub jwt: JwtConfig,
    pub rate_limit: RateLimitConfig,
    pub idempotency_ttl: Duration,
    pub reservation: UpstreamConfig,
    pub payment: UpstreamConfig,
    pub routing: RoutingConfig,
    pub telemetry: TelemetryConfig,
    pub max_body_size: usize,
    pub max_in_flight: usize,
    /// Tokio worker threads; `None` is one per CPU this process may use. One thread runs the
    /// single-threaded scheduler (no cross-thread wake-ups).
    pub worker_threads: Option<usize>,
    pub trusted_proxies: Vec<IpNet>,
    pub cors_allowed_origins: Vec<String>,
    pub queue: QueueConfig,
    pub shutdown_delay: Duration,
    pub shutdown_timeout: Duration,
    /// SPEC §4: the whole request body must arrive within this, else 408 and the connection closed.
    pub request_body_timeout: Duration,
    /// SPEC §4: a response that makes no write progress for this long is abandoned.
    pub response_write_timeout: Duration,
    /// SPEC §6: replicas that must acknowledge an in-flight idempotency record (`WAIT`) before
    /// the write is forwarded; 0 = do not wait.
    pub redis_wait_replicas: u32,
    /// Set by `--demo` only: serve `GET /demo/token`.
    pub demo: bool,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// One or more `redis://` URLs (scheme added when the variable gave `host:port`).
    pub urls: Vec<String>,
    pub cluster: bool,
    pub password: Option<Secret>,
    pub db: i64,
    pub tls: bool,
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub jwks_url: Option<String>,
    pub cache_ttl: Duration,
    pub skip_verify: bool,
    /// `JWT_REFRESH_MIN_INTERVAL` (30s): an unknown `kid` refetches the JWKS at most this often.
    pub refresh_min_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_ENABLED=false` turns the per-client bucket off (benchmarks, trusted networks).
    pub enabled: bool,
    pub rps: f64,
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: &'static str,
    pub bases: Vec<reqwest::Url>,
    pub timeout: Duration,
    /// Cap on concurrent requests to this upstream (bulkhead, SPEC §7a).
    pub max_concurrency: usize,
}

/// Load balancing, ejection and circuit-breaking settings shared by both upstreams (SPEC §7a).
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Consecutive failures that eject an instance.
    pub eject_after: u32,
    /// First ejection cooldown; doubles on each repeat ejection up to `eject_max`.
    pub eject_base: Duration,
    pub eject_max: Duration,
}

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub otlp_endpoint: String,
    pub trace_sampling: f64,
    pub log_level: String,
    pub service_name: String,
    pub service_version: String,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub admission_rps: f64,
    pub heartbeat_ttl: Duration,
    pub reservation_token_ttl: Duration,
    pub require_admission: bool,
    /// `ADMIN_SCOPE`: the scope a bearer token needs for `/admin/v1` (SPEC §5a).
    pub admin_scope: String,
    /// `QUEUE_EVENTS_OPEN`: `false` makes events nobody defined 404 on join.
    pub events_open: bool,
    /// `QUEUE_ADAPTIVE_MAX_ERRORS`: share of 5xx/timeouts over 10 s above which adaptive
    /// admission backs off.
    pub adaptive_max_errors: f64,
    /// `QUEUE_ADAPTIVE_P99`: reservation-call p99 over 10 s above which it backs off.
    pub adaptive_p99: Duration,
}

/// Every variable of SPEC §8 as text; `envy` matches them by (lower-cased) name.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    port: Option<String>,
    redis_addr: Option<String>,
    redis_cluster: Option<String>,
    redis_password: Option<String>,
    redis_db: Option<String>,
    redis_tls: Option<String>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    jwt_jwks_url: Option<String>,
    jwt_cache_ttl: Option<String>,
    jwt_skip_verify: Option<String>,
    jwt_refresh_min_interval: Option<String>,
    rate_limit_enabled: Option<String>,
    rate_limit_rps: Option<String>,
    rate_limit_burst: Option<String>,
    idempotency_ttl_seconds: Option<String>,
    upstream_reservation_base: Option<String>,
    upstream_payment_base: Option<String>,
    upstream_reservation_timeout: Option<String>,
    upstream_payment_timeout: Option<String>,
    upstream_reservation_max_concurrency: Option<String>,
    upstream_payment_max_concurrency: Option<String>,
    upstream_eject_after: Option<String>,
    upstream_eject_base: Option<String>,
    upstream_eject_max: Option<String>,
    otel_exporter_otlp_endpoint: Option<String>,
    trace_sampling: Option<String>,
    log_level: Option<String>,
    service_name: Option<String>,
    service_version: Option<String>,
    max_body_size: Option<String>,
    max_in_flight: Option<String>,
    worker_threads: Option<String>,
    trusted_proxies: Option<String>,
    cors_allowed_origins: Option<String>,
    queue_admission_rps: Option<String>,
    queue_heartbeat_ttl_seconds: Option<String>,
    queue_reservation_token_ttl_seconds: Option<String>,
    queue_require_admission: Option<String>,
    admin_scope: Option<String>,
    queue_events_open: Option<String>,
    queue_adaptive_max_errors: Option<String>,
    queue_adaptive_p99: Option<String>,
    shutdown_delay: Option<String>,
    shutdown_timeout: Option<String>,
    request_body_timeout: Option<String>,
    response_write_timeout: Option<String>,
    redis_wait_replicas: Option<String>,
}

pub const DEFAULT_RESERVATION_BASE: &str =
    "http://reservation-api.tickets-api.svc.cluster.local:8080";
pub const DEFAULT_PAYMENT_BASE: &str = "http://payment-sim-api.tickets-api.svc.cluster.local:8080";

impl Config {
    /// Reads the process environment. `main` is the only caller.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the given variables (tests pass their own; nothing touches the process env).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        // Later values win, as with `env K=v` (the harness layers overrides on defaults).
        let vars: std::collections::HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let raw: RawConfig = envy::from_iter(vars).map_err(|e| ConfigError::Env(e.to_string()))?;
        Self::parse(raw)
    }

    fn parse(r: RawConfig) -> Result<Self, ConfigError> {
        let redis = match non_empty(r.redis_addr) {
            None => None,
            Some(addr) => {
                let tls = parse_or("REDIS_TLS", r.redis_tls, false, parse_bool)?;
                let urls = addr
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(|a| redis_url(a, tls))
                    .collect::<Option<Vec<_>>>()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        invalid(
                            "REDIS_ADDR",
                            &addr,
                            "host:port, redis://… or rediss://… (comma-separated for a cluster)",
                        )
                    })?;
                let cluster = parse_or("REDIS_CLUSTER", r.redis_cluster, false, parse_bool)?
                    || urls.len() > 1;
                let db = parse_or("REDIS_DB", r.redis_db.clone(), 0, parse_num)?;
                if cluster && db != 0 {
                    // A Redis Cluster has only database 0: fail now, not on every connection.
                    return Err(invalid(
                        "REDIS_DB",
                        r.redis_db.as_deref().unwrap_or_default(),
                        "0 with Redis Cluster (a cluster has only database 0)",
                    ));
                }
                Some(RedisConfig {
                    urls,
                    cluster,
                    password: non_empty(r.redis_password).map(Secret),
                    db,
                    tls,
                })
            }
        };
        let jwt = JwtConfig {
            issuer: non_empty(r.jwt_issuer),
            audience: non_empty(r.jwt_audience),
            jwks_url: match non_empty(r.jwt_jwks_url) {
                Some(u) => Some(parse_url("JWT_JWKS_URL", &u)?.to_string()),
                None => None,
            },
            cache_ttl: parse_or(
                "JWT_CACHE_TTL",
                r.jwt_cache_ttl,
                Duration::from_secs(600),
                parse_duration,
            )?,
            skip_verify: parse_or("JWT_SKIP_VERIFY", r.jwt_skip_verify, false, parse_bool)?,
            refresh_min_interval: parse_or(
                "JWT_REFRESH_MIN_INTERVAL",
                r.jwt_refresh_min_interval,
                Duration::from_secs(30),
                parse_duration,
            )?,
        };
        let rate_limit = RateLimitConfig {
            enabled: parse_or("RATE_LIMIT_ENABLED", r.rate_limit_enabled, true, parse_bool)?,
            rps: parse_or("RATE_LIMIT_RPS", r.rate_limit_rps, 50.0, parse_positive_f64)?,
            burst: parse_or(
                "RATE_LIMIT_BURST",
                r.rate_limit_burst,
                100,
                parse_positive_u32,
            )?,
        };
        let reservation = UpstreamConfig {
            name: "reservation",
            bases: parse_bases(
                "UPSTREAM_RESERVATION_BASE",
                r.upstream_reservation_base,
                DEFAULT_RESERVATION_BASE,
            )?,
            timeout: parse_or(
                "UPSTREAM_RESERVATION_TIMEOUT",
                r.upstream_reservation_timeout,
                Duration::from_millis(600),
                parse_nonzero_duration,
            )?,
            max_concurrency: parse_or(
                "UPSTREAM_RESERVATION_MAX_CONCURRENCY",
                r.upstream_reservation_max_concurrency,
                1024,
                parse_positive_usize,
            )?,
        };
        let payment = UpstreamConfig {
            name: "payment",
            bases: parse_bases(
                "UPSTREAM_PAYMENT_BASE",
                r.upstream_payment_base,
                DEFAULT_PAYMENT_BASE,
            )?,
            timeout: parse_or(
                "UPSTREAM_PAYMENT_TIMEOUT",
                r.upstream_payment_timeout,
                Duration::from_millis(400),
                parse_nonzero_duration,
            )?,
            max_concurrency: parse_or(
                "UPSTREAM_PAYMENT_MAX_CONCURRENCY",
                r.upstream_payment_max_concurrency,
                512,
                parse_positive_usize,
            )?,
        };
        let routing = RoutingConfig {
            eject_after: parse_or(
                "UPSTREAM_EJECT_AFTER",
                r.upstream_eject_after,
                5,
                parse_positive_u32,
            )?,
            eject_base: parse_or(
                "UPSTREAM_EJECT_BASE",
                r.upstream_eject_base,
                Duration::from_secs(5),
                parse_nonzero_duration,
            )?,
            eject_max: parse_or(
                "UPSTREAM_EJECT_MAX",
                r.upstream_eject_max,
                Duration::from_secs(60),
                parse_nonzero_duration,
            )?,
        };
        let telemetry = TelemetryConfig {
            otlp_endpoint: match non_empty(r.otel_exporter_otlp_endpoint) {
                Some(u) => parse_url("OTEL_EXPORTER_OTLP_ENDPOINT", &u)?.to_string(),
                None => "http://otel-collector:4317".to_owned(),
            },
            trace_sampling: parse_or("TRACE_SAMPLING", r.trace_sampling, 0.1, parse_ratio)?,
            log_level: match non_empty(r.log_level) {
                Some(l) => parse_log_level(&l)?,
                None => "info".to_owned(),
            },
            service_name: non_empty(r.service_name).unwrap_or_else(|| "gateway-api".to_owned()),
            service_version: non_empty(r.service_version)
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        };
        let queue = QueueConfig {
            admission_rps: parse_or(
                "QUEUE_ADMISSION_RPS",
                r.queue_admission_rps,
                100.0,
                parse_positive_f64,
            )?,
            heartbeat_ttl: parse_or(
                "QUEUE_HEARTBEAT_TTL_SECONDS",
                r.queue_heartbeat_ttl_seconds,
                Duration::from_secs(300),
                parse_seconds,
            )?,
            reservation_token_ttl: parse_or(
                "QUEUE_RESERVATION_TOKEN_TTL_SECONDS",
                r.queue_reservation_token_ttl_seconds,
                Duration::from_secs(30),
                parse_seconds,
            )?,
            require_admission: parse_or(
                "QUEUE_REQUIRE_ADMISSION",
                r.queue_require_admission,
                false,
                parse_bool,
            )?,
            admin_scope: match non_empty(r.admin_scope) {
                Some(s) if s.contains(char::is_whitespace) => {
                    return Err(invalid("ADMIN_SCOPE", &s, "one scope, without spaces"));
                }
                Some(s) => s,
                None => "gateway:admin".to_owned(),
            },
            events_open: parse_or("QUEUE_EVENTS_OPEN", r.queue_events_open, true, parse_bool)?,
            adaptive_max_errors: parse_or(
                "QUEUE_ADAPTIVE_MAX_ERRORS",
                r.queue_adaptive_max_errors,
                0.05,
                parse_ratio,
            )?,
            adaptive_p99: parse_or(
                "QUEUE_ADAPTIVE_P99",
                r.queue_adaptive_p99,
                Duration::from_secs(1),
                parse_duration,
            )?,
        };
        let trusted_proxies = match non_empty(r.trusted_proxies) {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    parse_cidr(s).ok_or_else(|| {
                        invalid(
                            "TRUSTED_PROXIES",
                            &list,
                            "a comma-separated list of CIDRs or IPs",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let cors_allowed_origins = match non_empty(r.cors_allowed_origins) {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    let ok = s == "*"
                        || ((s.starts_with("http://") || s.starts_with("https://"))
                            && http::HeaderValue::from_str(s).is_ok());
                    if ok {
                        Ok(s.to_owned())
                    } else {
                        Err(invalid(
                            "CORS_ALLOWED_ORIGINS",
                            &list,
                            "comma-separated origins like https://tickets.example",
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Config {
            port: parse_or("PORT", r.port, 8080, parse_num)?,
            redis,
            jwt,
            rate_limit,
            idempotency_ttl: parse_or(
                "IDEMPOTENCY_TTL_SECONDS",
                r.idempotency_ttl_seconds,
                Duration::from_secs(300),
                parse_seconds,
            )?,
            reservation,
            payment,
            routing,
            telemetry,
            max_body_size: parse_or(
                "MAX_BODY_SIZE",
                r.max_body_size,
                1_048_576,
                parse_positive_usize,
            )?,
            max_in_flight: parse_or(
                "MAX_IN_FLIGHT",
                r.max_in_flight,
                10_000,
                parse_positive_usize,
            )?,
            worker_threads: parse_or("WORKER_THREADS", r.worker_threads, None, |v| {
                parse_positive_usize(v).map(Some)
            })?,
            trusted_proxies,
            cors_allowed_origins,
            queue,
            shutdown_delay: parse_or(
                "SHUTDOWN_DELAY",
                r.shutdown_delay,
                Duration::from_secs(5),
                parse_duration,
            )?,
            shutdown_timeout: parse_or(
                "SHUTDOWN_TIMEOUT",
                r.shutdown_timeout,
                Duration::from_secs(20),
                parse_duration,
            )?,
            request_body_timeout: parse_or(
                "REQUEST_BODY_TIMEOUT",
                r.request_body_timeout,
                Duration::from_secs(10),
                parse_nonzero_duration,
            )?,
            response_write_timeout: parse_or(
                "RESPONSE_WRITE_TIMEOUT",
                r.response_write_timeout,
                Duration::from_secs(10),
                parse_nonzero_duration,
            )?,
            redis_wait_replicas: parse_or(
                "REDIS_WAIT_REPLICAS",
                r.redis_wait_replicas,
                0,
                parse_num,
            )?,
            demo: false,
        })
    }

    /// JWT verification needs issuer, audience and JWKS URL unless verification is skipped or
    /// the demo supplies its own. Checked by `main`, after `--demo` had its say.
    pub fn validate_jwt(&self) -> Result<(), ConfigError> {
        if self.jwt.skip_verify || self.demo {
            return Ok(());
        }
        let why = " (or set JWT_SKIP_VERIFY=true for development, or run --demo)";
        if self.jwt.jwks_url.is_none() {
            return Err(ConfigError::Missing {
                name: "JWT_JWKS_URL",
                why,
            });
        }
        if self.jwt.issuer.is_none() {
            return Err(ConfigError::Missing {
                name: "JWT_ISSUER",
                why,
            });
        }
        if self.jwt.audience.is_none() {
            return Err(ConfigError::Missing {
                name: "JWT_AUDIENCE",
                why,
            });
        }
        Ok(())
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        expected,
    }
}

/// Unset (or empty) → `default`; set → `parse` or a loud error naming the variable.
fn parse_or<T>(
    name: &'static str,
    raw: Option<String>,
    default: T,
    parse: fn(&str) -> Result<T, &'static str>,
) -> Result<T, ConfigError> {
    match non_empty(raw) {
        None => Ok(default),
        Some(v) => parse(&v).map_err(|expected| invalid(name, &v, expected)),
    }
}

fn parse_bool(s: &str) -> Result<bool, &'static str> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("true or false"),
    }
}

fn parse_num<T: std::str::FromStr>(s: &str) -> Result<T, &'static str> {
    s.parse().map_err(|_| "a whole number")
}

fn parse_positive_u32(s: &str) -> Result<u32, &'static str> {
    s.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or("a whole number above 0")
}

fn parse_positive_usize(s: &str) -> Result<usize, &'static str> {
    s.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or("a whole number above 0")
}

fn parse_positive_f64(s: &str) -> Result<f64, &'static str> {
    s.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .ok_or("a number above 0")
}

fn parse_ratio(s: &str) -> Result<f64, &'static str> {
    s.parse::<f64>()
        .ok()
        .filter(|n| (0.0..=1.0).contains(n))
        .ok_or("a number from 0 to 1")
}

/// `600ms`, `10s`, `10m`, `1h` (and combinations humantime accepts, like `1m30s`).
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    humantime::parse_duration(s).map_err(|_| "a duration like 600ms, 10s or 10m")
}

fn parse_nonzero_duration(s: &str) -> Result<Duration, &'static str> {
    parse_duration(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or("a duration above zero like 600ms, 10s or 10m")
}

fn parse_seconds(s: &str) -> Result<Duration, &'static str> {
    s.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(Duration::from_secs)
        .ok_or("a whole number of seconds above 0")
}

fn parse_log_level(s: &str) -> Result<String, ConfigError> {
    // A plain level or a full EnvFilter directive such as `info,gateway_api=debug`.
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|_| {
            invalid(
                "LOG_LEVEL",
                s,
                "trace, debug, info, warn, error or an EnvFilter directive",
            )
        })
}

fn parse_url(name: &'static str, s: &str) -> Result<reqwest::Url, ConfigError> {
    reqwest::Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| invalid(name, s, "an http:// or https:// URL"))
}

fn parse_bases(
    name: &'static str,
    raw: Option<String>,
    default: &str,
) -> Result<Vec<reqwest::Url>, ConfigError> {
    let list = non_empty(raw).unwrap_or_else(|| default.to_owned());
    let bases = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let url = parse_url(name, s)
                .map_err(|_| invalid(name, &list, "comma-separated http(s):// base URLs"))?;
            if url.query().is_some() || url.fragment().is_some() {
                return Err(invalid(name, &list, "base URLs without query or fragment"));
            }
            Ok(url)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if bases.is_empty() {
        return Err(invalid(name, &list, "at least one http(s):// base URL"));
    }
    Ok(bases)
}

fn redis_url(addr: &str, tls: bool) -> Option<String> {
    if addr.starts_with("redis://") || addr.starts_with("rediss://") {
        return Some(addr.to_owned());
    }
    // host:port, with a port that parses.
    let (host, port) = addr.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() || addr.contains('/') {
        return None;
    }
    Some(format!("{}://{addr}", if tls { "rediss" } else { "redis" }))
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert!(c.redis.is_none());
        assert_eq!(c.rate_limit.rps, 50.0);
        assert_eq!(c.rate_limit.burst, 100);
        assert_eq!(c.reservation.timeout, Duration::from_millis(600));
        assert_eq!(c.payment.timeout, Duration::from_millis(400));
        assert_eq!(
            c.reservation.bases[0].as_str(),
            "http://reservation-api.tickets-api.svc.cluster.local:8080/"
        );
        assert_eq!(c.max_body_size, 1_048_576);
        assert_eq!(c.max_in_flight, 10_000);
        assert_eq!(c.idempotency_ttl, Duration::from_secs(300));
        assert_eq!(c.jwt.cache_ttl, Duration::from_secs(600));
        assert_eq!(c.queue.reservation_token_ttl, Duration::from_secs(30));
        assert_eq!(c.shutdown_delay, Duration::from_secs(5));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(c.telemetry.trace_sampling, 0.1);
    }

    #[test]
    fn waiting_room_operator_settings_default_and_fail_loudly() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.queue.admin_scope, "gateway:admin");
        assert!(c.queue.events_open);
        assert_eq!(c.queue.adaptive_max_errors, 0.05);
        assert_eq!(c.queue.adaptive_p99, Duration::from_secs(1));
        let c = cfg(&[
            ("ADMIN_SCOPE", "tickets:ops"),
            ("QUEUE_EVENTS_OPEN", "false"),
            ("QUEUE_ADAPTIVE_MAX_ERRORS", "0.2"),
            ("QUEUE_ADAPTIVE_P99", "750ms"),
        ])
        .unwrap();
        assert_eq!(c.queue.admin_scope, "tickets:ops");
        assert!(!c.queue.events_open);
        assert_eq!(c.queue.adaptive_max_errors, 0.2);
        assert_eq!(c.queue.adaptive_p99, Duration::from_millis(750));
        for (k, v) in [
            ("ADMIN_SCOPE", "two scopes"),
            ("QUEUE_EVENTS_OPEN", "maybe"),
            ("QUEUE_ADAPTIVE_MAX_ERRORS", "1.5"),
            ("QUEUE_ADAPTIVE_P99", "fast"),
        ] {
            let err = cfg(&[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(k), "{k}: {err}");
        }
    }

    #[test]
    fn a_bad_duration_names_the_variable_and_the_form() {
        let err = cfg(&[("UPSTREAM_PAYMENT_TIMEOUT", "4O0ms")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("UPSTREAM_PAYMENT_TIMEOUT"), "{err}");
        assert!(err.contains("4O0ms"), "{err}");
        assert!(err.contains("600ms"), "{err}");
    }

    #[test]
    fn durations_accept_ms_s_and_m() {
        let c = cfg(&[
            ("JWT_CACHE_TTL", "10m"),
            ("SHUTDOWN_DELAY", "10s"),
            ("UPSTREAM_RESERVATION_TIMEOUT", "600ms"),
        ])
        .unwrap();
        assert_eq!(c.jwt.cache_ttl, Duration::from_secs(600));
        assert_eq!(c.shutdown_delay, Duration::from_secs(10));
        assert_eq!(c.reservation.timeout, Duration::from_millis(600));
    }

    #[test]
    fn bad_values_never_become_defaults() {
        for (k, v) in [
            ("PORT", "eighty"),
            ("RATE_LIMIT_RPS", "-1"),
            ("RATE_LIMIT_BURST", "0"),
            ("TRACE_SAMPLING", "1.5"),
            ("REDIS_ADDR", "not an address"),
            ("JWT_SKIP_VERIFY", "maybe"),
            ("TRUSTED_PROXIES", "10.0.0.0/99"),
            ("UPSTREAM_RESERVATION_BASE", "ftp://x"),
            ("MAX_BODY_SIZE", "1MB"),
            ("QUEUE_HEARTBEAT_TTL_SECONDS", "5m"),
            ("LOG_LEVEL", "loud[[["),
        ] {
            let err = cfg(&[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(k), "{k}: {err}");
        }
    }

    #[test]
    fn redis_addresses_and_clusters() {
        let c = cfg(&[("REDIS_ADDR", "127.0.0.1:6379")]).unwrap();
        let r = c.redis.unwrap();
        assert_eq!(r.urls, vec!["redis://127.0.0.1:6379".to_owned()]);
        assert!(!r.cluster);
        let c = cfg(&[("REDIS_ADDR", "a:1,b:2"), ("REDIS_PASSWORD", "pw")]).unwrap();
        let r = c.redis.unwrap();
        assert!(r.cluster);
        assert_eq!(r.urls.len(), 2);
        assert_eq!(format!("{:?}", r.password), "Some(***)");
        let c = cfg(&[("REDIS_ADDR", "h:1"), ("REDIS_TLS", "true")]).unwrap();
        assert_eq!(c.redis.unwrap().urls[0], "rediss://h:1");
    }

    #[test]
    fn a_cluster_refuses_a_database_other_than_zero() {
        let e = cfg(&[("REDIS_ADDR", "a:1,b:2"), ("REDIS_DB", "3")]).unwrap_err();
        assert!(e.to_string().starts_with("REDIS_DB=\"3\""), "{e}");
        let e = cfg(&[
            ("REDIS_ADDR", "a:1"),
            ("REDIS_CLUSTER", "true"),
            ("REDIS_DB", "1"),
        ]);
        assert!(e.is_err());
        let c = cfg(&[("REDIS_ADDR", "a:1,b:2"), ("REDIS_DB", "0")]).unwrap();
        assert!(c.redis.unwrap().cluster);
        let c = cfg(&[("REDIS_ADDR", "a:1"), ("REDIS_DB", "3")]).unwrap();
        assert_eq!(c.redis.unwrap().db, 3);
    }

    #[test]
    fn jwt_refresh_min_interval_defaults_to_30s_and_parses() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.jwt.refresh_min_interval, Duration::from_secs(30));
        let c = cfg(&[("JWT_REFRESH_MIN_INTERVAL", "2s")]).unwrap();
        assert_eq!(c.jwt.refresh_min_interval, Duration::from_secs(2));
        let e = cfg(&[("JWT_REFRESH_MIN_INTERVAL", "soon")]).unwrap_err();
        assert!(e.to_string().contains("JWT_REFRESH_MIN_INTERVAL"), "{e}");
    }

    #[test]
    fn jwt_settings_are_required_unless_skipped() {
        let c = cfg(&[]).unwrap();
        assert!(
            c.validate_jwt()
                .unwrap_err()
                .to_string()
                .contains("JWT_JWKS_URL")
        );
        let c = cfg(&[("JWT_SKIP_VERIFY", "true")]).unwrap();
        assert!(c.validate_jwt().is_ok());
        let c = cfg(&[
            ("JWT_JWKS_URL", "http://idp/jwks"),
            ("JWT_ISSUER", "i"),
            ("JWT_AUDIENCE", "a"),
        ])
        .unwrap();
        assert!(c.validate_jwt().is_ok());
    }

    #[test]
    fn later_values_win() {
        let c = cfg(&[("PORT", "1"), ("PORT", "2")]).unwrap();
        assert_eq!(c.port, 2);
    }

    #[test]
    fn lists_parse() {
        let c = cfg(&[
            ("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://a.example,https://b.example",
            ),
            ("UPSTREAM_PAYMENT_BASE", "http://p1:1,http://p2:2"),
        ])
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.cors_allowed_origins.len(), 2);
        assert_eq!(c.payment.bases.len(), 2);
    }
}
