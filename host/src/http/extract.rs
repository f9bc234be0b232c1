//! Extractors whose rejections are problem+json: `Json` (415 wrong content
//! type, 400 malformed JSON, 422 wrong shape or unknown field, 413 too
//! large), `Path` (400 invalid id) and `Query` (400 invalid parameter).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::HeaderMap;
use tower_http::request_id::RequestId as TowerRequestId;

use crate::problem::Problem;
use crate::trace::{RequestTrace, TRACEPARENT_HEADER};

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(Problem))]
pub struct Json<T>(pub T);

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
                    .detail("the body must be JSON, sent with `Content-Type: application/json`")
            }
            JsonRejection::JsonSyntaxError(error) => {
                Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON").detail(error.body_text())
            }
            JsonRejection::JsonDataError(error) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", "Invalid request body")
                    .detail(error.body_text())
            }
            JsonRejection::BytesRejection(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "Request body too large")
                    .detail("the body is larger than this server accepts (MAX_BODY_BYTES)")
            }
            other => Problem::new(StatusCode::BAD_REQUEST, "unreadable-body", "Unreadable request body")
                .detail(other.body_text()),
        }
    }
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct Path<T>(pub T);

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-id", "Invalid identifier").detail(match rejection {
            PathRejection::FailedToDeserializePathParams(_) => "the id in the path must be a UUID".to_string(),
            other => other.body_text(),
        })
    }
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct Query<T>(pub T);

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameter").detail(rejection.body_text())
    }
}

/// The request id (`X-Request-Id`, accepted from the client or generated)
/// and the trace context (`traceparent`, accepted or started).
impl<S: Send + Sync> FromRequestParts<S> for RequestTrace {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id =
            parts.extensions.get::<TowerRequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or_default();
        let traceparent = parts.headers.get(TRACEPARENT_HEADER).and_then(|value| value.to_str().ok());
        Ok(RequestTrace::new(id.to_string(), traceparent))
    }
}

/// Whether the client asked to have the write applied asynchronously
/// (RFC 7240 `Prefer: respond-async`).
pub fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split([',', ';']).any(|preference| preference.trim().eq_ignore_ascii_case("respond-async")))
}

/// `If-Match` as a version: `None` when absent or `*`; `"3"` or `3`.
pub fn if_match_version(headers: &HeaderMap) -> Result<Option<i64>, Problem> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    // A bare version is taken too: clients often drop the quotes.
    parse_etag(text).or_else(|| text.parse().ok()).map(Some).ok_or_else(|| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-precondition", "Invalid precondition")
            .detail("If-Match must be one strong entity tag, as sent in ETag (e.g. \"3\")")
    })
}

/// `If-None-Match` as a version, when it names exactly one.
pub fn if_none_match_version(headers: &HeaderMap) -> Option<i64> {
    let text = headers.get(axum::http::header::IF_NONE_MATCH)?.to_str().ok()?.trim();
    parse_etag(text.strip_prefix("W/").unwrap_or(text))
}

/// A task's entity tag: its version, quoted.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

fn parse_etag(text: &str) -> Option<i64> {
    text.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn respond_async_is_found_among_other_preferences() {
        assert!(prefers_async(&headers("prefer", "respond-async")));
        assert!(prefers_async(&headers("prefer", "return=minimal, Respond-Async; wait=5")));
        assert!(!prefers_async(&headers("prefer", "return=representation")));
        assert!(!prefers_async(&HeaderMap::new()));
    }

    #[test]
    fn if_match_takes_one_strong_tag_or_star() {
        assert_eq!(if_match_version(&HeaderMap::new()).unwrap(), None);
        assert_eq!(if_match_version(&headers("if-match", "*")).unwrap(), None);
        assert_eq!(if_match_version(&headers("if-match", "\"7\"")).unwrap(), Some(7));
        assert!(if_match_version(&headers("if-match", "W/\"7\"")).is_err());
        assert_eq!(if_match_version(&headers("if-match", "7")).unwrap(), Some(7), "unquoted");
        assert!(if_match_version(&headers("if-match", "seven")).is_err());
    }

    #[test]
    fn if_none_match_accepts_weak_tags() {
        assert_eq!(if_none_match_version(&headers("if-none-match", "W/\"2\"")), Some(2));
    }
}
