//! Event definitions (SPEC §5a): what an operator sets for one event, how a `PUT` body patches
//! it, and how it is written in the store. Pure: no HTTP and no store calls; `store/events.rs`
//! keeps definitions, `routes/admin.rs` speaks HTTP.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The life of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    /// Admitting at the event's rate.
    Open,
    /// Every place kept, nobody admitted.
    Paused,
    /// Joins refused (410), every token expired.
    Closed,
}

impl EventState {
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Open => "open",
            EventState::Paused => "paused",
            EventState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<EventState> {
        match s {
            "open" => Some(EventState::Open),
            "paused" => Some(EventState::Paused),
            "closed" => Some(EventState::Closed),
            _ => None,
        }
    }
}

/// One event as an operator defined it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDefinition {
    pub event_id: String,
    pub admission_rps: f64,
    pub max_active: Option<u64>,
    /// Opening time in Unix milliseconds; `None` = open since it was defined.
    pub opens_at_ms: Option<u64>,
    pub state: EventState,
    pub adaptive: bool,
}

impl EventDefinition {
    /// The defaults of SPEC §5a: the configured rate, no cap, open now, not adaptive.
    pub fn defaults(event_id: &str, admission_rps: f64) -> Self {
        EventDefinition {
            event_id: event_id.to_owned(),
            admission_rps,
            max_active: None,
            opens_at_ms: None,
            state: EventState::Open,
            adaptive: false,
        }
    }

    /// The fields `patch` sends replace these; the rest keep their value.
    pub fn apply(&mut self, patch: &EventPatch) {
        if let Some(r) = patch.admission_rps {
            self.admission_rps = r;
        }
        if let Some(m) = patch.max_active {
            self.max_active = m;
        }
        if let Some(o) = patch.opens_at_ms {
            self.opens_at_ms = o;
        }
        if let Some(s) = patch.state {
            self.state = s;
        }
        if let Some(a) = patch.adaptive {
            self.adaptive = a;
        }
    }

    /// The fields as the store keeps them (a Redis hash; the memory store keeps the struct).
    /// An absent cap or opening is an empty string.
    pub fn to_fields(&self) -> [(&'static str, String); 5] {
        [
            ("rps", self.admission_rps.to_string()),
            (
                "max",
                self.max_active.map(|m| m.to_string()).unwrap_or_default(),
            ),
            (
                "open",
                self.opens_at_ms.map(|o| o.to_string()).unwrap_or_default(),
            ),
            ("st", self.state.as_str().to_owned()),
            ("ad", if self.adaptive { "1" } else { "0" }.to_owned()),
        ]
    }

    /// Back from the store's fields (`None` when they are not a definition).
    pub fn from_fields(event_id: &str, get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let admission_rps = get("rps")?.parse().ok()?;
        let num = |k: &str| {
            get(k)
                .filter(|v| !v.is_empty())
                .and_then(|v| v.parse().ok())
        };
        Some(EventDefinition {
            event_id: event_id.to_owned(),
            admission_rps,
            max_active: num("max"),
            opens_at_ms: num("open"),
            state: EventState::parse(&get("st")?)?,
            adaptive: get("ad").as_deref() == Some("1"),
        })
    }
}

/// A `PUT` body: each field is `None` when not sent (`Some(None)` = sent as `null`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPatch {
    pub admission_rps: Option<f64>,
    pub max_active: Option<Option<u64>>,
    pub opens_at_ms: Option<Option<u64>>,
    pub state: Option<EventState>,
    pub adaptive: Option<bool>,
}

/// The highest rate an operator may set (people per second per event).
pub const MAX_ADMISSION_RPS: f64 = 1_000_000.0;

impl EventPatch {
    /// Validates a `PUT` body; the error names the field (SPEC §5a: 400 naming the field).
    pub fn parse(body: &Value) -> Result<EventPatch, &'static str> {
        let Value::Object(map) = body else {
            return Err("the body must be a JSON object");
        };
        let mut patch = EventPatch::default();
        for key in map.keys() {
            if !matches!(
                key.as_str(),
                "admission_rps" | "max_active" | "opens_at" | "state" | "adaptive" | "event_id"
            ) {
                return Err(
                    "unknown field: expected admission_rps, max_active, opens_at, state, adaptive",
                );
            }
        }
        if let Some(v) = map.get("admission_rps") {
            const BAD: &str = "admission_rps must be a number > 0 and at most 1000000";
            let r = v.as_f64().ok_or(BAD)?;
            if !(r > 0.0 && r <= MAX_ADMISSION_RPS) {
                return Err(BAD);
            }
            patch.admission_rps = Some(r);
        }
        if let Some(v) = map.get("max_active") {
            const BAD: &str = "max_active must be an integer >= 1 or null";
            patch.max_active = Some(match v {
                Value::Null => None,
                v => Some(v.as_u64().filter(|m| *m >= 1).ok_or(BAD)?),
            });
        }
        if let Some(v) = map.get("opens_at") {
            const BAD: &str = "opens_at must be an RFC 3339 date-time or null";
            patch.opens_at_ms = Some(match v {
                Value::Null => None,
                Value::String(s) => Some(parse_rfc3339(s).ok_or(BAD)?),
                _ => return Err(BAD),
            });
        }
        if let Some(v) = map.get("state") {
            const BAD: &str = "state must be open, paused or closed";
            patch.state = Some(v.as_str().and_then(EventState::parse).ok_or(BAD)?);
        }
        if let Some(v) = map.get("adaptive") {
            patch.adaptive = Some(v.as_bool().ok_or("adaptive must be true or false")?);
        }
        Ok(patch)
    }
}

/// Live figures of one event, next to its definition in admin answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFigures {
    pub waiting: u64,
    pub prequeue: u64,
    pub active: u64,
    pub admitted_total: u64,
    pub admission_rate_measured: f64,
    pub admission_factor: f64,
}

/// `2026-12-01T20:00:00Z`, `…00.250Z` or `…00+02:00` → Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.trim();
    // Split off a numeric offset (humantime reads only `Z`).
    let (base, offset_secs): (String, i64) = if s.ends_with('Z') || s.ends_with('z') {
        (format!("{}Z", &s[..s.len() - 1]), 0)
    } else if s.len() > 6 {
        let (head, off) = s.split_at(s.len() - 6);
        let b = off.as_bytes();
        if !(b[0] == b'+' || b[0] == b'-') || b[3] != b':' {
            return None;
        }
        let h: i64 = off[1..3].parse().ok()?;
        let m: i64 = off[4..6].parse().ok()?;
        if h > 23 || m > 59 {
            return None;
        }
        let sign = if b[0] == b'+' { 1 } else { -1 };
        (format!("{head}Z"), sign * (h * 3600 + m * 60))
    } else {
        return None;
    };
    let t = humantime::parse_rfc3339(&base).ok()?;
    let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64 - offset_secs * 1000;
    u64::try_from(ms).ok()
}

/// Unix milliseconds → RFC 3339 in UTC, with milliseconds when there are any.
pub fn format_rfc3339(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    if ms.is_multiple_of(1000) {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_millis(t).to_string()
    }
}

/// The process clock in Unix milliseconds.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn a_patch_changes_only_the_fields_sent() {
        let mut d = EventDefinition::defaults("ev", 100.0);
        let p = EventPatch::parse(&json!({"admission_rps": 5, "state": "paused"})).unwrap();
        d.apply(&p);
        assert_eq!(d.admission_rps, 5.0);
        assert_eq!(d.state, EventState::Paused);
        assert_eq!(d.max_active, None);
        let p = EventPatch::parse(&json!({"max_active": 20})).unwrap();
        d.apply(&p);
        assert_eq!((d.admission_rps, d.max_active), (5.0, Some(20)));
        let p = EventPatch::parse(&json!({"max_active": null})).unwrap();
        d.apply(&p);
        assert_eq!(d.max_active, None);
    }

    #[test]
    fn bad_values_name_their_field() {
        for (body, field) in [
            (json!({"admission_rps": 0}), "admission_rps"),
            (json!({"admission_rps": "fast"}), "admission_rps"),
            (json!({"max_active": 0}), "max_active"),
            (json!({"max_active": 1.5}), "max_active"),
            (json!({"opens_at": "tomorrow"}), "opens_at"),
            (json!({"state": "gone"}), "state"),
            (json!({"adaptive": "yes"}), "adaptive"),
            (json!({"colour": "red"}), "unknown field"),
            (json!([1]), "object"),
        ] {
            let e = EventPatch::parse(&body).unwrap_err();
            assert!(e.contains(field), "{body}: {e}");
        }
    }

    #[test]
    fn rfc3339_round_trips_with_offsets() {
        let z = parse_rfc3339("2026-12-01T20:00:00Z").unwrap();
        assert_eq!(z, 1_796_155_200_000);
        assert_eq!(parse_rfc3339("2026-12-01T22:00:00+02:00"), Some(z));
        assert_eq!(parse_rfc3339("2026-12-01T19:30:00-00:30"), Some(z));
        assert_eq!(parse_rfc3339("2026-12-01T20:00:00.250Z"), Some(z + 250));
        assert_eq!(format_rfc3339(z), "2026-12-01T20:00:00Z");
        assert_eq!(format_rfc3339(z + 250), "2026-12-01T20:00:00.250Z");
        assert_eq!(parse_rfc3339("2026-12-01 20:00"), None);
    }

    #[test]
    fn definitions_round_trip_through_store_fields() {
        let mut d = EventDefinition::defaults("ev", 7.5);
        d.max_active = Some(20);
        d.opens_at_ms = Some(1_000);
        d.adaptive = true;
        let fields = d.to_fields();
        let back = EventDefinition::from_fields("ev", |k| {
            fields.iter().find(|(f, _)| *f == k).map(|(_, v)| v.clone())
        })
        .unwrap();
        assert_eq!(back, d);
    }
}
