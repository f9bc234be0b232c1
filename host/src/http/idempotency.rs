//! `Idempotency-Key` on `POST /tasks` and `POST /tasks/batch`
//! (draft-ietf-httpapi-idempotency-key-header): a retried write answers
//! what its first attempt answered instead of running again.
//!
//! A key belongs to the caller and is bound to a fingerprint of method, path
//! and body: the same key on another request is a 422, a duplicate of a
//! request still running a 409. Successes and 4xx answers are kept
//! (`IDEMPOTENCY_TTL_SECS`) and replayed with `Idempotent-Replayed: true`; a
//! 5xx frees the key so the client may retry.
//!
//! Without Redis (`REDIS_URL` unset, or Redis unreachable) requests run
//! unprotected, with a warning: the key guards against duplicate retries,
//! and refusing every keyed write while Redis is down would turn a Redis
//! outage into an API outage.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header, response};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::extract::prefers_async;
use crate::auth::Authenticated;
use crate::idempotency::{Claim, IdempotencyStore, StoredResponse, Ticket};
use crate::problem::Problem;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
const MAX_KEY_BYTES: usize = 255;

/// The headers a replay repeats; the others (request id, rate limits…)
/// describe the replaying request.
const REPLAYED_HEADERS: [HeaderName; 4] =
    [header::CONTENT_TYPE, header::LOCATION, header::ETAG, HeaderName::from_static("preference-applied")];

/// The middleware; runs after `require_auth`, so the caller is known.
pub async fn guard(State(store): State<Option<IdempotencyStore>>, request: Request, next: Next) -> Response {
    let key = match idempotency_key(request.headers()) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(request).await,
        Err(problem) => return problem.into_response(),
    };
    let caller = request.extensions().get::<Authenticated>().copied();
    let (Some(store), Some(Authenticated(actor))) = (store, caller) else {
        return next.run(request).await;
    };
    // Buffered under the router's body limit, as the handler's extractor would.
    let (parts, body) = request.into_parts();
    let body = match Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await {
        Ok(body) => body,
        Err(rejection) => return Problem::from(JsonRejection::from(rejection)).into_response(),
    };
    let fingerprint = fingerprint(&parts, &body);
    let request = Request::from_parts(parts, Body::from(body));
    match store.claim(actor.user_id, &key, &fingerprint).await {
        Ok(Claim::Acquired(ticket)) => run(store, ticket, request, next).await,
        Ok(Claim::Completed(response)) => replay(response),
        Ok(Claim::InFlight) => Problem::new(StatusCode::CONFLICT, "idempotency-key-in-flight", "Request in progress")
            .detail("a request with this Idempotency-Key is still running; retry once it has finished")
            .header(header::RETRY_AFTER, 1)
            .into_response(),
        Ok(Claim::Reused) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency key reused")
                .detail("this Idempotency-Key was used for a different request (method, path or body); use a new key")
                .into_response()
        }
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "idempotency keys are unavailable: running unprotected");
            next.run(request).await
        }
    }
}

/// The `Idempotency-Key`, if sent: one value of 1–255 visible ASCII
/// characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else { return Ok(None) };
    let key = value.as_bytes();
    if values.next().is_some() || !(1..=MAX_KEY_BYTES).contains(&key.len()) || !key.iter().all(u8::is_ascii_graphic) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-idempotency-key", "Invalid idempotency key")
            .detail(format!("Idempotency-Key must be sent once, with 1 to {MAX_KEY_BYTES} visible ASCII characters")));
    }
    Ok(Some(String::from_utf8_lossy(key).into_owned()))
}

/// What makes two requests the same: method, path, whether it asked to be
/// applied asynchronously, and body (neither method nor path holds a space
/// or a newline, so the text is unambiguous).
fn fingerprint(parts: &Parts, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    let mode = if prefers_async(&parts.headers) { "async" } else { "sync" };
    hash.update(format!("{} {} {mode}\n", parts.method, parts.uri.path()));
    hash.update(body);
    hex::encode(hash.finalize())
}

/// Runs the request and records its answer. Spawned, so that a client
/// disconnecting — the usual reason to retry — cannot cancel the request
/// between its commit and the record, which would let the retry run it again.
async fn run(store: IdempotencyStore, ticket: Ticket, request: Request, next: Next) -> Response {
    let handled = tokio::spawn(
        async move {
            let (parts, body) = buffered(next.run(request).await).await;
            let recorded = if parts.status.is_server_error() {
                store.release(ticket).await
            } else {
                let headers = REPLAYED_HEADERS
                    .iter()
                    .flat_map(|name| parts.headers.get_all(name).iter().map(move |value| (name, value)))
                    .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
                    .collect();
                store
                    .complete(ticket, StoredResponse { status: parts.status.as_u16(), headers, body: body.to_vec() })
                    .await
            };
            if let Err(error) = recorded {
                // The claim expires by itself; until then a retry gets 409.
                tracing::warn!(error = format!("{error:#}"), "the idempotency key could not be recorded");
            }
            Response::from_parts(parts, Body::from(body))
        }
        .in_current_span(),
    );
    handled.await.unwrap_or_else(|error| {
        // A panic: the claim is left to expire.
        tracing::error!(%error, "an idempotent request failed");
        Problem::internal().into_response()
    })
}

/// The response with its body in memory (handlers answer small JSON
/// documents); a body that cannot be read becomes a 500.
async fn buffered(response: Response) -> (response::Parts, Bytes) {
    let (parts, body) = response.into_parts();
    match to_bytes(body, usize::MAX).await {
        Ok(body) => (parts, body),
        Err(error) => {
            tracing::error!(%error, "cannot read a response body");
            let (parts, body) = Problem::internal().into_response().into_parts();
            (parts, to_bytes(body, usize::MAX).await.unwrap_or_default())
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(values: &[&str]) -> Result<Option<String>, Problem> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IDEMPOTENCY_KEY, HeaderValue::from_str(value).unwrap());
        }
        idempotency_key(&headers)
    }

    #[test]
    fn a_key_is_one_value_of_visible_ascii() {
        assert_eq!(key_of(&[]).unwrap(), None);
        assert_eq!(key_of(&["\"8e03978e-40d5\""]).unwrap().as_deref(), Some("\"8e03978e-40d5\""));
        assert_eq!(key_of(&[&"k".repeat(255)]).unwrap().map(|key| key.len()), Some(255));
        for invalid in [&[""][..], &["a b"], &["tab\tbed"], &[&"k".repeat(256)], &["one", "two"]] {
            assert_eq!(key_of(invalid).unwrap_err().status, 400, "{invalid:?}");
        }
    }

    #[test]
    fn the_fingerprint_covers_method_path_and_body() {
        let parts =
            |method: &str, uri: &str| Request::builder().method(method).uri(uri).body(()).unwrap().into_parts().0;
        let base = fingerprint(&parts("POST", "/tasks"), b"{}");
        assert_eq!(base, fingerprint(&parts("POST", "/tasks"), b"{}"));
        assert_ne!(base, fingerprint(&parts("POST", "/tasks"), b"{ }"));
        assert_ne!(base, fingerprint(&parts("POST", "/tasks/batch"), b"{}"));
        assert_ne!(base, fingerprint(&parts("PUT", "/tasks"), b"{}"));
    }

    #[test]
    fn a_replay_repeats_status_headers_and_body_and_says_so() {
        let stored = StoredResponse {
            status: 201,
            headers: vec![("location".into(), "/tasks/1".into()), ("content-type".into(), "application/json".into())],
            body: b"{\"id\":1}".to_vec(),
        };
        let response = replay(stored);
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()[header::LOCATION], "/tasks/1");
        assert_eq!(response.headers().get_all(header::CONTENT_TYPE).iter().count(), 1);
        assert_eq!(response.headers()[IDEMPOTENT_REPLAYED], "true");
    }
}
