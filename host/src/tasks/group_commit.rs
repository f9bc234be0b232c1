//! Group commit: single writes that arrive while the database is busy share
//! a transaction.
//!
//! Every transaction costs the same fixed work whatever it holds — a plugin
//! instance, BEGIN, the outbox INSERT, COMMIT and its WAL flush — so under
//! load that work, not the rows, bounds write throughput. At most
//! `WRITE_TRANSACTIONS` writes run at once; single writes that arrive
//! meanwhile queue, and the next free slot takes all of them (up to
//! `MAX_BATCH_OPERATIONS`) as one `apply-batch` call in one transaction. An
//! idle server runs each write alone; a busy one commits many per flush.
//!
//! A group is all or nothing like any batch, but its writes are unrelated
//! requests: when the group fails, each of its writes runs again alone, so
//! every request gets the answer it would have got by itself. A group's
//! writes are ordered by task id (one task's writes keep their order), so
//! groups lock rows in one order and cannot deadlock one another.
//! `POST /tasks/batch` is a transaction of its own, never grouped.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::error::TaskError;
use super::model::TaskChange;
use super::service::{MAX_BATCH_OPERATIONS, PreparedWrite};
use super::store::{Call, ScopedOperation, StoreOperation, TaskStore, Traces};
use crate::plugins::NothingMore;
use crate::trace::RequestTrace;

/// Writes waiting for a transaction beyond this make their requests wait
/// to be queued.
const QUEUE_CAPACITY: usize = 1024;

/// Runs writes, grouping the single ones that arrive while all
/// transaction slots are busy.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

/// A write waiting for its transaction, and who waits for its changes.
struct Pending {
    write: PreparedWrite,
    trace: RequestTrace,
    answer: oneshot::Sender<Result<Vec<TaskChange>, TaskError>>,
}

impl Pending {
    fn groupable(&self) -> bool {
        matches!(self.write, PreparedWrite::Single { .. })
    }

    /// The task the write touches (a new task's id for a creation).
    fn task_id(&self) -> Uuid {
        match self.write.operations() {
            [ScopedOperation { operation, .. }] => match operation {
                StoreOperation::Create(task) => task.id,
                StoreOperation::Update { id, .. } | StoreOperation::Delete { id, .. } => *id,
            },
            _ => Uuid::nil(),
        }
    }
}

impl GroupCommit {
    /// At most `transactions` writes (groups) run at once.
    pub fn new(store: TaskStore, transactions: u32) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE_CAPACITY);
        let slots = Arc::new(Semaphore::new(transactions.max(1) as usize));
        tokio::spawn(dispatch(store, pending, slots));
        Self { queue }
    }

    /// The changes `write` made, committed — alone or in a group.
    pub async fn run(&self, trace: &RequestTrace, write: PreparedWrite) -> Result<Vec<TaskChange>, TaskError> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending { write, trace: trace.clone(), answer };
        let dropped = || TaskError::Internal("the write was dropped before it ran".into());
        self.queue.send(pending).await.map_err(|_| dropped())?;
        answered.await.map_err(|_| dropped())?
    }
}

/// Takes what queued while every slot was busy, as one group per free slot.
async fn dispatch(store: TaskStore, mut queue: mpsc::Receiver<Pending>, slots: Arc<Semaphore>) {
    let mut held = None;
    loop {
        let first = match held.take() {
            Some(first) => first,
            None => match queue.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut group = vec![first];
        while group[0].groupable() && group.len() < MAX_BATCH_OPERATIONS {
            match queue.try_recv() {
                Ok(next) if next.groupable() => group.push(next),
                Ok(next) => {
                    held = Some(next);
                    break;
                }
                Err(_) => break,
            }
        }
        tokio::spawn(run_group(store.clone(), group, slot));
    }
}

async fn run_group(store: TaskStore, mut group: Vec<Pending>, _slot: OwnedSemaphorePermit) {
    metrics::histogram!("task_write_group_size").record(group.len() as f64);
    if group.len() > 1 {
        group.sort_by_key(Pending::task_id);
        match together(&store, &group).await {
            Ok(changes) => {
                for (pending, change) in group.into_iter().zip(changes) {
                    let _ = pending.answer.send(Ok(vec![change]));
                }
                return;
            }
            Err(error) => {
                tracing::debug!(%error, writes = group.len(), "a write group failed; running its writes alone")
            }
        }
    }
    for Pending { write, trace, answer } in group {
        let _ = answer.send(alone(&store, &trace, write).await);
    }
}

/// The group's single writes as one batch: one change per write, in order.
async fn together(store: &TaskStore, group: &[Pending]) -> Result<Vec<TaskChange>, TaskError> {
    let operations: Vec<ScopedOperation> =
        group.iter().flat_map(|pending| pending.write.operations().iter().cloned()).collect();
    let traces: Vec<RequestTrace> = group.iter().map(|pending| pending.trace.clone()).collect();
    let trace = RequestTrace::new(format!("write-group-{}", Uuid::now_v7()), None);
    tracing::debug!(group = %trace.request_id, requests = ?traces.iter().map(|t| &t.request_id).collect::<Vec<_>>(), "write group");
    let call = Call { trace: &trace, now: Utc::now() };
    let changes = store.apply_all(&call, operations, Traces::PerOperation(&traces), NothingMore).await?;
    if changes.len() != group.len() {
        return Err(TaskError::Internal(format!(
            "the storage plugin answered {} writes with {} changes",
            group.len(),
            changes.len()
        )));
    }
    Ok(changes)
}

/// One write in a transaction of its own.
async fn alone(store: &TaskStore, trace: &RequestTrace, write: PreparedWrite) -> Result<Vec<TaskChange>, TaskError> {
    let call = Call { trace, now: Utc::now() };
    match write {
        PreparedWrite::Single { operation: ScopedOperation { scope, operation } } => {
            let change = match operation {
                StoreOperation::Create(creation) => store.create(&call, creation).await?,
                StoreOperation::Update { id, patch, expected_version } => {
                    store.update(&call, scope, id, patch, expected_version).await?
                }
                StoreOperation::Delete { id, expected_version } => {
                    store.delete(&call, scope, id, expected_version).await?
                }
            };
            Ok(vec![change])
        }
        PreparedWrite::Batch { operations } => {
            store.apply_all(&call, operations, Traces::Shared(trace), NothingMore).await
        }
    }
}
