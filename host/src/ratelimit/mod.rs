//! Rate limiting, keyed by user when the request carries a valid token, by
//! client IP otherwise: per process with tower-governor (GCRA), and across
//! the cluster with the same GCRA in Redis (`cluster`). Over quota → 429
//! problem+json with `Retry-After` and `RateLimit-*` headers.

pub mod cluster;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, Request, StatusCode, header};
use axum::response::IntoResponse;
use governor::middleware::NoOpMiddleware;
use tower_governor::GovernorError;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;
use uuid::Uuid;

use crate::auth::middleware::Identity;
use crate::background::Background;
use crate::client_addr::ClientAddr;
use crate::problem::Problem;

pub type RateLimitLayer = tower_governor::GovernorLayer<ClientKeyExtractor, NoOpMiddleware, Body>;

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// One request's worth of quota comes back every `period`.
    pub period: Duration,
    pub burst: u32,
}

impl Quota {
    pub fn per_second(rate: u32, burst: u32) -> Self {
        Self { period: Duration::from_secs(1) / rate.max(1), burst: burst.max(1) }
    }

    pub fn per_minute(rate: u32, burst: u32) -> Self {
        Self { period: Duration::from_secs(60) / rate.max(1), burst: burst.max(1) }
    }
}

/// Who a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    User(Uuid),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy)]
pub struct ClientKeyExtractor;

impl KeyExtractor for ClientKeyExtractor {
    type Key = ClientKey;

    fn extract<T>(&self, request: &Request<T>) -> Result<Self::Key, GovernorError> {
        client_key(request).ok_or(GovernorError::UnableToExtractKey)
    }
}

/// The user behind a verified token, or else the client's address (the TCP
/// peer's, or behind trusted proxies the one they forwarded).
pub fn client_key<T>(request: &Request<T>) -> Option<ClientKey> {
    if let Some(Identity::Actor(actor)) = request.extensions().get::<Identity>() {
        return Some(ClientKey::User(actor.user_id));
    }
    request.extensions().get::<ClientAddr>().map(|client| ClientKey::Ip(client.limit_key()))
}

/// A limiter for one group of routes (`policy` names it in the headers).
/// Its state is pruned every minute (on `background`) so idle clients cost
/// no memory.
pub fn layer(policy: &'static str, quota: Quota, background: &Background) -> RateLimitLayer {
    let config: Arc<GovernorConfig<ClientKeyExtractor, NoOpMiddleware>> = Arc::new(
        GovernorConfigBuilder::default()
            .key_extractor(ClientKeyExtractor)
            .period(quota.period)
            .burst_size(quota.burst)
            .finish()
            .expect("a quota has a positive period and burst"),
    );
    let limiter = config.limiter().clone();
    background.spawn_until_shutdown(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.retain_recent();
        }
    });
    tower_governor::GovernorLayer::new(config)
        .error_handler(move |error| too_many_requests(error, policy, quota).into_response())
}

fn too_many_requests(error: GovernorError, policy: &'static str, quota: Quota) -> Problem {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            metrics::counter!("rate_limited_total", "policy" => policy, "scope" => "process").increment(1);
            // governor rounds the wait down to whole seconds; never tell a
            // client to come back before its quota has.
            rate_limited(wait_time + 1, policy, quota)
        }
        GovernorError::UnableToExtractKey | GovernorError::Other { .. } => {
            tracing::error!(%error, "rate limiter could not classify a request");
            Problem::internal()
        }
    }
}

/// The 429 of `policy`: come back in `retry_after` seconds.
pub fn rate_limited(retry_after: u64, policy: &str, quota: Quota) -> Problem {
    let window = (quota.period * quota.burst).as_secs().max(1);
    Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
        .detail(format!(
            "this client used its quota of {} requests per {window} s on these routes; retry in {retry_after} s",
            quota.burst
        ))
        .header(header::RETRY_AFTER, retry_after)
        .header(HeaderName::from_static("ratelimit-limit"), quota.burst)
        .header(HeaderName::from_static("ratelimit-remaining"), 0)
        .header(HeaderName::from_static("ratelimit-reset"), retry_after)
        .header(HeaderName::from_static("ratelimit-policy"), format!("{};w={window};policy=\"{policy}\"", quota.burst))
}
