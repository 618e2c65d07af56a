//! One parse per area: `Config::parse` reads the raw text of every variable into the typed
//! configuration, each area (Redis, the two upstreams, trusted proxies, CORS origins) by its own
//! function, each value by a parser of `values.rs` that names the variable when it refuses.
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::log_filter::parse_log_level;
use super::raw::RawConfig;
use super::values::{
    invalid, non_empty, parse_bool, parse_db, parse_duration, parse_nonzero_duration, parse_or,
    parse_port, parse_positive_f64, parse_positive_u32, parse_positive_usize, parse_ratio,
    parse_seconds, parse_u32, parse_url,
};
use super::{
    Config, ConfigError, CorsOrigins, DEFAULT_PAYMENT_BASE, DEFAULT_RESERVATION_BASE, JwtConfig,
    LogFormat, QueueConfig, RateLimitConfig, RedisConfig, RoutingConfig, Secret, TelemetryConfig,
    UpstreamConfig,
};

/// What tells the two upstreams apart: the name, the variables (`UPSTREAM_<NAME>_BASE`,
/// `_TIMEOUT`, `_MAX_CONCURRENCY`) and their defaults. Both are parsed by [`upstream`].
struct UpstreamVars {
    name: &'static str,
    base_var: &'static str,
    timeout_var: &'static str,
    max_concurrency_var: &'static str,
    base: &'static str,
    timeout: Duration,
    max_concurrency: usize,
}

const RESERVATION: UpstreamVars = UpstreamVars {
    name: "reservation",
    base_var: "UPSTREAM_RESERVATION_BASE",
    timeout_var: "UPSTREAM_RESERVATION_TIMEOUT",
    max_concurrency_var: "UPSTREAM_RESERVATION_MAX_CONCURRENCY",
    base: DEFAULT_RESERVATION_BASE,
    timeout: Duration::from_millis(600),
    max_concurrency: 1024,
};

const PAYMENT: UpstreamVars = UpstreamVars {
    name: "payment",
    base_var: "UPSTREAM_PAYMENT_BASE",
    timeout_var: "UPSTREAM_PAYMENT_TIMEOUT",
    max_concurrency_var: "UPSTREAM_PAYMENT_MAX_CONCURRENCY",
    base: DEFAULT_PAYMENT_BASE,
    timeout: Duration::from_millis(400),
    max_concurrency: 512,
};

/// The `REDIS_*` variables as text.
struct RawRedis {
    addr: Option<String>,
    cluster: Option<String>,
    password: Option<String>,
    db: Option<String>,
    tls: Option<String>,
}

/// One upstream's variables as text.
struct RawUpstream {
    base: Option<String>,
    timeout: Option<String>,
    max_concurrency: Option<String>,
}

impl Config {
    pub(super) fn parse(r: RawConfig) -> Result<Self, ConfigError> {
        let redis = redis(RawRedis {
            addr: r.redis_addr,
            cluster: r.redis_cluster,
            password: r.redis_password,
            db: r.redis_db,
            tls: r.redis_tls,
        })?;
        let jwt = JwtConfig {
            issuer: non_empty(r.jwt_issuer),
            audience: non_empty(r.jwt_audience),
            jwks_url: match non_empty(r.jwt_jwks_url) {
                Some(u) => Some(parse_url("JWT_JWKS_URL", &u)?),
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
        let reservation = upstream(
            &RESERVATION,
            RawUpstream {
                base: r.upstream_reservation_base,
                timeout: r.upstream_reservation_timeout,
                max_concurrency: r.upstream_reservation_max_concurrency,
            },
        )?;
        let payment = upstream(
            &PAYMENT,
            RawUpstream {
                base: r.upstream_payment_base,
                timeout: r.upstream_payment_timeout,
                max_concurrency: r.upstream_payment_max_concurrency,
            },
        )?;
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
        let otlp_endpoint_set = non_empty(r.otel_exporter_otlp_endpoint.clone()).is_some();
        let telemetry = TelemetryConfig {
            otlp_endpoint: parse_url(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &non_empty(r.otel_exporter_otlp_endpoint)
                    .unwrap_or_else(|| "http://otel-collector:4317".to_owned()),
            )?,
            otlp_endpoint_set,
            export_traces: true,
            log_format: parse_or("LOG_FORMAT", r.log_format, None, |v| {
                match v.to_ascii_lowercase().as_str() {
                    "json" => Ok(Some(LogFormat::Json)),
                    "text" => Ok(Some(LogFormat::Text)),
                    _ => Err("json or text"),
                }
            })?,
            trace_sampling: parse_or("TRACE_SAMPLING", r.trace_sampling, 0.1, parse_ratio)?,
            log_level: parse_log_level(
                &non_empty(r.log_level).unwrap_or_else(|| "info".to_owned()),
            )?,
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
        let trusted_proxies = trusted_proxies(r.trusted_proxies)?;
        let cors_allowed_origins = cors_origins(r.cors_allowed_origins)?;
        Ok(Config {
            port: parse_or("PORT", r.port, 8080, parse_port)?,
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
                parse_u32,
            )?,
            demo: false,
            warnings: Vec::new(),
        })
    }
}

/// `REDIS_*` (SPEC §8): `None` when `REDIS_ADDR` is unset (the in-memory store).
fn redis(raw: RawRedis) -> Result<Option<RedisConfig>, ConfigError> {
    Ok(match non_empty(raw.addr) {
        None => None,
        Some(addr) => {
            let tls = parse_or("REDIS_TLS", raw.tls, false, parse_bool)?;
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
            let cluster =
                parse_or("REDIS_CLUSTER", raw.cluster, false, parse_bool)? || urls.len() > 1;
            let db = parse_or("REDIS_DB", raw.db.clone(), 0, parse_db)?;
            if cluster && db != 0 {
                // A Redis Cluster has only database 0: fail now, not on every connection.
                return Err(invalid(
                    "REDIS_DB",
                    raw.db.as_deref().unwrap_or_default(),
                    "0 with Redis Cluster (a cluster has only database 0)",
                ));
            }
            Some(RedisConfig {
                urls,
                cluster,
                password: non_empty(raw.password).map(Secret),
                db,
                tls,
            })
        }
    })
}

/// `TRUSTED_PROXIES`: comma-separated CIDRs or single addresses.
fn trusted_proxies(raw: Option<String>) -> Result<Vec<IpNet>, ConfigError> {
    Ok(match non_empty(raw) {
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
    })
}

/// One upstream (SPEC §7, §7a): its base URLs, answer timeout and concurrency cap.
fn upstream(vars: &UpstreamVars, raw: RawUpstream) -> Result<UpstreamConfig, ConfigError> {
    Ok(UpstreamConfig {
        name: vars.name,
        bases: parse_bases(vars.base_var, raw.base, vars.base)?,
        timeout: parse_or(
            vars.timeout_var,
            raw.timeout,
            vars.timeout,
            parse_nonzero_duration,
        )?,
        max_concurrency: parse_or(
            vars.max_concurrency_var,
            raw.max_concurrency,
            vars.max_concurrency,
            parse_positive_usize,
        )?,
    })
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

/// `CORS_ALLOWED_ORIGINS`: comma-separated origins, or `*` among them for any. An entry that is
/// not an origin as a browser sends it (a trailing slash, a path, upper case, a default port)
/// would never match an `Origin` header, so it stops start-up instead of silently never
/// answering. Unset or only commas: `None`.
fn cors_origins(raw: Option<String>) -> Result<Option<CorsOrigins>, ConfigError> {
    let Some(list) = non_empty(raw) else {
        return Ok(None);
    };
    let mut any = false;
    let mut origins = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if entry == "*" {
            any = true;
            continue;
        }
        let origin = parse_origin(entry).ok_or_else(|| ConfigError::Rejected {
            name: "CORS_ALLOWED_ORIGINS",
            value: list.clone(),
            reason: format!(
                "{entry:?} is not an origin: expected comma-separated origins like \
                 https://tickets.example (scheme://host[:port] as a browser sends it: lower \
                 case, no path or trailing slash), or *"
            ),
        })?;
        origins.push(origin);
    }
    Ok(match (any, origins.is_empty()) {
        (true, _) => Some(CorsOrigins::Any),
        (false, true) => None,
        (false, false) => Some(CorsOrigins::List(origins)),
    })
}

/// `s` if it is exactly an http(s) origin's serialization (RFC 6454 §6.1), the form of a
/// browser's `Origin` header.
fn parse_origin(s: &str) -> Option<http::HeaderValue> {
    let url = reqwest::Url::parse(s).ok()?;
    let serialized = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") || serialized != s {
        return None;
    }
    http::HeaderValue::from_str(s).ok()
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}
