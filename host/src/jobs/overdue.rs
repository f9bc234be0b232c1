//! The overdue job: every slot, find the tasks past their due date and not
//! done, and announce each one once (per due date) as `task.overdue`
//! through the outbox, so event handlers (the notifier) see it.
//!
//! Tasks are found through the storage plugin (the host has no task SQL);
//! the announcement ledger `overdue_notices`, the outbox records and the
//! run's row in `job_runs` commit in one fenced transaction.

use std::collections::HashSet;

use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;

use super::{SlotJob, fenced};
use crate::db::replica::Freshness;
use crate::db::{HostConnection, HostKey};
use crate::lock::Lease;
use crate::outbox::{self, OutboxRecord, OutboxWaker};
use crate::tasks::event::TaskEvent;
use crate::tasks::model::{PageRequest, SortField, SortOrder, Task, TaskFilter, TaskStatus};
use crate::tasks::{Call, TaskStore};
use crate::trace::RequestTrace;

const PAGE: u32 = 100;

pub struct OverdueJob {
    store: TaskStore,
    pool: PgPool,
    key: HostKey,
    outbox: OutboxWaker,
    /// Which replica ran it, for `job_runs`.
    holder: String,
}

impl OverdueJob {
    pub fn new(store: TaskStore, pool: PgPool, key: HostKey, outbox: OutboxWaker) -> Self {
        Self { store, pool, key, outbox, holder: format!("{}-{}", std::process::id(), Uuid::new_v4().simple()) }
    }

    async fn overdue_tasks(&self, call: &Call<'_>) -> anyhow::Result<Vec<Task>> {
        let mut overdue = Vec::new();
        for status in [TaskStatus::Todo, TaskStatus::InProgress] {
            let filter = TaskFilter { status: Some(status), due_before: Some(call.now), ..TaskFilter::default() };
            let mut cursor = None;
            loop {
                let page = PageRequest { sort: SortField::DueAt, order: SortOrder::Asc, limit: PAGE, cursor };
                let (items, next) = self.store.list(call, Freshness::Latest, None, &filter, page).await?;
                overdue.extend(items);
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(overdue)
    }
}

/// The overdue tasks whose notice this run recorded (`fresh`), in the order
/// found: one set lookup each, however many are overdue.
fn not_yet_announced<'t>(overdue: &'t [Task], fresh: &'t HashSet<Uuid>) -> impl Iterator<Item = &'t Task> {
    overdue.iter().filter(|task| fresh.contains(&task.id))
}

impl SlotJob for OverdueJob {
    const NAME: &'static str = "overdue";

    async fn run(&self, slot: i64, lease: &Lease) -> anyhow::Result<usize> {
        let now = Utc::now();
        let trace = RequestTrace::new(format!("job-overdue-{slot}"), None);
        let call = Call { trace: &trace, now };
        let overdue = self.overdue_tasks(&call).await?;

        let mut transaction = fenced(&self.pool, Self::NAME, lease.fence).await?;
        let ids: Vec<Uuid> = overdue.iter().map(|task| task.id).collect();
        let due: Vec<_> = overdue.iter().map(|task| task.due_at).collect();
        let fresh: HashSet<Uuid> = sqlx::query_scalar(
            "INSERT INTO overdue_notices (task_id, due_at) SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[]) \
             ON CONFLICT DO NOTHING RETURNING task_id",
        )
        .bind(&ids)
        .bind(&due)
        .fetch_all(&mut *transaction)
        .await?
        .into_iter()
        .collect();
        let records: Vec<OutboxRecord> =
            not_yet_announced(&overdue, &fresh).map(|task| TaskEvent::overdue(task, now).record(&trace)).collect();
        outbox::append(&mut HostConnection { connection: &mut transaction, key: &self.key }, &records).await?;
        sqlx::query("INSERT INTO job_runs (job, slot, fence, holder, items) VALUES ($1, $2, $3, $4, $5)")
            .bind(Self::NAME)
            .bind(slot)
            .bind(lease.fence)
            .bind(&self.holder)
            .bind(records.len() as i32)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        if !records.is_empty() {
            self.outbox.wake();
        }
        Ok(records.len())
    }
}
