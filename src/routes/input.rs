//! The gateway's own request inputs, turned into values or into 400s with the JSON shape of
//! SPEC §4: path ids (SPEC §2), and the queue routes' JSON bodies and query strings (SPEC §5)
//! with messages that name the field by its serde path: `event_id: missing field`,
//! `seats: expected a number`, `token: missing field`. Values are never echoed back (a body may
//! hold a token): the message says what was expected, not what was sent.
//!
//! Handlers take these as extractors ([`ValidId`], [`Json`], [`Query`]), so no rejection of
//! axum's own (plain text) reaches a client (axum's `error-handling` example). Not axum's `Json`
//! itself: the gateway reads bodies within `MAX_BODY_SIZE` and `REQUEST_BODY_TIMEOUT`
//! (`body::read_body`), does not require a JSON `Content-Type`, and names the field.
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::SharedState;
use crate::body::read_body;
use crate::error::ApiError;

/// The start of every message about a body that is not JSON.
const MALFORMED_JSON: &str = "malformed JSON body";

const INVALID_ID: ApiError =
    ApiError::BadRequest("invalid id: expected 1-128 characters of A-Z a-z 0-9 _ -");

/// `{id}` and `event_id`: `[A-Za-z0-9_-]{1,128}` (SPEC §2). Checked before any upstream is
/// touched, so `..`, encoded slashes and spaces never reach one.
pub fn valid_id(id: &str) -> Result<&str, ApiError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(id) } else { Err(INVALID_ID) }
}

/// The route's one path parameter (`{id}`, `{event_id}`), checked by [`valid_id`]. A segment
/// that does not even decode (`%FF`) is the same 400.
pub struct ValidId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ValidId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| INVALID_ID)?;
        valid_id(&id)?;
        Ok(ValidId(id))
    }
}

/// A JSON object body as `T` ([`json`]), read within the body limits.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<SharedState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &SharedState) -> Result<Self, ApiError> {
        let bytes = read_body(req.into_body(), state.config.max_body_size).await?;
        json(&bytes).map(Json)
    }
}

/// The query string as `T` ([`query`]).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        query(parts.uri.query()).map(Query)
    }
}

/// A JSON object body as `T`, or a 400 naming the field. An array is refused even where serde
/// would fill a struct's fields from it in order.
pub fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::InvalidInput(
            "body: expected a JSON object".to_owned(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                ApiError::InvalidInput(field_message(&path, &inner.to_string()))
            }
            // Not JSON at all: where it broke, which says nothing of the content.
            _ => ApiError::InvalidInput(format!(
                "{MALFORMED_JSON}: {}",
                strip_position(&inner.to_string())
            )),
        }
    })?;
    de.end()
        .map_err(|_| ApiError::InvalidInput(format!("{MALFORMED_JSON}: trailing characters")))?;
    Ok(value)
}

/// A query string (`None`: there was none) as `T`, or a 400 naming the parameter.
pub fn query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(raw.unwrap_or_default().as_bytes());
    let de = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::InvalidInput(field_message(&path, &e.into_inner().to_string()))
    })
}

/// `path: what`, from serde's message (`missing field `x``, `invalid type: …, expected y`).
fn field_message(path: &str, serde_message: &str) -> String {
    let message = strip_position(serde_message);
    let parent = if path == "." { "" } else { path };
    let join = |field: &str| {
        if parent.is_empty() {
            field.to_owned()
        } else {
            format!("{parent}.{field}")
        }
    };
    if let Some(field) = between(message, "missing field `", "`") {
        return format!("{}: missing field", join(field));
    }
    if let Some(field) = between(message, "unknown field `", "`") {
        return format!("{}: unknown field", join(field));
    }
    let what = match message.rsplit_once(", expected ") {
        Some((_, expected)) => humanize(expected),
        None if message.starts_with("invalid") => "a valid value".to_owned(),
        None => {
            return format!(
                "{}: invalid",
                if parent.is_empty() { "body" } else { parent }
            );
        }
    };
    let field = if parent.is_empty() { "body" } else { parent };
    format!("{field}: expected {what}")
}

/// serde's type names as a client reads them: `u32` → `a number`.
fn humanize(expected: &str) -> String {
    let numeric = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64",
    ];
    if numeric.contains(&expected) {
        "a number".to_owned()
    } else if expected.starts_with("struct ") || expected == "a map" {
        "an object".to_owned()
    } else {
        expected.to_owned()
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &s[s.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// `… at line 1 column 2` → `…`.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |i| &message[..i])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "only parsed")]
    struct Join {
        event_id: String,
        seats: Option<u32>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "only parsed")]
    struct Inner {
        id: String,
    }

    fn message(r: Result<Join, ApiError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn ids_are_checked_before_any_upstream() {
        assert!(valid_id("abc-DEF_123").is_ok());
        assert!(valid_id(&"a".repeat(128)).is_ok());
        for bad in ["", "..", "a/b", "a%2Fb", "has space", "ü", &"a".repeat(129)] {
            assert!(valid_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_errors_name_the_field_by_its_path() {
        assert_eq!(message(json(b"{}")), "event_id: missing field");
        assert_eq!(
            message(json(br#"{"event_id":"e","seats":"two"}"#)),
            "seats: expected a number"
        );
        assert_eq!(
            message(json(br#"{"event_id":7}"#)),
            "event_id: expected a string"
        );
        assert_eq!(
            message(json(br#"{"event_id":"e","inner":{}}"#)),
            "inner.id: missing field"
        );
        assert_eq!(message(json(br#"["e"]"#)), "body: expected a JSON object");
        assert!(message(json(b"{")).starts_with("malformed JSON body"));
        assert!(message(json(br#"{"event_id":"e"} x"#)).starts_with("malformed JSON body"));
    }

    #[test]
    fn values_are_never_echoed() {
        let m = message(json(br#"{"event_id":"secret-token-value-123"}x"#));
        assert!(!m.contains("secret"), "{m}");
        let m = message(json(br#"{"event_id":"e","seats":"secret"}"#));
        assert!(!m.contains("secret"), "{m}");
    }

    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "only parsed")]
    struct Status {
        token: String,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let e = query::<Status>(None).unwrap_err().to_string();
        assert_eq!(e, "token: missing field");
        let e = query::<Status>(Some("tokn=x")).unwrap_err().to_string();
        assert_eq!(e, "token: missing field");
        assert!(query::<Status>(Some("token=abc")).is_ok());
    }
}
