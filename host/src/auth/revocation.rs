//! The revocation list: access tokens (by `jti`) and refresh families (by
//! `fam`) that must no longer be accepted, kept in Redis so that every
//! replica refuses them at once. An entry only lives as long as what it
//! revokes could still be presented, so the list never grows without bound.

use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use super::tokens::{Claims, LEEWAY_SECS};
use crate::redis_client::{RedisClient, RedisUnavailable};

/// Prefix of a revoked family's key; `refresh`'s rotation script revokes a
/// family itself and builds the key from it.
pub(super) const FAMILY_KEY_PREFIX: &str = "todo:revoked:family:";

#[derive(Clone)]
pub struct Revocations {
    redis: RedisClient,
    family_ttl: Duration,
}

impl Revocations {
    /// `family_ttl` must cover the longest-lived token of a family: its
    /// newest refresh token or an access token issued with it.
    pub fn new(redis: RedisClient, family_ttl: Duration) -> Self {
        Self { redis, family_ttl }
    }

    pub(super) fn family_ttl(&self) -> Duration {
        self.family_ttl
    }

    /// Revokes the access token and, when it has one, its refresh family.
    pub async fn revoke(&self, claims: &Claims) -> Result<(), RedisUnavailable> {
        // Past `exp` + leeway the token is refused anyway.
        let remaining = (claims.exp - Utc::now().timestamp()).max(0) as u64 + LEEWAY_SECS;
        let mut revoke = redis::pipe();
        revoke.atomic().set_ex(token_key(claims.jti), 1, remaining).ignore();
        if let Some(family) = claims.fam {
            revoke.set_ex(family_key(family), 1, self.family_ttl.as_secs()).ignore();
        }
        self.redis.pipeline(&revoke).await
    }
}

/// The keys whose existence revokes a token: its `jti`'s and its family's.
/// The cluster admission script (`ratelimit::cluster`) checks them in the
/// round trip that also counts the request against the cluster quota.
pub fn revocation_keys(claims: &Claims) -> Vec<String> {
    let mut keys = vec![token_key(claims.jti)];
    keys.extend(claims.fam.map(family_key));
    keys
}

fn token_key(jti: Uuid) -> String {
    format!("todo:revoked:jti:{jti}")
}

fn family_key(family: Uuid) -> String {
    format!("{FAMILY_KEY_PREFIX}{family}")
}
