//! Requests refused before routing (SPEC §4): a request target over 8 KiB (414), and a request
//! whose framing the listener found ambiguous (`framing::Refused`: 400 and `Connection: close`).
//! Inside the trace and access layers, so a refusal carries its ids and is logged and counted.
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use crate::error::ApiError;
use crate::framing;
use crate::middleware::around::Around;

/// SPEC §4: a request target over 8 KiB is refused with 414.
pub const MAX_URI_LEN: usize = 8 * 1024;

#[derive(Clone, Copy)]
pub struct Refusals;

impl Around for Refusals {
    type State = ();

    fn before(&self, req: &mut Request) -> ((), Option<Response>) {
        ((), refusal(req))
    }

    fn after((): (), _: &mut Response) {}
}

fn refusal(req: &Request) -> Option<Response> {
    if uri_len(req.uri()) > MAX_URI_LEN {
        return Some(ApiError::UriTooLong.into_response());
    }
    if req.extensions().get::<framing::Refused>().is_some() {
        let mut res = ApiError::BadRequest("ambiguous request framing").into_response();
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Some(res);
    }
    None
}

fn uri_len(uri: &http::Uri) -> usize {
    uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::body::Body;

    use super::*;

    #[test]
    fn long_targets_and_refused_framing_are_answered_here() {
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        assert!(refusal(&get("/api/v1/x")).is_none());
        let at_limit = format!("/{}", "a".repeat(MAX_URI_LEN - 1));
        assert!(refusal(&get(&at_limit)).is_none());
        let over = format!("/{}", "a".repeat(MAX_URI_LEN));
        assert_eq!(refusal(&get(&over)).unwrap().status(), 414);
        let mut refused = get("/api/v1/x");
        refused.extensions_mut().insert(framing::Refused);
        let res = refusal(&refused).unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(res.headers()[header::CONNECTION], "close");
    }
}
