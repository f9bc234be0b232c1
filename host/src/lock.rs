//! A distributed lock in Redis: `SET NX PX` with a random token; renewal
//! and release by Lua compare-and-act, so only the holder can extend or
//! drop it. Each acquisition also draws a fencing token (a counter that
//! only grows): work guarded by the lock carries it to the database, which
//! refuses a token older than one it has seen, so a holder whose lease
//! lapsed (paused, partitioned) cannot act after a newer holder did.

use std::sync::LazyLock;
use std::time::Duration;

use rand::RngCore;
use redis::Script;

use crate::redis_client::{RedisClient, RedisUnavailable};

/// Hashed once: a lock is made per kv write call of a plugin.
static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: Script::new(
        r"
            if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
                return redis.call('INCR', KEYS[2])
            end
            return 0
            ",
    ),
    renew: Script::new(
        r"
            if redis.call('GET', KEYS[1]) == ARGV[1] then
                return redis.call('PEXPIRE', KEYS[1], ARGV[2])
            end
            return 0
            ",
    ),
    release: Script::new(
        r"
            if redis.call('GET', KEYS[1]) == ARGV[1] then
                return redis.call('DEL', KEYS[1])
            end
            return 0
            ",
    ),
    raise_fence: Script::new(
        r"
            if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
                redis.call('SET', KEYS[1], ARGV[1])
            end
            return 1
            ",
    ),
});

#[derive(Clone)]
pub struct DistributedLock {
    redis: RedisClient,
    key: String,
    ttl: Duration,
}

struct Scripts {
    acquire: Script,
    renew: Script,
    release: Script,
    raise_fence: Script,
}

/// A held lock.
#[derive(Debug, Clone)]
pub struct Lease {
    token: String,
    /// Grows with every acquisition of this lock.
    pub fence: i64,
}

impl DistributedLock {
    pub fn new(redis: RedisClient, name: &str, ttl: Duration) -> Self {
        Self { redis, key: format!("todo:lock:{name}"), ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lock if it is free.
    pub async fn try_acquire(&self) -> Result<Option<Lease>, RedisUnavailable> {
        let mut token = [0u8; 16];
        rand::rng().fill_bytes(&mut token);
        let token = hex::encode(token);
        let mut invocation = SCRIPTS.acquire.key(&self.key);
        invocation.key(format!("{}:fence", self.key)).arg(&token).arg(self.ttl_ms());
        let fence: i64 = self.redis.script(&invocation).await?;
        Ok((fence > 0).then_some(Lease { token, fence }))
    }

    /// Extends the lease by a TTL; `false` if it was lost.
    pub async fn renew(&self, lease: &Lease) -> Result<bool, RedisUnavailable> {
        let mut invocation = SCRIPTS.renew.key(&self.key);
        invocation.arg(&lease.token).arg(self.ttl_ms());
        Ok(self.redis.script::<i64>(&invocation).await? == 1)
    }

    /// Drops the lock if this lease still holds it.
    pub async fn release(&self, lease: &Lease) -> Result<bool, RedisUnavailable> {
        let mut invocation = SCRIPTS.release.key(&self.key);
        invocation.arg(&lease.token);
        Ok(self.redis.script::<i64>(&invocation).await? == 1)
    }

    /// Moves the fencing counter up to `fence` (never down), so the next
    /// acquisition draws a token newer than any the guarded work has seen.
    pub async fn raise_fence(&self, fence: i64) -> Result<(), RedisUnavailable> {
        let mut invocation = SCRIPTS.raise_fence.key(format!("{}:fence", self.key));
        invocation.arg(fence);
        self.redis.script::<i64>(&invocation).await.map(|_| ())
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}
