//! The transactional outbox: records bound for Kafka, written in the
//! transaction of the change they announce; the relay (`events::relay`)
//! publishes them. Generic: it knows records, not what they announce. The
//! host appends through `host_append_outbox` with its key, so that a plugin
//! sharing the transaction cannot write here itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::types::Json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::HostConnection;
use crate::redis_client::RedisClient;

/// One record to publish. `topic` is the logical name (`task-events`,
/// `notifications`); the relay maps it to the broker's topic.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub topic: String,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// Writes `records` on `host`'s connection (inside the caller's
/// transaction), in order, in one statement.
pub async fn append(host: &mut HostConnection<'_>, records: &[OutboxRecord]) -> Result<(), sqlx::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let topics: Vec<&str> = records.iter().map(|r| r.topic.as_str()).collect();
    let keys: Vec<Option<&str>> = records.iter().map(|r| r.key.as_deref()).collect();
    let payloads: Vec<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
    let headers: Vec<Json<&BTreeMap<String, String>>> = records.iter().map(|r| Json(&r.headers)).collect();
    sqlx::query("SELECT public.host_append_outbox($1, $2, $3, $4, $5)")
        .bind(host.key.as_bytes())
        .bind(topics)
        .bind(keys)
        .bind(payloads)
        .bind(headers)
        .execute(&mut *host.connection)
        .await?;
    Ok(())
}

/// Wakes this process's relay once a transaction that appended to the
/// outbox has committed (and, in an API process, the workers' relays).
///
/// In-process on purpose: a NOTIFY in the writing transaction would
/// serialise every write's commit (PostgreSQL holds a database-wide lock
/// from NOTIFY's pre-commit until the commit is flushed), so concurrent
/// writes could no longer share WAL flushes. Records committed by another
/// replica are published by that replica's relay, or by the poll; an API
/// process has no relay and wakes the workers' after the commit, over Redis.
#[derive(Clone, Default)]
pub struct OutboxWaker(Arc<Notify>);

impl OutboxWaker {
    /// Call after the commit. Wakes a relay already waiting, or the next
    /// one to wait (a wake during a drain makes the relay drain again).
    pub fn wake(&self) {
        self.0.notify_one();
    }

    pub async fn woken(&self) {
        self.0.notified().await;
    }

    /// For a process without a relay (`TODO_ROLE=api`): tells the workers'
    /// relays on `channel` that records committed here, once per burst —
    /// commits during a PUBLISH wake it once more, after. Until `shutdown`.
    pub async fn announce(self, redis: RedisClient, channel: String, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.woken() => {}
            }
            if let Err(error) = redis.run::<i64>(redis::cmd("PUBLISH").arg(&channel).arg("")).await {
                tracing::debug!(%error, "cannot wake the workers' relays; their poll (OUTBOX_POLL_MS) publishes the records");
            }
        }
    }

    /// Wakes this process's relay whenever another process announces
    /// commits on `channel`, until `shutdown`. A wake lost with the Redis
    /// connection is made up for by the relay's poll.
    pub async fn follow(self, redis: RedisClient, channel: String, shutdown: CancellationToken) {
        let wake = |_| {
            self.wake();
            std::future::ready(())
        };
        redis.follow_channel(&channel, shutdown, wake).await;
    }
}
