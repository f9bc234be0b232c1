//! Cluster admission: the cluster-wide limit — the same GCRA as the
//! per-process limiter, with its state in Redis so every replica counts a
//! client's requests against one quota — and the revocation check of the
//! request's caller (`auth::revocation`: the token, its family, its user),
//! in ONE Lua script, so a request costs one Redis
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
use crate::auth::middleware::{Identity, revoked};
use crate::auth::{AccessToken, AdmissionCheck, REVOKED_BY_LUA};
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
        // instead when the token is revoked, then (with a token) the user's
        // revocation record and the keys whose existence revokes the token.
        // ARGV: emission interval (us), burst, the token's issue time (ms;
        // '' for an external token).
        // GCRA: the theoretical arrival time (TAT) advances one emission
        // interval per request; a request is allowed while the TAT stays
        // within `burst` intervals of now. Microseconds throughout.
        // Answers {allowed, wait_us, remaining, revoked}.
        let gcra = r"
            local revoked = 0
            if #KEYS > 2 then
                revoked = revoked_by(KEYS[3], 4, ARGV[3])
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
            ";
        let script = Script::new(&format!("{REVOKED_BY_LUA}{gcra}"));
        Self { redis, policy, quota, script: Arc::new(script) }
    }

    fn quota_key(&self, key: &ClientKey) -> String {
        match key {
            ClientKey::User(user) => format!("todo:ratelimit:{}:user:{user}", self.policy),
            ClientKey::Ip(ip) => format!("todo:ratelimit:{}:ip:{ip}", self.policy),
        }
    }

    /// The admission script's keys for `request` and its token's issue
    /// time (see `new`); `None` when nothing identifies its client.
    fn keys(&self, request: &Request) -> Option<(Vec<String>, Option<i64>)> {
        let quota_key = self.quota_key(&client_key(request)?);
        let client = request.extensions().get::<ClientAddr>().map(|client| client.limit_key());
        let revoked_key = client.map_or_else(|| quota_key.clone(), |ip| self.quota_key(&ClientKey::Ip(ip)));
        let mut keys = vec![quota_key, revoked_key];
        let check = match (request.extensions().get::<AccessToken>(), request.extensions().get::<Identity>()) {
            (Some(AccessToken(claims)), _) => Some(AdmissionCheck::own(claims)),
            (None, Some(Identity::Actor(actor))) => Some(AdmissionCheck::external(actor.user_id)),
            _ => None,
        };
        let issued_at_ms = check.and_then(|check| {
            keys.extend(check.keys);
            check.issued_at_ms
        });
        Some((keys, issued_at_ms))
    }

    async fn admit(&self, keys: Option<(Vec<String>, Option<i64>)>) -> Admission {
        let (Some(redis), Some((keys, issued_at_ms))) = (self.redis.as_ref(), keys) else {
            return Admission::default();
        };
        let mut invocation = self.script.key(keys);
        let interval_us = self.quota.period.as_micros().max(1) as u64;
        invocation
            .arg(interval_us)
            .arg(self.quota.burst)
            .arg(issued_at_ms.map(|ms| ms.to_string()).unwrap_or_default());
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
