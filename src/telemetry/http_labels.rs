//! The `method` and `route` of a request as the HTTP metrics, the server span and the access line
//! all name them (SPEC §10): bounded sets, so a client can never mint a label value.
use axum::extract::{MatchedPath, Request};
use http::Method;

/// The `route` label and span attribute of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The `method` label: the standard methods by name, anything else `_OTHER`, so a client cannot
/// mint label values (OpenTelemetry HTTP semantic conventions do the same).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// The route template of a request: the router's own string (an `Arc` clone, not a copy), or
/// none when no route matched (see [`route_label`]).
pub fn matched_route(req: &Request) -> Option<MatchedPath> {
    req.extensions().get::<MatchedPath>().cloned()
}

/// The `route` label: the template, or [`UNMATCHED`], never the raw path.
pub fn route_label(route: Option<&MatchedPath>) -> &str {
    route.map_or(UNMATCHED, MatchedPath::as_str)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for m in ["PURGE", "get", "X-ANYTHING"] {
            assert_eq!(
                method_label(&Method::from_bytes(m.as_bytes()).unwrap()),
                "_OTHER"
            );
        }
    }

    #[test]
    fn a_request_no_route_matched_is_unmatched() {
        let req = Request::get("/anything/at/all")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(route_label(matched_route(&req).as_ref()), UNMATCHED);
    }
}
