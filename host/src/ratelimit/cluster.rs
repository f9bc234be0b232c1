//! Cluster admission: the cluster-wide limit — the same GCRA as the
//! per-process limiter, with its state in Redis so every replica counts a
//! client's requests against one quota — and the revocation check of the
//! request's access token, in ONE Lua script, so a request costs one Redis
//! round trip before its handler. When Redis is unavailable the request
//! passes here: only the per-process limit applies and revocations are not
//! checked (see `auth::middleware`).
//!
//! A revoked token's request counts against its client IP's quota, as any
//! request without a valid token does.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use redis::Script;

use super::{ClientKey, Quota, client_key, rate_limited};
use crate::auth::middleware::revoked;
use crate::auth::{AccessToken, revocation_keys};
use crate::client_addr::ClientAddr;
use crate::redis_client::RedisClient;

#[derive(Clone)]
pub struct ClusterLimiter {
    redis: Option<RedisClient>,
    policy: &'static str,
    quota: Quota,
    script: Arc<Script>,
}

/// What the admission script decided.
#[derive(Debug, Default)]
struct Admission {
    /// `Some(wait)`: over the cluster quota.
    wait: Option<Duration>,
    revoked: bool,
}

impl ClusterLimiter {
    pub fn new(redis: Option<RedisClient>, policy: &'static str, quota: Quota) -> Self {
        // KEYS: the client's quota key, the quota key to count against
        // instead when the token is revoked, then the token's revocation
        // keys (none without a token).
        // GCRA: the theoretical arrival time (TAT) advances one emission
        // interval per request; a request is allowed while the TAT stays
        // within `burst` intervals of now. Microseconds throughout.
        // Answers {allowed, wait_us, remaining, revoked}.
        let script = Script::new(
            r"
            local revoked = 0
            if #KEYS > 2 and redis.call('EXISTS', unpack(KEYS, 3)) > 0 then
                revoked = 1
            end
            local key = KEYS[1 + revoked]
            local time = redis.call('TIME')
            local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
            local interval = tonumber(ARGV[1])
            local burst = tonumber(ARGV[2])
            local tat = math.max(tonumber(redis.call('GET', key) or now), now)
            local allow_at = tat + interval - burst * interval
            if now < allow_at then
                return {0, allow_at - now, 0, revoked}
            end
            -- %d: Lua would print a 16-digit number in exponent form.
            redis.call('SET', key, string.format('%d', tat + interval), 'PX', math.ceil(burst * interval / 1000) + 1000)
            return {1, 0, math.floor((now - allow_at) / interval), revoked}
            ",
        );
        Self { redis, policy, quota, script: Arc::new(script) }
    }

    fn quota_key(&self, key: &ClientKey) -> String {
        match key {
            ClientKey::User(user) => format!("todo:ratelimit:{}:user:{user}", self.policy),
            ClientKey::Ip(ip) => format!("todo:ratelimit:{}:ip:{ip}", self.policy),
        }
    }

    /// The admission script's keys for `request` (see `new`); `None` when
    /// nothing identifies its client.
    fn keys(&self, request: &Request) -> Option<Vec<String>> {
        let quota_key = self.quota_key(&client_key(request)?);
        let client = request.extensions().get::<ClientAddr>().map(|client| client.limit_key());
        let revoked_key = client.map_or_else(|| quota_key.clone(), |ip| self.quota_key(&ClientKey::Ip(ip)));
        let mut keys = vec![quota_key, revoked_key];
        if let Some(AccessToken(claims)) = request.extensions().get::<AccessToken>() {
            keys.extend(revocation_keys(claims));
        }
        Some(keys)
    }

    async fn admit(&self, keys: Option<Vec<String>>) -> Admission {
        let (Some(redis), Some(keys)) = (self.redis.as_ref(), keys) else {
            return Admission::default();
        };
        let mut invocation = self.script.key(keys);
        let interval_us = self.quota.period.as_micros().max(1) as u64;
        invocation.arg(interval_us).arg(self.quota.burst);
        match redis.script::<(i64, i64, i64, i64)>(&invocation).await {
            Ok((allowed, wait_us, _, revoked)) => Admission {
                wait: (allowed == 0).then(|| Duration::from_micros(wait_us.max(0) as u64)),
                revoked: revoked == 1,
            },
            Err(error) => {
                tracing::warn!(%error, "cluster admission unavailable; the per-process limit applies and revocations are not checked");
                Admission::default()
            }
        }
    }
}

/// Middleware: refuses a revoked token (`require_auth` answers 401), and
/// answers 429 when the client is over its cluster-wide quota.
pub async fn limit(State(limiter): State<ClusterLimiter>, mut request: Request, next: Next) -> Response {
    let admission = limiter.admit(limiter.keys(&request)).await;
    if admission.revoked {
        revoked(&mut request);
    }
    if let Some(wait) = admission.wait {
        metrics::counter!("rate_limited_total", "policy" => limiter.policy, "scope" => "cluster").increment(1);
        // Whole seconds, rounded up: never tell a client to come back early.
        let retry_after = wait.as_micros().div_ceil(1_000_000).max(1) as u64;
        return rate_limited(retry_after, limiter.policy, limiter.quota).into_response();
    }
    next.run(request).await
}
