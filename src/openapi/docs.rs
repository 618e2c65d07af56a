//! `GET /docs/`: Swagger UI over `/openapi.json`, a page a person can read and try the API from.
//! Its assets are compiled into the binary (`utoipa-swagger-ui`'s `vendored` feature), so the
//! page works with no internet and loads nothing from anywhere but this gateway: no CDN, no
//! online validator (`validatorUrl: none`), and a Content-Security-Policy that allows only this
//! origin (Swagger UI needs inline styles and `data:` images; its scripts are files of its own).
//!
//! The handlers are ours (over `utoipa_swagger_ui::serve`) rather than the crate's axum router,
//! so the routes are written in `router.rs` like every other one and each answer carries this
//! page's policy. Not here: the document itself (`router::document`), which the page fetches.
use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderValue, StatusCode, header};
use utoipa_swagger_ui::Config;

use crate::error::ApiError;

/// The page's policy; every other response keeps the strict one of SPEC §3 (`middleware::common_headers`
/// leaves a policy a handler set).
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'none'";

static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::from("/openapi.json")
            .validator_url("none")
            .try_it_out_enabled(true)
            .display_request_duration(true)
            .persist_authorization(false),
    )
});

/// `GET /docs` → `/docs/` (the page's assets are relative to it).
pub async fn redirect() -> Redirect {
    Redirect::permanent("/docs/")
}

/// This document as a page (Swagger UI)
///
/// Served from assets compiled into the gateway: works offline, loads nothing from elsewhere.
/// `/docs` redirects here.
#[utoipa::path(get, path = "/docs/", tag = "operations", operation_id = "docs",
    responses((status = 200, description = "Swagger UI over /openapi.json",
        body = String, content_type = "text/html")))]
pub async fn page() -> Response {
    file("")
}

/// `GET /docs/{*rest}`: its scripts, styles and images. A path that does not decode names no
/// asset: 404, in the JSON shape.
pub async fn asset(rest: Result<Path<String>, PathRejection>) -> Response {
    match rest {
        Ok(Path(rest)) => file(&rest),
        Err(_) => ApiError::NotFound.into_response(),
    }
}

fn file(path: &str) -> Response {
    match utoipa_swagger_ui::serve(path, CONFIG.clone()) {
        Ok(Some(f)) => {
            let mut res = (StatusCode::OK, f.bytes.into_owned()).into_response();
            let headers = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&f.content_type) {
                headers.insert(header::CONTENT_TYPE, v);
            }
            if f.gzpipped {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DOCS_CSP),
            );
            res
        }
        Ok(None) => ApiError::NotFound.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Swagger UI asset could not be served");
            ApiError::Internal.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_page_points_at_the_document_and_no_validator() {
        let res = file("swagger-initializer.js");
        assert_eq!(res.status(), 200);
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let js = String::from_utf8(body.to_vec()).unwrap();
        assert!(js.contains("\"/openapi.json\""), "{js}");
        assert!(js.contains("\"validatorUrl\": \"none\""), "{js}");
        let res = page().await;
        assert_eq!(res.headers()["content-security-policy"], DOCS_CSP);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(file("no-such-file.js").status(), 404);
    }
}
