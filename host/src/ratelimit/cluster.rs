//! The cluster-wide limit: the same GCRA as the per-process limiter, with
//! its state in Redis so every replica counts a client's requests against
//! one quota. One Lua script decides atomically on Redis's clock. When
//! Redis is unavailable the request passes here and only the per-process
//! limit applies.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use redis::Script;

use super::{ClientKey, Quota, client_key, rate_limited};
use crate::redis_client::RedisClient;

#[derive(Clone)]
pub struct ClusterLimiter {
    redis: Option<RedisClient>,
    policy: &'static str,
    quota: Quota,
    script: Arc<Script>,
}

impl ClusterLimiter {
    pub fn new(redis: Option<RedisClient>, policy: &'static str, quota: Quota) -> Self {
        // GCRA: the theoretical arrival time (TAT) advances one emission
        // interval per request; a request is allowed while the TAT stays
        // within `burst` intervals of now. Microseconds throughout.
        // Answers {allowed, wait_us, remaining}.
        let script = Script::new(
            r"
            local time = redis.call('TIME')
            local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
            local interval = tonumber(ARGV[1])
            local burst = tonumber(ARGV[2])
            local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
            local allow_at = tat + interval - burst * interval
            if now < allow_at then
                return {0, allow_at - now, 0}
            end
            -- %d: Lua would print a 16-digit number in exponent form.
            redis.call('SET', KEYS[1], string.format('%d', tat + interval), 'PX', math.ceil(burst * interval / 1000) + 1000)
            return {1, 0, math.floor((now - allow_at) / interval)}
            ",
        );
        Self { redis, policy, quota, script: Arc::new(script) }
    }

    /// `Some(wait)` when `key` is over quota across the cluster.
    async fn wait(&self, key: &ClientKey) -> Option<Duration> {
        let redis = self.redis.as_ref()?;
        let key = match key {
            ClientKey::User(user) => format!("todo:ratelimit:{}:user:{user}", self.policy),
            ClientKey::Ip(ip) => format!("todo:ratelimit:{}:ip:{ip}", self.policy),
        };
        let interval_us = self.quota.period.as_micros().max(1) as u64;
        let mut invocation = self.script.key(key);
        invocation.arg(interval_us).arg(self.quota.burst);
        match redis.script::<(i64, i64, i64)>(&invocation).await {
            Ok((0, wait_us, _)) => Some(Duration::from_micros(wait_us.max(0) as u64)),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, "cluster rate limit unavailable; the per-process limit applies");
                None
            }
        }
    }
}

/// Middleware: 429 when the client is over its cluster-wide quota.
pub async fn limit(State(limiter): State<ClusterLimiter>, request: Request, next: Next) -> Response {
    if let Some(key) = client_key(&request)
        && let Some(wait) = limiter.wait(&key).await
    {
        metrics::counter!("rate_limited_total", "policy" => limiter.policy, "scope" => "cluster").increment(1);
        // Whole seconds, rounded up: never tell a client to come back early.
        let retry_after = wait.as_micros().div_ceil(1_000_000).max(1) as u64;
        return rate_limited(retry_after, limiter.policy, limiter.quota).into_response();
    }
    next.run(request).await
}
