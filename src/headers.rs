//! Every header name the gateway itself reads or writes (SPEC §3, §5, §6, §7), declared once.
//! The bottom of the crate: it imports nothing of it. Standard names (`Content-Type`, …) come
//! from `http::header`. Also the one way the gateway makes a header value of its own at run time
//! ([`shared_value`]).
use bytes::Bytes;
use http::header::InvalidHeaderValue;
use http::{HeaderName, HeaderValue};

/// SPEC §3: the request id, the client's when well formed, else a new UUID.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// SPEC §3: the trace id of the request, on every response.
pub static X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");
/// W3C trace context.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// SPEC §3: the verified caller, set by the gateway only.
pub static X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// SPEC §6.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// SPEC §5: the reservation token may come as a header instead of a body field.
pub static X_RESERVATION_TOKEN: HeaderName = HeaderName::from_static("x-reservation-token");
/// SPEC §7: the IETF draft's headers and the widely used `X-RateLimit-*` ones.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Values up to this long are held inline by [`shared_value`] (a UUID, a `traceparent`, an
/// address list of a few hops, a typical `sub`); a caller writing a value on the stack first
/// uses a buffer of this size.
pub const INLINE: usize = 128;

struct Inline {
    len: u8,
    buf: [u8; INLINE],
}

impl AsRef<[u8]> for Inline {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// A header value the gateway writes (request id, `traceparent`, `X-User-ID`,
/// `X-Forwarded-For`), validated like `HeaderValue::from_bytes`, in one allocation that every
/// clone shares. (`from_bytes` copies into a `Vec`-backed `Bytes`, which allocates a second time
/// at its first clone to become shareable; every value sent upstream is cloned once by reqwest,
/// and the request id once more for the response.)
pub fn shared_value(text: &[u8]) -> Result<HeaderValue, InvalidHeaderValue> {
    if text.len() > INLINE {
        return HeaderValue::from_bytes(text);
    }
    let mut inline = Inline {
        len: text.len() as u8,
        buf: [0; INLINE],
    };
    inline.buf[..text.len()].copy_from_slice(text);
    HeaderValue::from_maybe_shared(Bytes::from_owner(inline))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn shared_values_are_checked_like_from_bytes_at_any_length() {
        for text in [
            &b""[..],
            b"req-1",
            b"203.0.113.9, 198.51.100.1",
            &[b'a'; INLINE],
            &[b'a'; INLINE + 1],
            &[b'x'; 4000],
        ] {
            let v = shared_value(text).unwrap();
            assert_eq!(v.as_bytes(), text);
            // A clone shares the bytes instead of copying them.
            assert_eq!(v.clone().as_bytes().as_ptr(), v.as_bytes().as_ptr());
        }
        for bad in [&b"a\nb"[..], b"a\rb", b"\0", &[0x7f; 3]] {
            assert!(shared_value(bad).is_err(), "{bad:?}");
            assert!(HeaderValue::from_bytes(bad).is_err());
        }
        let mut long_bad = vec![b'a'; INLINE + 5];
        long_bad[INLINE + 2] = b'\n';
        assert!(shared_value(&long_bad).is_err());
    }
}
