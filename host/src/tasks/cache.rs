//! Cache-aside for task reads, in Redis, shared by every replica.
//!
//! Entries are never deleted on write; they are outdated. Each entry is
//! stamped with the generations it was read under, and one `MGET` reads the
//! current generations together with the entry:
//! - a task: `…:task:<id>`, stamped `<epoch> <task generation>`;
//! - a listing page: `…:list:<scope>:<query digest>`, stamped `<epoch>
//!   <scope generation>`, where the scope is the owner (role `user`) or
//!   `all` (admin, viewer).
//!
//! An entry whose stamp is not the current one is a miss. After a write
//! commits, the task's generation, its owners' generations and the `all`
//! generation are bumped (one script, no KEYS/SCAN). Each generation also
//! keeps the primary's WAL position after the last write that bumped it
//! (`<generation key>:lsn`, only ever raised, set in the same script as the
//! bump), and the epoch keeps a floor (`epoch:lsn`): a miss tells how far a
//! read replica must have replayed to answer it (`CacheSlot::freshness`,
//! the larger of the two), the same position any reader of that generation
//! is told, so what a replica answers and the cache then keeps is never
//! older than the write that made the generation. A reader that raced the
//! write stores what it read stamped with the old generation, which no
//! reader accepts any more, so a write is never followed by a stale read. If
//! the bump fails (Redis down), this process bumps the global epoch at its
//! first successful call afterwards, outdating everything, and raises the
//! floor to the lost writes' position. A generation expires some time after
//! the last entry stamped with it (see `generation_ttl`); the epoch is
//! bumped too when the storage plugin changes (`flush`): what the old one
//! answered is not the new one's.
//!
//! A cached task is served only under the same scope check the store
//! applies (a user's key is their own listing; a task entry is checked
//! against the caller's owner scope), so the cache never widens what a
//! caller may read. Every Redis failure or timeout degrades to the
//! database.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::Script;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::{TaskChange, TaskJson, TaskPage};
use crate::db::HostKey;
use crate::db::replica::{Freshness, Lsn};
use crate::redis_client::{RedisClient, RedisUnavailable};

/// Raises the WAL position at `position_key` to `position` (16 hex digits,
/// so that string order is numeric order), kept for `ttl` seconds. Shared by
/// the scripts below.
const RAISE_POSITION: &str = r"
    local function raise_position(position_key, position, ttl)
        local current = redis.call('GET', position_key)
        if not current or current < position then
            redis.call('SET', position_key, position, 'EX', ttl)
        end
    end
";

/// KEYS: each generation key followed by its position key; ARGV: their
/// TTL, the write's WAL position.
static BUMP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{RAISE_POSITION}
        for i = 1, #KEYS, 2 do
            redis.call('INCR', KEYS[i])
            redis.call('EXPIRE', KEYS[i], ARGV[1])
            raise_position(KEYS[i + 1], ARGV[2], ARGV[1])
        end
        "
    ))
});

/// KEYS: the epoch, its position key; ARGV: the position every read must
/// see from now on, how long it must (a generation's lifetime: see
/// `TaskCache::generation_lifetime`).
static FLUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{RAISE_POSITION}
        redis.call('INCR', KEYS[1])
        raise_position(KEYS[2], ARGV[1], ARGV[2])
        "
    ))
});

/// Where the WAL position of `key` (a generation or the epoch) is kept.
fn position_key(key: &str) -> String {
    format!("{key}:lsn")
}

/// A WAL position as the cache keeps it.
fn lsn_text(position: Lsn) -> String {
    format!("{position:016x}")
}

/// How far a read must see: past the larger of the positions kept (none:
/// no write recorded one while they lived); one that does not read as a
/// position, only the primary's.
fn freshness(positions: [Option<String>; 2]) -> Freshness {
    let mut newest = 0;
    for text in positions.into_iter().flatten() {
        match Lsn::from_str_radix(&text, 16) {
            Ok(position) => newest = newest.max(position),
            Err(_) => return Freshness::Latest,
        }
    }
    Freshness::Replayed(newest)
}

/// Whether an answer came from the cache (reported as `Cache-Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// No cache configured, or Redis unavailable.
    Bypass,
}

/// A listing's scope as far as caching goes.
#[derive(Debug, Clone, Copy)]
pub enum ListScope {
    Owner(Uuid),
    All,
}

#[derive(Clone)]
pub struct TaskCache {
    redis: Option<RedisClient>,
    /// `todo:cache:<database>`: the keys of one database's tasks, apart
    /// from another deployment's sharing the Redis (whose WAL positions
    /// mean nothing here).
    prefix: Arc<str>,
    ttl: Duration,
    /// Set when an invalidation could not reach Redis.
    flush_pending: Arc<AtomicBool>,
    /// The largest WAL position of the writes whose invalidation was lost.
    lost_position: Arc<AtomicU64>,
}

/// Where a missed entry goes once the database answered, the stamp it is
/// stored with, and how fresh what fills it must be.
pub struct CacheSlot {
    key: String,
    generation_key: String,
    stamp: String,
    pub freshness: Freshness,
}

impl TaskCache {
    /// The cache of the database whose host key is `key`.
    pub fn new(redis: Option<RedisClient>, ttl: Duration, key: &HostKey) -> Self {
        let database = Sha256::new().chain_update(b"todo-host task cache ").chain_update(key.as_bytes()).finalize();
        let prefix = format!("todo:cache:{}", hex::encode(&database[..8])).into();
        Self { redis, prefix, ttl, flush_pending: Arc::default(), lost_position: Arc::default() }
    }

    fn epoch_key(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// Whether there is a cache (Redis configured and the cache on).
    pub fn is_enabled(&self) -> bool {
        self.redis.is_some()
    }

    /// The cached task, if any; `slot` says where to store it on a miss.
    pub async fn task(&self, id: Uuid) -> (Option<TaskJson>, Option<CacheSlot>) {
        let prefix = &self.prefix;
        self.lookup(&format!("{prefix}:gen:task:{id}"), format!("{prefix}:task:{id}"), TaskJson::parse).await
    }

    /// The cached page of a listing, keyed by everything that shapes it.
    pub async fn page(&self, scope: ListScope, query: &impl Serialize) -> (Option<TaskPage>, Option<CacheSlot>) {
        let scope = match scope {
            ListScope::Owner(owner) => owner.to_string(),
            ListScope::All => "all".to_string(),
        };
        let digest = hex::encode(&Sha256::digest(serde_json::to_vec(query).unwrap_or_default())[..12]);
        let (prefix, key) = (&self.prefix, format!("{}:list:{scope}:{digest}", self.prefix));
        self.lookup(&format!("{prefix}:gen:scope:{scope}"), key, |json| serde_json::from_slice(&json).ok()).await
    }

    /// One round trip: the current generations and the entry; a hit only
    /// if the entry carries them as its stamp and `decode` reads it.
    async fn lookup<T>(
        &self,
        generation_key: &str,
        key: String,
        decode: impl FnOnce(Vec<u8>) -> Option<T>,
    ) -> (Option<T>, Option<CacheSlot>) {
        let Some(redis) = &self.redis else { return (None, None) };
        if !self.flush_if_pending(redis).await {
            return (None, None);
        }
        let read = redis::cmd("MGET")
            .arg(self.epoch_key())
            .arg(position_key(&self.epoch_key()))
            .arg(generation_key)
            .arg(position_key(generation_key))
            .arg(&key)
            .clone();
        type Read = (Option<String>, Option<String>, Option<String>, Option<String>, Option<Vec<u8>>);
        match redis.run::<Read>(&read).await {
            Ok((epoch, floor, generation, written_at, entry)) => {
                let stamp = format!("{} {}\n", epoch.as_deref().unwrap_or("0"), generation.as_deref().unwrap_or("0"));
                let value = entry.filter(|entry| entry.starts_with(stamp.as_bytes())).and_then(|mut entry| {
                    entry.drain(..stamp.len());
                    decode(entry)
                });
                match value {
                    Some(value) => {
                        metrics::counter!("cache_hits_total").increment(1);
                        (Some(value), None)
                    }
                    None => {
                        metrics::counter!("cache_misses_total").increment(1);
                        let freshness = freshness([floor, written_at]);
                        let generation_key = generation_key.to_string();
                        (None, Some(CacheSlot { key, generation_key, stamp, freshness }))
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cache lookup failed; reading the database");
                (None, None)
            }
        }
    }

    /// Stores what the database answered for a miss, as JSON.
    pub async fn store(&self, slot: CacheSlot, json: &[u8]) {
        let Some(redis) = &self.redis else { return };
        let mut entry = slot.stamp.into_bytes();
        entry.extend_from_slice(json);
        let mut fill = redis::pipe();
        fill.cmd("SET").arg(&slot.key).arg(entry).arg("EX").arg(self.ttl.as_secs().max(1)).ignore();
        // Not the position's: it only needs to outlive its write.
        fill.expire(&slot.generation_key, self.generation_ttl()).ignore();
        if let Err(error) = redis.pipeline::<()>(&fill).await {
            tracing::debug!(%error, "cannot fill the cache");
        }
    }

    /// Outdates every entry `changes` may have made stale: the tasks, their
    /// owners' listings (both owners of a reassignment) and the global
    /// listings; `written_at` is the primary's WAL position once they
    /// committed.
    pub async fn invalidate(&self, changes: &[TaskChange], written_at: Lsn) {
        let Some(redis) = &self.redis else { return };
        if changes.is_empty() {
            return;
        }
        // A lost invalidation is settled first, also on replicas that only
        // write (the command consumer).
        self.flush_if_pending(redis).await;
        let mut bump = BUMP.prepare_invoke();
        let mut generation = |key: String| {
            let position = position_key(&key);
            bump.key(key).key(position);
        };
        let prefix = &self.prefix;
        generation(format!("{prefix}:gen:scope:all"));
        for change in changes {
            let task = change.task();
            generation(format!("{prefix}:gen:task:{}", task.id));
            generation(format!("{prefix}:gen:scope:{}", task.owner_id));
            if let TaskChange::Updated { before, .. } = change
                && before.owner_id != task.owner_id
            {
                generation(format!("{prefix}:gen:scope:{}", before.owner_id));
            }
        }
        bump.arg(self.generation_ttl()).arg(lsn_text(written_at));
        if let Err(error) = redis.script::<()>(&bump).await {
            tracing::warn!(%error, "cannot invalidate the cache; it will be flushed once Redis answers");
            self.lost(written_at);
        }
    }

    /// Records an invalidation that did not reach Redis: the next call
    /// that reaches it flushes, and no read misses a write up to `position`.
    fn lost(&self, position: Lsn) {
        self.lost_position.fetch_max(position, Ordering::SeqCst);
        self.flush_pending.store(true, Ordering::SeqCst);
    }

    /// How long a generation lives after its last bump or the last entry
    /// stamped with it: longer than any such entry, so a generation that
    /// expired and starts again from 1 meets no entry stamped in its first
    /// life — and Redis does not keep one key per task ever written. Its
    /// WAL position lives as long: a write older than that is one any
    /// serving replica has replayed (`startup` checks that the replica's lag
    /// bound is shorter).
    pub fn generation_lifetime(&self) -> Duration {
        2 * self.ttl.max(Duration::from_secs(1))
    }

    fn generation_ttl(&self) -> i64 {
        self.generation_lifetime().as_secs() as i64
    }

    /// Outdates every entry: the storage plugin serving them changed (its
    /// migrations ran on the primary up to `position`).
    pub async fn flush(&self, position: Lsn) {
        let Some(redis) = &self.redis else { return };
        if let Err(error) = self.bump_epoch(redis, position).await {
            tracing::warn!(%error, "cannot flush the cache; it will be flushed once Redis answers");
            self.lost(position);
        }
    }

    /// Bumps the epoch if an invalidation was lost; `false` if Redis still
    /// does not answer (the cache must then not be used).
    async fn flush_if_pending(&self, redis: &RedisClient) -> bool {
        if !self.flush_pending.load(Ordering::SeqCst) {
            return true;
        }
        let position = self.lost_position.swap(0, Ordering::SeqCst);
        match self.bump_epoch(redis, position).await {
            Ok(()) => {
                self.flush_pending.store(false, Ordering::SeqCst);
                tracing::info!("cache flushed after a lost invalidation");
                true
            }
            Err(_) => {
                self.lost_position.fetch_max(position, Ordering::SeqCst);
                false
            }
        }
    }

    async fn bump_epoch(&self, redis: &RedisClient, position: Lsn) -> Result<(), RedisUnavailable> {
        let mut flush = FLUSH.prepare_invoke();
        let epoch = self.epoch_key();
        flush.key(&epoch).key(position_key(&epoch)).arg(lsn_text(position)).arg(self.generation_ttl());
        redis.script::<()>(&flush).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_must_see_the_newest_of_the_positions_kept() {
        assert_eq!(freshness([None, None]), Freshness::Replayed(0), "no write recorded one");
        let (floor, written) = (Some(lsn_text(0x20)), Some(lsn_text(0x10)));
        assert_eq!(freshness([floor.clone(), written.clone()]), Freshness::Replayed(0x20), "a lost write's floor");
        assert_eq!(freshness([written, None]), Freshness::Replayed(0x10));
        assert_eq!(freshness([floor, Some("garbage".into())]), Freshness::Latest, "only the primary can tell");
        assert!(lsn_text(0x9) < lsn_text(0x10), "string order is numeric order");
    }
}
