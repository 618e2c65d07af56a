//! The configuration as `main` and the tests load it: defaults, every area's values, and every
//! bad value reported at once, through [`Config::from_vars`] and [`Config::load`].
#![allow(clippy::unwrap_used)]
use super::*;

fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
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
    assert!(
        matches!(&c.cors_allowed_origins, Some(CorsOrigins::List(l)) if l.len() == 2),
        "{:?}",
        c.cors_allowed_origins
    );
    assert_eq!(c.payment.bases.len(), 2);
}

#[test]
fn an_origin_a_browser_never_sends_is_a_config_error() {
    for bad in [
        "https://tickets.example/",
        "https://tickets.example/app",
        "https://Tickets.example",
        "https://tickets.example:443",
        "https://user@tickets.example",
        "ftp://tickets.example",
        "tickets.example",
        "https://a.example,https://b.example/",
        "*,https://b.example/",
    ] {
        let e = cfg(&[("CORS_ALLOWED_ORIGINS", bad)]).unwrap_err();
        let names: Vec<_> = e.0.iter().filter_map(ConfigError::variable).collect();
        assert_eq!(names, ["CORS_ALLOWED_ORIGINS"], "{bad}: {e}");
        assert!(e.to_string().contains("is not an origin"), "{bad}: {e}");
    }
}

#[test]
fn cors_origins_are_parsed_once_into_header_values() {
    let c = cfg(&[(
        "CORS_ALLOWED_ORIGINS",
        "https://tickets.example, http://localhost:3000,http://[::1]:8080",
    )])
    .unwrap();
    let want = [
        "https://tickets.example",
        "http://localhost:3000",
        "http://[::1]:8080",
    ]
    .map(http::HeaderValue::from_static)
    .to_vec();
    assert_eq!(c.cors_allowed_origins, Some(CorsOrigins::List(want)));
    for any in ["*", "https://a.example,*"] {
        let c = cfg(&[("CORS_ALLOWED_ORIGINS", any)]).unwrap();
        assert_eq!(c.cors_allowed_origins, Some(CorsOrigins::Any), "{any}");
    }
    for off in ["", " , "] {
        let c = cfg(&[("CORS_ALLOWED_ORIGINS", off)]).unwrap();
        assert_eq!(c.cors_allowed_origins, None, "{off:?}");
    }
    assert_eq!(cfg(&[]).unwrap().cors_allowed_origins, None);
}

#[test]
fn both_upstreams_parse_the_same_way_under_their_own_prefix() {
    let defaults = cfg(&[]).unwrap();
    assert_eq!(defaults.reservation.name, "reservation");
    assert_eq!(defaults.payment.name, "payment");
    assert_eq!(defaults.reservation.max_concurrency, 1024);
    assert_eq!(defaults.payment.max_concurrency, 512);
    for prefix in ["UPSTREAM_RESERVATION", "UPSTREAM_PAYMENT"] {
        let var = |suffix: &str| format!("{prefix}_{suffix}");
        let c = Config::from_vars([
            (var("BASE"), "http://a:1/v1, http://b:2"),
            (var("TIMEOUT"), "250ms"),
            (var("MAX_CONCURRENCY"), "7"),
        ])
        .unwrap();
        let (this, other, other_default) = if prefix == "UPSTREAM_RESERVATION" {
            (&c.reservation, &c.payment, &defaults.payment)
        } else {
            (&c.payment, &c.reservation, &defaults.reservation)
        };
        let name = prefix.trim_start_matches("UPSTREAM_").to_ascii_lowercase();
        assert_eq!(this.name, name);
        let bases: Vec<_> = this.bases.iter().map(reqwest::Url::as_str).collect();
        assert_eq!(bases, ["http://a:1/v1", "http://b:2/"], "{prefix}");
        assert_eq!(this.timeout, Duration::from_millis(250), "{prefix}");
        assert_eq!(this.max_concurrency, 7, "{prefix}");
        // The other upstream's variables were not touched: it keeps its defaults.
        assert_eq!(
            format!("{other:?}"),
            format!("{other_default:?}"),
            "{prefix}"
        );
        for (suffix, bad) in [
            ("BASE", "ftp://x"),
            ("BASE", "http://a:1?q=1"),
            ("BASE", " , "),
            ("TIMEOUT", "0ms"),
            ("TIMEOUT", "soon"),
            ("MAX_CONCURRENCY", "0"),
            ("MAX_CONCURRENCY", "many"),
        ] {
            let e = Config::from_vars([(var(suffix), bad)]).unwrap_err();
            let names: Vec<_> = e.0.iter().filter_map(ConfigError::variable).collect();
            assert_eq!(names, [var(suffix).as_str()], "{suffix}={bad:?}: {e}");
        }
    }
}

#[test]
fn urls_and_the_log_filter_are_typed_at_load() {
    let c = cfg(&[
        ("JWT_JWKS_URL", "https://idp.example/jwks"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("LOG_LEVEL", "warn,gateway_api::jwt=debug"),
    ])
    .unwrap();
    let jwks = c.jwt.jwks_url.unwrap();
    assert_eq!(jwks.host_str(), Some("idp.example"));
    assert_eq!(c.telemetry.otlp_endpoint.port(), Some(4317));
    assert_eq!(
        c.telemetry.log_level.as_str(),
        "warn,gateway_api::jwt=debug"
    );
    let filter = c.telemetry.log_level.env_filter().to_string();
    assert!(filter.contains("gateway_api::jwt=debug"), "{filter}");
    assert!(filter.contains("warn"), "{filter}");
    assert_eq!(cfg(&[]).unwrap().telemetry.log_level.as_str(), "info");
}

#[test]
fn every_bad_variable_is_reported_at_once_one_line_each() {
    let e = cfg(&[
        ("PORT", "99999"),
        ("RATE_LIMIT_RPS", "fast"),
        ("UPSTREAM_PAYMENT_TIMEOUT", "4O0ms"),
        ("REDIS_ADDR", "a:1,b:2"),
        ("REDIS_DB", "3"),
    ])
    .unwrap_err();
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for name in [
        "PORT=",
        "RATE_LIMIT_RPS=",
        "UPSTREAM_PAYMENT_TIMEOUT=",
        "REDIS_DB=",
    ] {
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(name)).count(),
            1,
            "{text}"
        );
    }
}

#[test]
fn a_range_error_says_the_range() {
    let e = cfg(&[("PORT", "99999")]).unwrap_err().to_string();
    assert!(e.starts_with("PORT=\"99999\": expected 1–65535"), "{e}");
    let e = cfg(&[("RATE_LIMIT_BURST", "0")]).unwrap_err().to_string();
    assert!(e.contains("from 1 to 4294967295"), "{e}");
}

#[test]
fn load_names_every_missing_jwt_setting_at_once_with_the_bad_values() {
    let e = Config::load([("PORT", "x")], false).unwrap_err();
    let names: Vec<_> = e.0.iter().filter_map(ConfigError::variable).collect();
    assert_eq!(
        names,
        ["PORT", "JWT_JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE"],
        "{e}"
    );
    assert!(Config::load([("PORT", "1")], true).is_ok());
    assert!(Config::load([("JWT_SKIP_VERIFY", "true")], false).is_ok());
}

#[test]
fn log_format_is_json_or_text() {
    assert_eq!(cfg(&[]).unwrap().telemetry.log_format, None);
    let c = cfg(&[("LOG_FORMAT", "text")]).unwrap();
    assert_eq!(c.telemetry.log_format, Some(LogFormat::Text));
    assert!(cfg(&[("LOG_FORMAT", "yaml")]).is_err());
}
