//! The security headers of SPEC §3, on every response. A page that needs its own
//! `Content-Security-Policy` (`/docs`) sets it; everything else gets the strict one.
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderName, HeaderValue, header};

use crate::middleware::around::Around;

const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

#[derive(Clone, Copy)]
pub struct CommonHeaders;

impl Around for CommonHeaders {
    type State = ();

    fn before(&self, _: &mut Request) -> ((), Option<Response>) {
        ((), None)
    }

    fn after((): (), res: &mut Response) {
        let headers = res.headers_mut();
        for (name, value) in SECURITY_HEADERS {
            if name == header::CONTENT_SECURITY_POLICY && headers.contains_key(&name) {
                continue;
            }
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_its_own_policy_and_gets_the_rest() {
        let mut own = Response::new(axum::body::Body::empty());
        own.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'"),
        );
        CommonHeaders::after((), &mut own);
        assert_eq!(
            own.headers()[header::CONTENT_SECURITY_POLICY],
            "default-src 'self'"
        );
        assert_eq!(own.headers()[header::X_FRAME_OPTIONS], "DENY");
        let mut plain = Response::new(axum::body::Body::empty());
        CommonHeaders::after((), &mut plain);
        assert_eq!(
            plain.headers()[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert_eq!(plain.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
