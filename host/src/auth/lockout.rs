//! Failed logins counted per account, on every replica: an account takes at
//! most `limit` wrong passwords per window, wherever they come from — the
//! per-address limit of `/auth/*` does not hold guesses spread over many
//! addresses.
//!
//! Invariants: the count is kept by the email asked for, whether or not an
//! account has it, so the answer never tells which emails exist; every
//! attempt is counted before its password is checked, so a burst of
//! parallel guesses gets no more than `limit` checks; a successful login
//! clears the count. Without Redis (or while it does not answer) only the
//! per-address limit applies: logins are not refused for want of a counter.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use sha2::{Digest, Sha256};

use super::service::{AuthError, normalize_email};
use super::users::User;
use crate::redis_client::RedisClient;

/// Counts an attempt and answers the count and the seconds the window has
/// left; the window starts at the first attempt.
static COUNT_ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('TTL', KEYS[1])}
",
    )
});

#[derive(Clone)]
pub struct LoginLockout {
    redis: Option<RedisClient>,
    limit: u32,
    window: Duration,
}

impl LoginLockout {
    pub fn new(redis: Option<RedisClient>, limit: u32, window: Duration) -> Self {
        Self { redis, limit: limit.max(1), window }
    }

    /// Runs `check` (the password check of `email`) unless the account has
    /// had `limit` failed attempts in the window; a success clears them.
    pub async fn attempt(
        &self,
        email: &str,
        check: impl Future<Output = Result<User, AuthError>>,
    ) -> Result<User, AuthError> {
        let key = key_of(email);
        if let Some((count, retry_after_secs)) = self.count(&key).await
            && count > u64::from(self.limit)
        {
            return Err(AuthError::LockedOut { retry_after_secs });
        }
        let outcome = check.await;
        if outcome.is_ok() {
            self.clear(&key).await;
        }
        outcome
    }

    async fn count(&self, key: &str) -> Option<(u64, u64)> {
        let redis = self.redis.as_ref()?;
        let mut invocation = COUNT_ATTEMPT.key(key);
        invocation.arg(self.window.as_secs().max(1));
        match redis.script::<(u64, i64)>(&invocation).await {
            Ok((count, ttl)) => Some((count, ttl.max(1) as u64)),
            Err(error) => {
                tracing::warn!(%error, "cannot count a login attempt; only the per-address limit applies");
                None
            }
        }
    }

    async fn clear(&self, key: &str) {
        let Some(redis) = &self.redis else { return };
        if let Err(error) = redis.run::<()>(redis::cmd("DEL").arg(key)).await {
            tracing::debug!(%error, "cannot clear an account's failed logins");
        }
    }
}

/// The counter of `email` as the login form normalises it; hashed, so Redis
/// holds no addresses.
fn key_of(email: &str) -> String {
    let digest = Sha256::digest(normalize_email(email).as_bytes());
    format!("todo:login-failures:{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_has_one_counter_however_its_email_is_written() {
        assert_eq!(key_of("Ann@Example.com "), key_of("ann@example.com"));
        assert_ne!(key_of("ann@example.com"), key_of("bob@example.com"));
        assert!(!key_of("ann@example.com").contains("ann"));
    }
}
