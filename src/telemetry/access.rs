//! The access log: one JSON line per request (issue #7), written by `middleware::access_log` when
//! the response head leaves.
//!
//! Layers further in report what they decided through [`AccessLog`], which `middleware::access_log`
//! puts in the request extensions before any policy runs. Reporting is one atomic store, no
//! lock, no allocation; the first report of each field wins. For example, in a policy layer:
//!
//! ```ignore
//! use crate::telemetry::access::AccessLog;
//! if let Some(log) = req.extensions().get::<AccessLog>() {
//!     log.rate_limit("limited");     // ratelimit: allowed | limited | fallback_allowed | …
//!     log.idempotency("replayed");   // idempotency: new | replayed | in_progress | conflict | …
//!     log.user(caller.shared_user_id()); // auth: the verified `sub` (never the token)
//! }
//! ```
//!
//! Outcomes are `&'static str` on purpose: a label chosen in code can never carry a token, a key
//! or a body. The line never holds `Authorization`, `Idempotency-Key` values, tokens or bodies.
use std::cell::RefCell;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::telemetry::logs;

/// What later layers tell the access line. Cheap to clone (one `Arc`).
#[derive(Debug, Clone, Default)]
pub struct AccessLog(Arc<Fields>);

#[derive(Debug)]
struct Fields {
    user_id: OnceLock<Arc<str>>,
    upstream: OnceLock<&'static str>,
    /// Microseconds to the upstream's response head; `u64::MAX` while unset.
    upstream_latency_us: AtomicU64,
    upstream_status: OnceLock<u16>,
    rate_limit: OnceLock<&'static str>,
    idempotency: OnceLock<&'static str>,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            user_id: OnceLock::new(),
            upstream: OnceLock::new(),
            upstream_latency_us: AtomicU64::new(u64::MAX),
            upstream_status: OnceLock::new(),
            rate_limit: OnceLock::new(),
            idempotency: OnceLock::new(),
        }
    }
}

impl AccessLog {
    /// The verified caller (`Caller::user_id`, the token's `sub`).
    pub fn user(&self, user_id: &Arc<str>) {
        if self.0.user_id.get().is_none() {
            let _ = self.0.user_id.set(user_id.clone());
        }
    }

    /// The rate-limit decision (`allowed`, `limited`, `fallback_allowed`, …).
    pub fn rate_limit(&self, outcome: &'static str) {
        let _ = self.0.rate_limit.set(outcome);
    }

    /// The idempotency outcome (`new`, `replayed`, `in_progress`, `conflict`, `store_error`, …).
    pub fn idempotency(&self, outcome: &'static str) {
        let _ = self.0.idempotency.set(outcome);
    }

    /// Which upstream was called (`reservation`, `payment`), its status (0 when it gave none)
    /// and how long its response head took.
    pub fn upstream(&self, name: &'static str, status: Option<u16>, latency: Duration) {
        let _ = self.0.upstream.set(name);
        let _ = self.0.upstream_status.set(status.unwrap_or(0));
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX - 1);
        let _ = self.0.upstream_latency_us.compare_exchange(
            u64::MAX,
            us,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn upstream_latency_ms(&self) -> Option<f64> {
        match self.0.upstream_latency_us.load(Ordering::Relaxed) {
            u64::MAX => None,
            us => Some(us as f64 / 1000.0),
        }
    }
}

/// The request's own facts, known to `middleware::access_log`.
pub struct Line<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub latency: Duration,
    pub client_ip: IpAddr,
    pub request_id: &'a str,
    pub trace_id: &'a str,
}

/// Writes the access line (target `access`, level info), when `LOG_LEVEL` lets it through.
///
/// With JSON lines on the buffered writer (`main`) the line is formatted here, into a reused
/// per-thread buffer with the timestamp's date and time cached per second, and handed to the log
/// buffer in one copy: the same JSON object the `tracing` formatter writes (it is the hot path's
/// one log line; through `tracing` it cost a String per timestamp and a visitor per field).
/// Otherwise (text lines, tests) it is a `tracing` event like any other.
pub fn emit(line: &Line<'_>, log: &AccessLog) {
    // Asked as an event: the formatter's filter passes events only.
    if !tracing::enabled!(kind: tracing::metadata::Kind::EVENT, target: "access", tracing::Level::INFO)
    {
        return;
    }
    match logs::json_buffer() {
        Some(buffer) => SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.line.clear();
            write_json(&mut s, line, log, SystemTime::now());
            buffer.push(&s.line);
        }),
        None => emit_event(line, log),
    }
}

fn emit_event(line: &Line<'_>, log: &AccessLog) {
    let f = &log.0;
    tracing::info!(
        target: "access",
        method = line.method,
        route = line.route,
        status = line.status,
        latency_ms = line.latency.as_micros() as f64 / 1000.0,
        client_ip = %line.client_ip,
        user_id = f.user_id.get().map(|u| &**u),
        request_id = line.request_id,
        trace_id = line.trace_id,
        upstream = f.upstream.get().copied(),
        upstream_status = f.upstream_status.get().copied().filter(|s| *s != 0),
        upstream_latency_ms = log.upstream_latency_ms(),
        rate_limit = f.rate_limit.get().copied(),
        idempotency = f.idempotency.get().copied(),
        "request"
    );
}

/// The per-thread line buffer and the cached `YYYY-MM-DDTHH:MM:SS` of the last second seen.
struct Scratch {
    line: Vec<u8>,
    second: u64,
    date_time: [u8; 19],
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { line: Vec::new(), second: u64::MAX, date_time: [0; 19] })
    };
}

fn write_json(s: &mut Scratch, line: &Line<'_>, log: &AccessLog, now: SystemTime) {
    let f = &log.0;
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    if since.as_secs() != s.second {
        s.second = since.as_secs();
        s.date_time = date_time(s.second);
    }
    let out = &mut s.line;
    out.extend_from_slice(b"{\"timestamp\":\"");
    out.extend_from_slice(&s.date_time);
    let _ = write!(out, ".{:06}Z\",\"level\":\"INFO\",", since.subsec_micros());
    out.extend_from_slice(b"\"message\":\"request\"");
    string_field(out, "method", line.method);
    string_field(out, "route", line.route);
    let _ = write!(out, ",\"status\":{}", line.status);
    let latency_us = u64::try_from(line.latency.as_micros()).unwrap_or(u64::MAX);
    millis_field(out, "latency_ms", latency_us);
    let _ = write!(out, ",\"client_ip\":\"{}\"", line.client_ip);
    if let Some(user) = f.user_id.get() {
        string_field(out, "user_id", user);
    }
    string_field(out, "request_id", line.request_id);
    string_field(out, "trace_id", line.trace_id);
    if let Some(upstream) = f.upstream.get() {
        string_field(out, "upstream", upstream);
    }
    if let Some(status) = f.upstream_status.get().filter(|s| **s != 0) {
        let _ = write!(out, ",\"upstream_status\":{status}");
    }
    match f.upstream_latency_us.load(Ordering::Relaxed) {
        u64::MAX => {}
        us => millis_field(out, "upstream_latency_ms", us),
    }
    if let Some(outcome) = f.rate_limit.get() {
        string_field(out, "rate_limit", outcome);
    }
    if let Some(outcome) = f.idempotency.get() {
        string_field(out, "idempotency", outcome);
    }
    out.extend_from_slice(b",\"target\":\"access\"}\n");
}

/// `,"name":"value"` with the value escaped as JSON requires (quotes, backslashes, controls).
fn string_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":\"");
    let mut start = 0;
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f {
            out.extend_from_slice(&bytes[start..i]);
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => {
                    let _ = write!(out, "\\u{b:04x}");
                }
            }
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `,"name":1.234` from microseconds (three decimals, as `tracing`'s f64 would print them).
fn millis_field(out: &mut Vec<u8>, name: &str, us: u64) {
    let _ = write!(out, ",\"{name}\":{}.{:03}", us / 1000, us % 1000);
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix time (Howard Hinnant's `civil_from_days`).
fn date_time(secs: u64) -> [u8; 19] {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = [0u8; 19];
    let mut w = &mut out[..];
    let _ = write!(
        w,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_first_report_wins_and_clones_share_it() {
        let log = AccessLog::default();
        let seen_by_layer = log.clone();
        seen_by_layer.rate_limit("allowed");
        seen_by_layer.rate_limit("limited");
        seen_by_layer.idempotency("replayed");
        seen_by_layer.user(&Arc::from("u-1"));
        seen_by_layer.upstream("payment", Some(201), Duration::from_micros(1500));
        seen_by_layer.upstream("reservation", None, Duration::from_secs(1));
        assert_eq!(log.0.rate_limit.get(), Some(&"allowed"));
        assert_eq!(log.0.idempotency.get(), Some(&"replayed"));
        assert_eq!(log.0.user_id.get().map(|u| &**u), Some("u-1"));
        assert_eq!(log.0.upstream.get(), Some(&"payment"));
        assert_eq!(log.0.upstream_status.get(), Some(&201));
        assert_eq!(log.upstream_latency_ms(), Some(1.5));
    }

    fn line<'a>(user: &'a str) -> (Line<'a>, AccessLog) {
        let log = AccessLog::default();
        log.user(&Arc::from(user));
        log.rate_limit("allowed");
        log.upstream("reservation", Some(201), Duration::from_micros(1_234));
        let line = Line {
            method: "POST",
            route: "/api/v1/reservations/{id}",
            status: 201,
            latency: Duration::from_micros(2_005),
            client_ip: IpAddr::from([10, 0, 0, 7]),
            request_id: "req-1",
            trace_id: "0af7651916cd43dd8448eb211c80319c",
        };
        (line, log)
    }

    fn json(line: &Line<'_>, log: &AccessLog, now: SystemTime) -> serde_json::Value {
        let mut s = Scratch {
            line: Vec::new(),
            second: u64::MAX,
            date_time: [0; 19],
        };
        write_json(&mut s, line, log, now);
        assert_eq!(s.line.last(), Some(&b'\n'));
        assert_eq!(s.line.iter().filter(|b| **b == b'\n').count(), 1);
        serde_json::from_slice(&s.line).unwrap()
    }

    #[test]
    fn the_direct_line_is_the_json_object_tracing_writes() {
        let (line, log) = line("alice");
        let now = UNIX_EPOCH + Duration::from_micros(1_764_633_600_000_042);
        let v = json(&line, &log, now);
        assert_eq!(v["timestamp"], "2025-12-02T00:00:00.000042Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "access");
        assert_eq!(v["message"], "request");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["route"], "/api/v1/reservations/{id}");
        assert_eq!(v["status"], 201);
        assert_eq!(v["latency_ms"], 2.005);
        assert_eq!(v["client_ip"], "10.0.0.7");
        assert_eq!(v["user_id"], "alice");
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(v["upstream"], "reservation");
        assert_eq!(v["upstream_status"], 201);
        assert_eq!(v["upstream_latency_ms"], 1.234);
        assert_eq!(v["rate_limit"], "allowed");
        // Unreported fields are absent, not null (as `tracing` leaves out a `None`).
        assert!(v.get("idempotency").is_none(), "{v}");
        let bare = json(&line, &AccessLog::default(), now);
        for absent in [
            "user_id",
            "upstream",
            "upstream_status",
            "upstream_latency_ms",
        ] {
            assert!(bare.get(absent).is_none(), "{bare}");
        }
    }

    #[test]
    fn a_hostile_user_id_stays_one_json_string_on_one_line() {
        let hostile = "a\"b\\c\nd\r\t\u{1}\u{7f}é\",\"status\":500";
        let (line, log) = line(hostile);
        let v = json(&line, &log, SystemTime::now());
        assert_eq!(v["user_id"], hostile);
        assert_eq!(v["status"], 201);
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(&date_time(0), b"1970-01-01T00:00:00");
        assert_eq!(&date_time(951_782_400), b"2000-02-29T00:00:00");
        assert_eq!(&date_time(1_798_761_599), b"2026-12-31T23:59:59");
        assert_eq!(&date_time(4_107_542_400), b"2100-03-01T00:00:00");
    }
}
