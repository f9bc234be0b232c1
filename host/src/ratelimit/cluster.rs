//! The cluster-wide limit: the same GCRA as the per-process limiter, with
//! its state in Redis so every replica counts a client's requests against
//! one quota. One Lua script decides atomically on Redis's clock. When
//! Redis is unavailable the request passes here and only the per-process
//! limit applies.

use std::sync::Arc;

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
        // within `burst` intervals of now. Answers {allowed, wait_ms, remaining}.
        let script = Script::new(
            r"
            local time = redis.call('TIME')
            local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
            local interval = tonumber(ARGV[1])
            local burst = tonumber(ARGV[2])
            local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
            local allow_at = tat + interval - burst * interval
            if now < allow_at then
                return {0, allow_at - now, 0}
            end
            redis.call('SET', KEYS[1], tat + interval, 'PX', burst * interval + 1000)
            return {1, 0, math.floor((now - allow_at) / interval)}
            ",
        );
        Self { redis, policy, quota, script: Arc::new(script) }
    }

    /// `Some(wait in ms)` when `key` is over quota across the cluster.
    async fn wait_ms(&self, key: &ClientKey) -> Option<u64> {
        let redis = self.redis.as_ref()?;
        let key = match key {
            ClientKey::User(user) => format!("todo:ratelimit:{}:user:{user}", self.policy),
            ClientKey::Ip(ip) => format!("todo:ratelimit:{}:ip:{ip}", self.policy),
        };
        let interval_ms = self.quota.period.as_millis().max(1) as u64;
        let mut invocation = self.script.key(key);
        invocation.arg(interval_ms).arg(self.quota.burst);
        match redis.script::<(i64, i64, i64)>(&invocation).await {
            Ok((0, wait_ms, _)) => Some(wait_ms.max(0) as u64),
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
        && let Some(wait_ms) = limiter.wait_ms(&key).await
    {
        metrics::counter!("rate_limited_total", "policy" => limiter.policy, "scope" => "cluster").increment(1);
        return rate_limited(wait_ms.div_ceil(1000).max(1), limiter.policy, limiter.quota).into_response();
    }
    next.run(request).await
}
