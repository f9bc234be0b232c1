//! `GET /tasks/events`: the caller's task events as server-sent events
//! (`events::live`), resumable with `Last-Event-ID`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::auth::{AccessToken, Actor, AdmissionCheck, Authenticated, Sessions};
use crate::events::live::{LiveEvent, LiveEvents, Position, StreamSlot};
use crate::problem::Problem;

/// How often an idle stream says it is alive (proxies close silent ones).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a stream asks whether its token was revoked since it began (a
/// logout, a disabled account, a role or password change end it).
const RECHECK: Duration = Duration::from_secs(15);
/// Longest a stream lives without a token expiry to end it (external tokens).
const MAX_STREAM: Duration = Duration::from_secs(3600);

/// The task events the caller may see, as they happen: `event: task`
/// with the CloudEvent as its data and a position as its id; `event: reset`
/// when the position asked for is too old (reload, then go on). The stream
/// ends when the access token expires or is revoked: reconnect with a new
/// one and the last id seen as `Last-Event-ID`.
#[utoipa::path(get, path = "/tasks/events", tag = "tasks", security(("bearer" = [])),
    params(("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event seen, to resume after it")),
    responses(
        (status = 200, description = "The stream (`text/event-stream`)", content_type = "text/event-stream", body = String),
        (status = 429, description = "The user has `LIVE_STREAMS_PER_USER` streams open here (`too-many-streams`)", body = super::openapi::params::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "No broker is configured, or this process serves no API (`live-events-unavailable`)", body = super::openapi::params::ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn stream(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    token: Option<Extension<AccessToken>>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let live = state.live_events.as_ref().ok_or_else(|| {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "live-events-unavailable", "Live events unavailable")
            .detail("this server follows no broker (KAFKA_BROKERS is not set): poll GET /tasks instead")
    })?;
    let slot = live.open_stream(actor.user_id).ok_or_else(|| {
        Problem::new(StatusCode::TOO_MANY_REQUESTS, "too-many-streams", "Too many streams")
            .detail("this account has as many live streams open as it may: close one first")
            .header(header::RETRY_AFTER, 5)
    })?;
    let last_event_id = headers.get("last-event-id").and_then(|value| value.to_str().ok());
    let subscription = live.subscribe(last_event_id);
    let token = token.map(|Extension(token)| token);
    let admission = match &token {
        Some(AccessToken(claims)) => AdmissionCheck::own(claims),
        None => AdmissionCheck::external(actor.user_id),
    };
    let feed = Feed {
        actor,
        reset: subscription.reset,
        backlog: subscription.backlog.into(),
        position: subscription.position,
        epoch: subscription.epoch,
        receiver: subscription.live,
        ends_at: ends_at(token.as_ref()),
        recheck: tokio::time::interval_at(Instant::now() + RECHECK, RECHECK),
        admission,
        sessions: state.sessions.clone(),
        closing: live.closing(),
        live: live.clone(),
        _slot: slot,
    };
    let sse = Sse::new(feed.into_stream()).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"));
    let mut response = sse.into_response();
    // nginx would otherwise hold events back in its buffer.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// When the stream ends: at the token's expiry, within `MAX_STREAM`.
fn ends_at(token: Option<&AccessToken>) -> Instant {
    let longest = Instant::now() + MAX_STREAM;
    let Some(AccessToken(claims)) = token else { return longest };
    let left = (claims.exp - chrono::Utc::now().timestamp()).max(0) as u64;
    longest.min(Instant::now() + Duration::from_secs(left))
}

/// One client's stream.
struct Feed {
    actor: Actor,
    /// A `reset` is owed before anything else.
    reset: bool,
    backlog: VecDeque<Arc<LiveEvent>>,
    position: Position,
    /// The topic's epoch `position` belongs to.
    epoch: u64,
    receiver: tokio::sync::broadcast::Receiver<Arc<LiveEvent>>,
    ends_at: Instant,
    recheck: tokio::time::Interval,
    admission: AdmissionCheck,
    sessions: Sessions,
    closing: CancellationToken,
    live: LiveEvents,
    _slot: StreamSlot,
}

impl Feed {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures::stream::unfold(self, |mut feed| async move { feed.next().await.map(|event| (Ok(event), feed)) })
    }

    async fn next(&mut self) -> Option<Event> {
        if std::mem::take(&mut self.reset) {
            return Some(self.reset_event());
        }
        loop {
            let event = match self.backlog.pop_front() {
                Some(event) => event,
                None => tokio::select! {
                    _ = tokio::time::sleep_until(self.ends_at) => return None,
                    _ = self.closing.cancelled() => return None,
                    _ = self.recheck.tick() => match self.sessions.is_revoked(&self.admission).await {
                        true => return None,
                        false => continue,
                    },
                    received = self.receiver.recv() => match received {
                        Ok(event) => event,
                        Err(RecvError::Lagged(_)) => return Some(self.start_over()),
                        Err(RecvError::Closed) => return None,
                    },
                },
            };
            if event.epoch > self.epoch {
                return Some(self.start_over());
            }
            if event.epoch < self.epoch || self.position.has_given(&event) {
                continue;
            }
            self.position.advance(&event);
            if event.visible_to(&self.actor) {
                return Some(Event::default().event("task").id(self.position.encode()).data(&event.json));
            }
        }
    }

    /// Goes on from where the events are now, telling the client to reload.
    fn start_over(&mut self) -> Event {
        (self.position, self.epoch) = self.live.end();
        self.reset_event()
    }

    fn reset_event(&self) -> Event {
        Event::default().event("reset").id(self.position.encode()).data("{}")
    }
}
