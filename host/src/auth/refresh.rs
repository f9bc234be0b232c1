//! Refresh tokens: opaque 256-bit random strings (base64url), rotated on
//! every use. Each login starts a family; a token presented a second time
//! was stolen or raced, so the whole family is revoked, the latest token
//! included.
//!
//! Redis holds `todo:refresh:<sha256 of the token>` → {user, fam, used, at
//! (when the family started, ms)}, expiring with the token: the token
//! itself is never stored, so a Redis dump opens no session. A used record
//! stays until it expires so that its reuse is recognised. A family started
//! before its user's `sessions_before`, or of a disabled user, is refused
//! (`revocation`).

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use redis::Script;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::revocation::{FAMILY_KEY_PREFIX, Revocations, USER_KEY_PREFIX};
use super::tokens::AsOf;
use crate::redis_client::{RedisClient, RedisUnavailable};

/// Checks and rotates in one step, so two concurrent uses of a token
/// cannot both succeed: the second finds it used and revokes the family.
/// The family key is derived from the record inside the script; that is
/// fine on the single Redis this host talks to, but not Redis Cluster-safe.
static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        -- KEYS[1]: the presented token's record, KEYS[2]: its successor's
        -- ARGV[1]: revoked-family key prefix, ARGV[2]: token TTL,
        -- ARGV[3]: family revocation TTL, ARGV[4]: user record prefix
        local record = redis.call('HMGET', KEYS[1], 'user', 'fam', 'used', 'at')
        local user, fam, used, at = record[1], record[2], record[3], record[4] or '0'
        if not user then return {'unknown'} end
        local revoked = ARGV[1] .. fam
        if redis.call('EXISTS', revoked) == 1 then return {'revoked', user, fam} end
        local account = redis.call('HMGET', ARGV[4] .. user, 'disabled', 'sessions_before')
        if account[1] or (account[2] and tonumber(at) < tonumber(account[2])) then
            return {'revoked', user, fam}
        end
        if used == '1' then
            redis.call('SET', revoked, '1', 'EX', ARGV[3])
            return {'reused', user, fam}
        end
        redis.call('HSET', KEYS[1], 'used', '1')
        redis.call('HSET', KEYS[2], 'user', user, 'fam', fam, 'used', '0', 'at', at)
        redis.call('EXPIRE', KEYS[2], ARGV[2])
        return {'rotated', user, fam}
        ",
    )
});

/// A refresh token handed to a client, and whose it is.
pub struct RefreshToken {
    pub token: String,
    pub expires_in: Duration,
    pub user_id: Uuid,
    pub family: Uuid,
}

#[derive(Clone)]
pub struct RefreshTokens {
    redis: RedisClient,
    revocations: Revocations,
    ttl: Duration,
}

impl RefreshTokens {
    /// Each token lives `ttl` from its issue; rotating gives the successor
    /// a full `ttl` again.
    pub fn new(redis: RedisClient, revocations: Revocations, ttl: Duration) -> Self {
        Self { redis, revocations, ttl }
    }

    /// The first token of a new family (a login), the family dated `as_of`.
    pub async fn start(&self, user_id: Uuid, as_of: AsOf) -> Result<RefreshToken, RedisUnavailable> {
        let refresh = RefreshToken { token: random_token(), expires_in: self.ttl, user_id, family: Uuid::now_v7() };
        let key = record_key(&refresh.token);
        let fields = [
            ("user", refresh.user_id.to_string()),
            ("fam", refresh.family.to_string()),
            ("used", "0".into()),
            ("at", as_of.millis().to_string()),
        ];
        let mut store = redis::pipe();
        store.atomic().hset_multiple(&key, &fields).ignore().expire(&key, self.ttl.as_secs() as i64).ignore();
        self.redis.pipeline::<()>(&store).await?;
        Ok(refresh)
    }

    /// Uses `token` up and returns its successor; `None` when the token is
    /// unknown, expired, of a revoked family or already used (the caller
    /// must not tell these apart).
    pub async fn rotate(&self, token: &str) -> Result<Option<RefreshToken>, RedisUnavailable> {
        let successor = random_token();
        let mut rotate = ROTATE.key(record_key(token));
        rotate
            .key(record_key(&successor))
            .arg(FAMILY_KEY_PREFIX)
            .arg(self.ttl.as_secs())
            .arg(self.revocations.family_ttl().as_secs())
            .arg(USER_KEY_PREFIX);
        let answer: Vec<String> = self.redis.script(&rotate).await?;
        // `{'unknown'}` has no ids; every other outcome names user and family.
        let [outcome, user, family] = answer.as_slice() else { return Ok(None) };
        let (Ok(user_id), Ok(family)) = (user.parse::<Uuid>(), family.parse::<Uuid>()) else {
            tracing::error!(?answer, "a refresh token record holds no valid ids");
            return Ok(None);
        };
        Ok(match outcome.as_str() {
            "rotated" => Some(RefreshToken { token: successor, expires_in: self.ttl, user_id, family }),
            "reused" => {
                // A leak or a client racing itself: worth an operator's look.
                tracing::warn!(%user_id, %family, "a used refresh token was presented again; its family is revoked");
                None
            }
            _ => None,
        })
    }
}

/// 256 random bits in base64url: a refresh or password reset token.
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn record_key(token: &str) -> String {
    format!("todo:refresh:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_random_bits_in_base64url() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn records_are_keyed_by_a_hash_never_by_the_token() {
        let token = random_token();
        let key = record_key(&token);
        assert!(!key.contains(&token));
        assert_eq!(key.len(), "todo:refresh:".len() + 64);
    }
}
