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
//! generation are bumped (one script, no KEYS/SCAN). With a read replica,
//! each generation also keeps the WAL position of the last write that
//! bumped it (`<generation key>:lsn`, only ever raised, set in the same
//! script as the bump): a miss tells how far a replica must have replayed
//! to answer it (`CacheSlot::freshness`), the same position any reader of
//! that generation is told, so what a replica answers and the cache then
//! keeps is never older than the write that made the generation. A reader that raced
//! the write stores what it read stamped with the old generation, which no
//! reader accepts any more, so a write is never followed by a stale read. If
//! the bump fails (Redis down), this replica bumps the global epoch at its
//! first successful call afterwards, outdating everything. A generation
//! expires some time after the last entry stamped with it (see
//! `generation_ttl`); the epoch is bumped too when the storage plugin
//! changes (`flush`): what the old one answered is not the new one's.
//!
//! A cached task is served only under the same scope check the store
//! applies (a user's key is their own listing; a task entry is checked
//! against the caller's owner scope), so the cache never widens what a
//! caller may read. Every Redis failure or timeout degrades to the
//! database.

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Script;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::{TaskChange, TaskJson, TaskPage};
use crate::db::replica::{Freshness, Lsn};
use crate::redis_client::RedisClient;

const PREFIX: &str = "todo:cache";
const EPOCH_KEY: &str = "todo:cache:epoch";

/// KEYS: generation keys; ARGV: their TTL, the write's WAL position (16
/// hex digits, so that string order is numeric order) or "".
static BUMP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        for _, key in ipairs(KEYS) do
            redis.call('INCR', key)
            redis.call('EXPIRE', key, ARGV[1])
            if ARGV[2] ~= '' then
                local lsn_key = key .. ':lsn'
                local current = redis.call('GET', lsn_key)
                if not current or current < ARGV[2] then
                    redis.call('SET', lsn_key, ARGV[2], 'EX', ARGV[1])
                end
            end
        end
        ",
    )
});

/// A WAL position as the cache keeps it.
fn lsn_text(position: Lsn) -> String {
    format!("{position:016x}")
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
    ttl: Duration,
    /// Set when an invalidation could not reach Redis.
    flush_pending: Arc<AtomicBool>,
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
    pub fn new(redis: Option<RedisClient>, ttl: Duration) -> Self {
        Self { redis, ttl, flush_pending: Arc::new(AtomicBool::new(false)) }
    }

    /// Whether there is a cache (Redis configured and the cache on).
    pub fn is_enabled(&self) -> bool {
        self.redis.is_some()
    }

    /// The cached task, if any; `slot` says where to store it on a miss.
    pub async fn task(&self, id: Uuid) -> (Option<TaskJson>, Option<CacheSlot>) {
        self.lookup(&format!("{PREFIX}:gen:task:{id}"), format!("{PREFIX}:task:{id}"), TaskJson::parse).await
    }

    /// The cached page of a listing, keyed by everything that shapes it.
    pub async fn page(&self, scope: ListScope, query: &impl Serialize) -> (Option<TaskPage>, Option<CacheSlot>) {
        let scope = match scope {
            ListScope::Owner(owner) => owner.to_string(),
            ListScope::All => "all".to_string(),
        };
        let digest = hex::encode(&Sha256::digest(serde_json::to_vec(query).unwrap_or_default())[..12]);
        let key = format!("{PREFIX}:list:{scope}:{digest}");
        self.lookup(&format!("{PREFIX}:gen:scope:{scope}"), key, |json| serde_json::from_slice(&json).ok()).await
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
        let lsn_key = format!("{generation_key}:lsn");
        let read = redis::cmd("MGET").arg(EPOCH_KEY).arg(generation_key).arg(&lsn_key).arg(&key).clone();
        match redis.run::<(Option<String>, Option<String>, Option<String>, Option<Vec<u8>>)>(&read).await {
            Ok((epoch, generation, written_at, entry)) => {
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
                        // No position: no write recorded one while the
                        // generation lived (see `generation_ttl`).
                        let freshness = match written_at {
                            None => Freshness::Replayed(0),
                            Some(text) => Lsn::from_str_radix(&text, 16).map_or(Freshness::Latest, Freshness::Replayed),
                        };
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
        fill.expire(&slot.generation_key, self.generation_ttl()).ignore();
        fill.expire(format!("{}:lsn", slot.generation_key), self.generation_ttl()).ignore();
        if let Err(error) = redis.pipeline::<()>(&fill).await {
            tracing::debug!(%error, "cannot fill the cache");
        }
    }

    /// Outdates every entry `changes` may have made stale: the tasks, their
    /// owners' listings (both owners of a reassignment) and the global
    /// listings; `written_at` is the primary's WAL position once they
    /// committed, when there is a replica to tell it to.
    pub async fn invalidate(&self, changes: &[TaskChange], written_at: Option<Lsn>) {
        let Some(redis) = &self.redis else { return };
        if changes.is_empty() {
            return;
        }
        // A lost invalidation is settled first, also on replicas that only
        // write (the command consumer).
        self.flush_if_pending(redis).await;
        let mut bump = BUMP.prepare_invoke();
        bump.key(format!("{PREFIX}:gen:scope:all"));
        for change in changes {
            let task = change.task();
            bump.key(format!("{PREFIX}:gen:task:{}", task.id));
            bump.key(format!("{PREFIX}:gen:scope:{}", task.owner_id));
            if let TaskChange::Updated { before, .. } = change
                && before.owner_id != task.owner_id
            {
                bump.key(format!("{PREFIX}:gen:scope:{}", before.owner_id));
            }
        }
        bump.arg(self.generation_ttl()).arg(written_at.map(lsn_text).unwrap_or_default());
        if let Err(error) = redis.script::<()>(&bump).await {
            tracing::warn!(%error, "cannot invalidate the cache; it will be flushed once Redis answers");
            self.flush_pending.store(true, Ordering::SeqCst);
        }
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

    /// Outdates every entry: the storage plugin serving them changed.
    pub async fn flush(&self) {
        let Some(redis) = &self.redis else { return };
        if let Err(error) = redis.run::<i64>(redis::cmd("INCR").arg(EPOCH_KEY)).await {
            tracing::warn!(%error, "cannot flush the cache; it will be flushed once Redis answers");
            self.flush_pending.store(true, Ordering::SeqCst);
        }
    }

    /// Bumps the epoch if an invalidation was lost; `false` if Redis still
    /// does not answer (the cache must then not be used).
    async fn flush_if_pending(&self, redis: &RedisClient) -> bool {
        if !self.flush_pending.load(Ordering::SeqCst) {
            return true;
        }
        match redis.run::<i64>(redis::cmd("INCR").arg(EPOCH_KEY)).await {
            Ok(_) => {
                self.flush_pending.store(false, Ordering::SeqCst);
                tracing::info!("cache flushed after a lost invalidation");
                true
            }
            Err(_) => false,
        }
    }
}
