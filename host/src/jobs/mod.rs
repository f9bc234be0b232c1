//! Scheduled jobs that must run once per time slot across every replica.
//!
//! Each replica polls several times per lock TTL; when the current slot
//! (wall-clock time / interval) has not been completed, it tries to take
//! the job's distributed lock and runs it, renewing the lease meanwhile.
//! The job's database work is fenced with the lease's token (`fenced`),
//! and the slot is marked done in Redis afterwards. If the holder dies
//! mid-run, its lease expires within one TTL and the next poll elsewhere
//! takes over the same slot.
//!
//! - `overdue`: announces tasks past their due date (`task.overdue`);
//! - `retention`: prunes the ledgers and command results.

pub mod overdue;
pub mod retention;

use std::time::Duration;

use chrono::Utc;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use crate::lock::{DistributedLock, Lease};
use crate::redis_client::RedisClient;

/// One run of a job for one slot; answers how many items it handled.
pub trait SlotJob: Send + Sync {
    const NAME: &'static str;

    fn run(&self, slot: i64, lease: &Lease) -> impl Future<Output = anyhow::Result<usize>> + Send;
}

pub struct Scheduler<J> {
    job: J,
    lock: DistributedLock,
    redis: RedisClient,
    interval: Duration,
}

impl<J: SlotJob> Scheduler<J> {
    pub fn new(job: J, redis: RedisClient, interval: Duration, lock_ttl: Duration) -> Self {
        let lock = DistributedLock::new(redis.clone(), &format!("job:{}", J::NAME), lock_ttl);
        Self { job, lock, redis, interval: interval.max(Duration::from_secs(1)) }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let poll = (self.interval.min(self.lock.ttl()) / 4).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(poll) => {}
            }
            let slot = Utc::now().timestamp() / self.interval.as_secs() as i64;
            if let Err(error) = self.run_slot(slot).await {
                tracing::warn!(job = J::NAME, slot, error = %format!("{error:#}"), "scheduled job failed");
            }
        }
    }

    /// Runs `slot` if nobody completed it and the lock is free.
    async fn run_slot(&self, slot: i64) -> anyhow::Result<()> {
        if self.completed(slot).await? {
            return Ok(());
        }
        let Some(lease) = self.lock.try_acquire().await? else { return Ok(()) };
        // It may have been completed between the check and the lock.
        let outcome =
            if self.completed(slot).await? { Ok(None) } else { self.run_leased(slot, &lease).await.map(Some) };
        if let Err(error) = self.lock.release(&lease).await {
            tracing::debug!(job = J::NAME, %error, "cannot release the job lock; it expires by itself");
        }
        match outcome {
            Ok(Some(items)) => tracing::info!(job = J::NAME, slot, fence = lease.fence, items, "scheduled job ran"),
            Ok(None) => {}
            Err(error) => {
                // Redis lost its counter (restarted without persistence, or
                // failed over): catch up with the database, or every run
                // would be refused until the counter got there by itself.
                if let Some(stale) = error.downcast_ref::<StaleFence>() {
                    self.lock.raise_fence(stale.recorded).await?;
                }
                return Err(error);
            }
        }
        Ok(())
    }

    async fn run_leased(&self, slot: i64, lease: &Lease) -> anyhow::Result<usize> {
        let renewing = async {
            loop {
                tokio::time::sleep(self.lock.ttl() / 3).await;
                if !matches!(self.lock.renew(lease).await, Ok(true)) {
                    tracing::warn!(job = J::NAME, slot, "the job's lease was lost; its writes will be refused");
                    std::future::pending::<()>().await;
                }
            }
        };
        let items = tokio::select! {
            items = self.job.run(slot, lease) => items?,
            _ = renewing => unreachable!("renewing never ends"),
        };
        self.redis.run::<()>(redis::cmd("SET").arg(self.done_key()).arg(slot)).await?;
        Ok(items)
    }

    async fn completed(&self, slot: i64) -> anyhow::Result<bool> {
        let done: Option<i64> = self.redis.run(redis::cmd("GET").arg(self.done_key())).await?;
        Ok(done.is_some_and(|done| done >= slot))
    }

    fn done_key(&self) -> String {
        format!("todo:job:{}:done", J::NAME)
    }
}

/// The database has seen a newer fencing token than this run's.
#[derive(Debug, thiserror::Error)]
#[error("fencing token {fence} of job `{job}` is stale (the database has seen {recorded}): another replica took over")]
pub struct StaleFence {
    job: String,
    fence: i64,
    recorded: i64,
}

/// Opens a transaction for `job` holding `fence`; fails with `StaleFence`
/// when a newer fence was recorded (another replica took the job over).
/// The fence row stays locked until the transaction ends, so the check
/// holds until COMMIT.
pub async fn fenced(pool: &PgPool, job: &str, fence: i64) -> anyhow::Result<Transaction<'static, Postgres>> {
    let mut transaction = pool.begin().await?;
    let accepted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO job_fences (job, fence) VALUES ($1, $2) \
         ON CONFLICT (job) DO UPDATE SET fence = EXCLUDED.fence WHERE job_fences.fence <= EXCLUDED.fence \
         RETURNING fence",
    )
    .bind(job)
    .bind(fence)
    .fetch_optional(&mut *transaction)
    .await?;
    if accepted.is_none() {
        let recorded: i64 = sqlx::query_scalar("SELECT fence FROM job_fences WHERE job = $1")
            .bind(job)
            .fetch_one(&mut *transaction)
            .await?;
        return Err(StaleFence { job: job.to_string(), fence, recorded }.into());
    }
    Ok(transaction)
}
