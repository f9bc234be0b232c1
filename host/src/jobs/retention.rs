//! The retention job: forgets bookkeeping rows nobody needs any more, so
//! the ledgers do not grow without bound. Runs once per slot across the
//! cluster like every scheduled job; each table is pruned in its own
//! statement (a failure leaves the others pruned).
//!
//! - `command_results` after `COMMAND_RESULT_RETENTION_SECS` (GET
//!   /commands/{id} answers 404 afterwards, as documented);
//! - `processed_events` after `LEDGER_RETENTION_SECS` (Kafka must not
//!   redeliver older events: keep it above the topic's retention);
//! - `job_runs` and `overdue_notices` after `LEDGER_RETENTION_SECS`;
//! - `dead_letters` replayed more than `LEDGER_RETENTION_SECS` ago (pending
//!   ones stay until an admin replays them).

use std::time::Duration;

use sqlx::PgPool;

use super::{SlotJob, fenced};
use crate::lock::Lease;

pub struct RetentionJob {
    pool: PgPool,
    command_results: Duration,
    ledgers: Duration,
}

impl RetentionJob {
    pub fn new(pool: PgPool, command_results: Duration, ledgers: Duration) -> Self {
        Self { pool, command_results, ledgers }
    }
}

/// Each table with the column that ages its rows and how long they live.
const TABLES: [(&str, &str); 5] = [
    ("command_results", "finished_at"),
    ("processed_events", "processed_at"),
    ("job_runs", "finished_at"),
    ("overdue_notices", "notified_at"),
    // A pending dead letter's `replayed_at` is NULL: never older than anything.
    ("dead_letters", "replayed_at"),
];

impl SlotJob for RetentionJob {
    const NAME: &'static str = "retention";

    async fn run(&self, _slot: i64, lease: &Lease) -> anyhow::Result<usize> {
        let mut pruned = 0;
        for (table, column) in TABLES {
            let keep = if table == "command_results" { self.command_results } else { self.ledgers };
            let mut transaction = fenced(&self.pool, Self::NAME, lease.fence).await?;
            // Table and column names are constants of this module.
            let deleted =
                sqlx::query(&format!("DELETE FROM {table} WHERE {column} < now() - make_interval(secs => $1)"))
                    .bind(keep.as_secs_f64())
                    .execute(&mut *transaction)
                    .await?
                    .rows_affected();
            transaction.commit().await?;
            pruned += deleted as usize;
        }
        Ok(pruned)
    }
}
