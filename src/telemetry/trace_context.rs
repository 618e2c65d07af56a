//! The trace context of a request (SPEC §3, §4, §10): its W3C trace id, `traceparent` parsing,
//! and the task-local through which an error body anywhere below the request context learns the
//! id it must carry. One place for the idea; the server span itself is opened by
//! `middleware::server_span`, the client span's headers are written by `upstream::forward`.
use http::HeaderValue;

/// A W3C trace id (16 bytes, never all zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    pub fn random() -> Self {
        loop {
            let bytes: [u8; 16] = rand::random();
            if bytes != [0; 16] {
                return TraceId(bytes);
            }
        }
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The 32 lowercase hex digits, on the stack (no allocation).
    pub fn hex_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // Cannot fail: the buffer is exactly twice the id's length.
        let _ = hex::encode_to_slice(self.0, &mut out);
        out
    }
}

tokio::task_local! {
    static CURRENT_TRACE_ID: TraceId;
}

/// The trace id of the request being served on this task, or a fresh one outside any request
/// (an error body always carries some id).
pub fn current_trace_id() -> String {
    CURRENT_TRACE_ID
        .try_with(|t| t.to_hex())
        .unwrap_or_else(|_| TraceId::random().to_hex())
}

/// Parses `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`); returns the
/// trace id when the header is well formed and the ids are not all zero.
pub fn parse_traceparent(value: &HeaderValue) -> Option<TraceId> {
    let s = value.to_str().ok()?;
    let mut parts = s.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2
        || version == "ff"
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let is_lower_hex = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if ![version, trace, span, flags]
        .iter()
        .all(|p| is_lower_hex(p))
        || span.bytes().all(|b| b == b'0')
    {
        return None;
    }
    let mut id = [0u8; 16];
    hex::decode_to_slice(trace, &mut id).ok()?;
    (id != [0; 16]).then_some(TraceId(id))
}

/// Runs `fut` with `trace_id` as the current trace id (for code that builds error responses
/// outside the router, such as the listener's own refusals and tests).
pub async fn with_trace_id<F: std::future::Future>(trace_id: TraceId, fut: F) -> F::Output {
    scope(trace_id, fut).await
}

/// Runs `f` (a layer's synchronous `call`) with `trace_id` as the current trace id.
pub fn sync_scope<R>(trace_id: TraceId, f: impl FnOnce() -> R) -> R {
    CURRENT_TRACE_ID.sync_scope(trace_id, f)
}

/// As [`with_trace_id`], as a future of a type a layer can name (no box).
pub fn scope<F: std::future::Future>(
    trace_id: TraceId,
    fut: F,
) -> tokio::task::futures::TaskLocalFuture<TraceId, F> {
    CURRENT_TRACE_ID.scope(trace_id, fut)
}

/// What the forwarder sends upstream: the W3C headers of the gateway's client span.
#[derive(Debug, Clone, Default)]
pub struct TraceHeaders {
    pub traceparent: Option<HeaderValue>,
    pub tracestate: Option<HeaderValue>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let ok =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            parse_traceparent(&ok).unwrap().to_hex(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert!(
                parse_traceparent(&HeaderValue::from_static(bad)).is_none(),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn current_trace_id_follows_the_scope() {
        let t = TraceId([7; 16]);
        let seen = with_trace_id(t, async { current_trace_id() }).await;
        assert_eq!(seen, t.to_hex());
    }
}

/// Property tests (issue #15): `parse_traceparent` takes well-formed W3C values and nothing else.
#[cfg(test)]
pub(crate) mod proptests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;
    use proptest::sample::{Index, select};

    use super::*;

    fn parse(s: &[u8]) -> Option<TraceId> {
        parse_traceparent(&HeaderValue::from_bytes(s).unwrap())
    }

    /// A well-formed value: any version but `ff` (a future version may carry more parts),
    /// non-zero lowercase ids, any flags.
    pub(crate) fn well_formed() -> impl Strategy<Value = (String, u128)> {
        (
            0u8..0xff,
            1u128..,
            1u64..,
            any::<u8>(),
            proptest::collection::vec("[0-9a-z.]{0,10}", 0..3),
        )
            .prop_map(|(version, trace, span, flags, extra)| {
                let mut s = format!("{version:02x}-{trace:032x}-{span:016x}-{flags:02x}");
                if version != 0 {
                    for part in extra {
                        s.push('-');
                        s.push_str(&part);
                    }
                }
                (s, trace)
            })
    }

    /// Version 00, so exactly 55 characters: `00-` trace `-` span `-` flags.
    fn version_00() -> impl Strategy<Value = (String, u128)> {
        (1u128.., 1u64.., any::<u8>()).prop_map(|(trace, span, flags)| {
            (format!("00-{trace:032x}-{span:016x}-{flags:02x}"), trace)
        })
    }

    const SEPARATORS: [usize; 3] = [2, 35, 52];

    /// Ways to spoil a version-00 value.
    #[derive(Debug, Clone)]
    enum Mutation {
        Uppercase(Index, char),
        NotHex(Index, char),
        Delete(Index),
        InsertHex(Index, char),
        InsertDash(Index),
        Separator(usize, char),
        Truncate(Index),
        ZeroTrace,
        ZeroSpan,
        VersionFf,
        ExtraPart(String),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<Index>(), select(vec!['A', 'B', 'C', 'D', 'E', 'F']))
                .prop_map(|(i, c)| Mutation::Uppercase(i, c)),
            (
                any::<Index>(),
                select(vec!['g', 'x', 'z', '+', ' ', '_', '.'])
            )
                .prop_map(|(i, c)| Mutation::NotHex(i, c)),
            any::<Index>().prop_map(Mutation::Delete),
            (
                any::<Index>(),
                select("0123456789abcdef".chars().collect::<Vec<_>>())
            )
                .prop_map(|(i, c)| Mutation::InsertHex(i, c)),
            any::<Index>().prop_map(Mutation::InsertDash),
            (
                select(SEPARATORS.to_vec()),
                select(vec!['_', ' ', '.', '0', 'a'])
            )
                .prop_map(|(i, c)| Mutation::Separator(i, c)),
            any::<Index>().prop_map(Mutation::Truncate),
            Just(Mutation::ZeroTrace),
            Just(Mutation::ZeroSpan),
            Just(Mutation::VersionFf),
            "[0-9a-z]{0,10}".prop_map(Mutation::ExtraPart),
        ]
    }

    /// The hex-digit positions of a 55-character version-00 value.
    fn digit_at(i: &Index) -> usize {
        let digits: Vec<usize> = (0..55).filter(|p| !SEPARATORS.contains(p)).collect();
        digits[i.index(digits.len())]
    }

    fn mutate(s: &str, m: &Mutation) -> String {
        let mut c: Vec<char> = s.chars().collect();
        match m {
            Mutation::Uppercase(i, up) | Mutation::NotHex(i, up) => c[digit_at(i)] = *up,
            Mutation::Delete(i) => {
                c.remove(i.index(c.len()));
            }
            Mutation::InsertHex(i, d) => c.insert(i.index(c.len() + 1), *d),
            Mutation::InsertDash(i) => c.insert(i.index(c.len() + 1), '-'),
            Mutation::Separator(i, x) => c[*i] = *x,
            Mutation::Truncate(i) => c.truncate(i.index(c.len())),
            Mutation::ZeroTrace => c[3..35].fill('0'),
            Mutation::ZeroSpan => c[36..52].fill('0'),
            Mutation::VersionFf => c[..2].fill('f'),
            Mutation::ExtraPart(p) => return format!("{s}-{p}"),
        }
        c.into_iter().collect()
    }

    /// Random bytes, or a well-formed value with up to three random bytes replaced, inserted
    /// or removed.
    pub(crate) fn near_traceparents() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            6 => select(b"0123456789abcdef-".to_vec()),
            1 => select(b"ABCDEFfg+ \t".to_vec()),
            1 => 0x20u8..=0x7e,
            1 => 0x80u8..=0xff,
        ];
        let edit = (any::<Index>(), 0u8..3, byte.clone());
        prop_oneof![
            proptest::collection::vec(byte, 0..70),
            (well_formed(), proptest::collection::vec(edit, 0..4)).prop_map(|((s, _), edits)| {
                let mut v = s.into_bytes();
                for (at, op, b) in edits {
                    match op {
                        0 => v.insert(at.index(v.len() + 1), b),
                        1 => {
                            let i = at.index(v.len());
                            v[i] = b;
                        }
                        _ => {
                            v.remove(at.index(v.len()));
                        }
                    }
                }
                v
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A well-formed value gives its trace id back.
        #[test]
        fn well_formed_values_round_trip_the_trace_id((s, trace) in well_formed()) {
            let id = parse(s.as_bytes());
            prop_assert_eq!(id, Some(TraceId(trace.to_be_bytes())), "{}", s);
            prop_assert_eq!(id.unwrap().to_hex(), format!("{trace:032x}"));
        }

        /// Uppercase or non-hex digits, a field too long or too short, a wrong separator,
        /// all-zero ids, version `ff` or an extra part on version 00: refused.
        #[test]
        fn a_spoilt_value_is_refused((s, _) in version_00(), m in mutation()) {
            let bad = mutate(&s, &m);
            prop_assert_eq!(parse(bad.as_bytes()), None, "{} ({:?})", bad, m);
        }

        /// Any header value: no panic, and a trace id only when the value has the shape of a
        /// traceparent (lowercase hex fields of 2, 32, 16 and 2 digits, not version `ff`, no
        /// part after version 00's flags) and names that id.
        #[test]
        fn arbitrary_values_never_panic_and_name_what_they_give(value in near_traceparents()) {
            prop_assume!(HeaderValue::from_bytes(&value).is_ok());
            if let Some(id) = parse(&value) {
                let s = std::str::from_utf8(&value).unwrap();
                let parts: Vec<&str> = s.split('-').collect();
                let lower_hex =
                    |p: &str| p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                prop_assert!(parts.len() >= 4 && parts[..4].iter().all(|p| lower_hex(p)), "{}", s);
                prop_assert_eq!(
                    parts[..4].iter().map(|p| p.len()).collect::<Vec<_>>(),
                    vec![2, 32, 16, 2]
                );
                prop_assert!(parts[0] != "ff" && (parts[0] != "00" || parts.len() == 4), "{}", s);
                prop_assert!(parts[2] != "0000000000000000" && id != TraceId([0; 16]), "{}", s);
                prop_assert_eq!(parts[1], id.to_hex());
            }
        }
    }
}
