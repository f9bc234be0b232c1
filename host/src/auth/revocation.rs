//! The revocation list, kept in Redis so that every replica refuses at once
//! what it names: access tokens (by `jti`), refresh families (by `fam`) and
//! users — a user's record (`todo:revoked:user:<id>`, a hash) refuses their
//! access tokens issued before `tokens_before` (a role change, a password
//! change), their refresh families started before `sessions_before` (a
//! password change or reset), and, while `disabled` is set, every token of
//! theirs, the external provider's included.
//!
//! Invariants:
//! - An entry lives as long as what it revokes could still be presented,
//!   so the list never grows without bound; a user's record as long as the
//!   longest-lived token (`family_ttl`), past which their tokens from before
//!   it have expired anyway and the database (login, refresh, the external
//!   account's look-up) refuses a disabled account by itself.
//! - Times are milliseconds of the host's clock: a token's issue time is
//!   its `jti`'s (a UUIDv7), so a token issued in the same second but after
//!   a revocation still works.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::Utc;
use redis::Script;
use uuid::Uuid;

use super::tokens::{Claims, LEEWAY_SECS};
use crate::redis_client::{RedisClient, RedisUnavailable};

/// Prefix of a revoked family's key; `refresh`'s rotation script revokes a
/// family itself and builds the key from it.
pub(super) const FAMILY_KEY_PREFIX: &str = "todo:revoked:family:";
/// Prefix of a user's record; `refresh`'s rotation script reads it.
pub(super) const USER_KEY_PREFIX: &str = "todo:revoked:user:";

/// The check itself, in Lua, for the scripts that make it (the cluster
/// admission, `Revocations::is_revoked`): whether the token is refused by
/// its user's record (`user_key`; `issued_at` in ms, '' for an external
/// token) or by one of `KEYS[first_token_key..]` existing.
pub const REVOKED_BY_LUA: &str = r"
    local function revoked_by(user_key, first_token_key, issued_at)
        local user = redis.call('HMGET', user_key, 'disabled', 'tokens_before')
        if user[1] then
            return 1
        elseif user[2] and issued_at ~= '' and tonumber(issued_at) < tonumber(user[2]) then
            return 1
        elseif #KEYS >= first_token_key and redis.call('EXISTS', unpack(KEYS, first_token_key)) > 0 then
            return 1
        end
        return 0
    end
";

/// What to end of a user's, from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRevocation {
    /// Their access tokens (a role change: a refresh gets the new role).
    Tokens,
    /// Their access tokens and refresh families (a new password).
    Sessions,
    /// Everything, until `Enable`.
    Disable,
    /// Lifts `Disable` (what it ended stays ended).
    Enable,
}

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

    /// Whether `check`'s token is revoked now (for a request already
    /// admitted that goes on: a live stream).
    pub async fn is_revoked(&self, check: &AdmissionCheck) -> Result<bool, RedisUnavailable> {
        static SCRIPT: LazyLock<Script> =
            LazyLock::new(|| Script::new(&format!("{REVOKED_BY_LUA} return revoked_by(KEYS[1], 2, ARGV[1])")));
        let mut invocation = SCRIPT.key(&check.keys);
        invocation.arg(check.issued_at_ms.map(|ms| ms.to_string()).unwrap_or_default());
        Ok(self.redis.script::<i64>(&invocation).await? == 1)
    }

    /// Ends `what` of `user`'s on every replica.
    pub async fn revoke_user(&self, user: Uuid, what: UserRevocation) -> Result<(), RedisUnavailable> {
        let key = user_key(user);
        let now = Utc::now().timestamp_millis();
        let mut revoke = redis::pipe();
        revoke.atomic();
        match what {
            UserRevocation::Tokens => revoke.hset(&key, "tokens_before", now).ignore(),
            UserRevocation::Sessions => {
                revoke.hset_multiple(&key, &[("tokens_before", now), ("sessions_before", now)]).ignore()
            }
            UserRevocation::Disable => revoke
                .hset_multiple(&key, &[("tokens_before", now), ("sessions_before", now), ("disabled", 1)])
                .ignore(),
            UserRevocation::Enable => revoke.hdel(&key, "disabled").ignore(),
        };
        revoke.expire(&key, self.family_ttl.as_secs() as i64).ignore();
        self.redis.pipeline(&revoke).await
    }
}

/// What the cluster admission script (`ratelimit::cluster`) checks of a
/// request's caller, in the round trip that also counts the request
/// against the cluster quota.
pub struct AdmissionCheck {
    /// The user's record first, then the keys whose existence revokes the
    /// token (its `jti`'s and its family's; none for an external token).
    pub keys: Vec<String>,
    /// When the token was issued (ms), to compare with `tokens_before`;
    /// `None` for an external token, which only `disabled` refuses.
    pub issued_at_ms: Option<i64>,
}

impl AdmissionCheck {
    /// For one of the host's own access tokens.
    pub fn own(claims: &Claims) -> Self {
        let mut keys = vec![user_key(claims.sub), token_key(claims.jti)];
        keys.extend(claims.fam.map(family_key));
        Self { keys, issued_at_ms: Some(issued_at_ms(claims)) }
    }

    /// For the external provider's token of `user`.
    pub fn external(user: Uuid) -> Self {
        Self { keys: vec![user_key(user)], issued_at_ms: None }
    }
}

/// When the host issued the token, to the millisecond: its `jti`'s time.
pub(super) fn issued_at_ms(claims: &Claims) -> i64 {
    claims.jti.get_timestamp().map_or(claims.iat * 1000, |stamp| {
        let (secs, nanos) = stamp.to_unix();
        secs as i64 * 1000 + i64::from(nanos / 1_000_000)
    })
}

fn token_key(jti: Uuid) -> String {
    format!("todo:revoked:jti:{jti}")
}

fn family_key(family: Uuid) -> String {
    format!("{FAMILY_KEY_PREFIX}{family}")
}

fn user_key(user: Uuid) -> String {
    format!("{USER_KEY_PREFIX}{user}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn a_token_is_dated_by_its_jti_to_the_millisecond() {
        let before = Utc::now().timestamp_millis();
        let claims = Claims {
            sub: Uuid::now_v7(),
            role: Role::User,
            iat: Utc::now().timestamp(),
            exp: Utc::now().timestamp() + 60,
            jti: Uuid::now_v7(),
            iss: "todo-host".into(),
            fam: None,
        };
        let issued = issued_at_ms(&claims);
        assert!(issued >= before && issued <= Utc::now().timestamp_millis(), "{before} {issued}");
        let random = Claims { jti: Uuid::new_v4(), ..claims.clone() };
        assert_eq!(issued_at_ms(&random), claims.iat * 1000, "a jti without a time falls back to iat");
        let check = AdmissionCheck::own(&claims);
        assert_eq!(check.keys[0], format!("todo:revoked:user:{}", claims.sub), "the user's record comes first");
    }
}
