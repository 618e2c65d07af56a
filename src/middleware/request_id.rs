//! The request id (SPEC §3): the client's `X-Request-ID` when well formed, else a fresh UUID. Put
//! in the request extensions as a [`RequestId`] (the access line, the upstream request) and
//! stamped on every response.
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderMap, HeaderValue};

use crate::headers::{X_REQUEST_ID, shared_value};
use crate::middleware::around::Around;

/// The id of a request, as sent upstream and answered in `X-Request-ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only ids of `[A-Za-z0-9._-]` or UUIDs are ever made, so this never falls back.
        self.0.to_str().unwrap_or("")
    }
}

/// The client's `X-Request-ID` when it is 1–128 characters of `[A-Za-z0-9._-]` (SPEC §3).
pub fn valid_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    let v = headers.get(&X_REQUEST_ID)?;
    let b = v.as_bytes();
    let ok = (1..=128).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    ok.then(|| v.clone())
}

fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    shared_value(s.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[derive(Clone, Copy)]
pub struct SetRequestId;

impl Around for SetRequestId {
    type State = HeaderValue;

    fn before(&self, req: &mut Request) -> (HeaderValue, Option<Response>) {
        let id = valid_request_id(req.headers()).unwrap_or_else(new_request_id);
        req.extensions_mut().insert(RequestId(id.clone()));
        (id, None)
    }

    fn after(id: HeaderValue, res: &mut Response) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc.DEF_123-x"));
        assert!(valid_request_id(&h).is_some());
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert!(valid_request_id(&h).is_none());
        h.insert(
            &X_REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert!(valid_request_id(&h).is_none());
        assert_eq!(new_request_id().len(), 36);
    }
}
