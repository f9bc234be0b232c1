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
use std::time::Duration;

use chrono::Utc;
use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::error::TaskError;
use super::model::TaskChange;
use super::store::{Call, TaskStore, Traces};
use super::write::{MAX_BATCH_OPERATIONS, PreparedWrite};
use crate::background::Background;
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

    /// The task a single write touches.
    fn task_id(&self) -> Uuid {
        match &self.write {
            PreparedWrite::Single { operation } => operation.operation.task_id(),
            PreparedWrite::Batch { .. } => Uuid::nil(),
        }
    }
}

impl GroupCommit {
    /// At most `transactions` writes (groups) run at once, on `background`.
    pub fn new(store: TaskStore, transactions: u32, background: &Background) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE_CAPACITY);
        let slots = Arc::new(Semaphore::new(transactions.max(1) as usize));
        background.spawn_until_shutdown(dispatch(store, pending, slots, background.clone()));
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
/// A group runs to its end even when shutdown stops the dispatch.
async fn dispatch(store: TaskStore, mut queue: mpsc::Receiver<Pending>, slots: Arc<Semaphore>, background: Background) {
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
        background.spawn(run_group(store.clone(), group, slot));
    }
}

async fn run_group(store: TaskStore, mut group: Vec<Pending>, _slot: OwnedSemaphorePermit) {
    metrics::histogram!("task_write_group_size").record(group.len() as f64);
    group.sort_by_key(Pending::task_id);
    // Every write is answered on its channel: nothing is left to retry.
    let _ = together_else_each_alone(&Writes(&store), group).await;
}

/// `first` and what `more` yields within `linger` after it, up to `max` in
/// all: the members of one group. A member ready when `linger` has passed
/// still joins (the deadline is checked after `more`).
pub async fn gather<S: Stream + Unpin>(first: S::Item, more: &mut S, max: usize, linger: Duration) -> Vec<S::Item> {
    let mut members = vec![first];
    let deadline = tokio::time::Instant::now() + linger;
    while members.len() < max {
        match tokio::time::timeout_at(deadline, more.next()).await {
            Ok(Some(member)) => members.push(member),
            Ok(None) | Err(_) => break,
        }
    }
    members
}

/// Work of unrelated requests that may share one transaction.
pub trait Group {
    type Member: Send;
    type Error: Send;

    /// Runs every member in one transaction; on failure, answers the
    /// members back with the error.
    fn together(
        &self,
        members: Vec<Self::Member>,
    ) -> impl Future<Output = Result<(), (Vec<Self::Member>, Self::Error)>> + Send;

    /// Runs one member in a transaction of its own.
    fn alone(&self, member: Self::Member) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether the group's failure may be one member's own fault, so that
    /// running each alone tells the members apart.
    fn splits(&self, error: &Self::Error) -> bool;
}

/// Runs `members` together — or, when there is one, or when the group
/// fails on an error that `splits`, each alone, so that each gets the
/// answer it would have got by itself. Used by group commit and by the
/// command consumer.
pub async fn together_else_each_alone<G: Group + Sync>(group: &G, mut members: Vec<G::Member>) -> Result<(), G::Error> {
    if members.len() == 1 {
        return group.alone(members.remove(0)).await;
    }
    match group.together(members).await {
        Ok(()) => Ok(()),
        Err((members, error)) if group.splits(&error) => {
            tracing::debug!(members = members.len(), "a group failed; running its members alone");
            for member in members {
                group.alone(member).await?;
            }
            Ok(())
        }
        Err((_, error)) => Err(error),
    }
}

/// Single writes: answered on their channels, so a group never fails as a
/// whole — any failure is split into each write's own answer.
struct Writes<'a>(&'a TaskStore);

impl Group for Writes<'_> {
    type Member = Pending;
    type Error = TaskError;

    /// The group's single writes as one batch, each answered with its change.
    async fn together(&self, group: Vec<Pending>) -> Result<(), (Vec<Pending>, TaskError)> {
        let operations = group.iter().flat_map(|pending| pending.write.operations().iter().cloned()).collect();
        let traces: Vec<RequestTrace> = group.iter().map(|pending| pending.trace.clone()).collect();
        let trace = RequestTrace::new(format!("write-group-{}", Uuid::now_v7()), None);
        tracing::debug!(group = %trace.request_id, requests = ?traces.iter().map(|t| &t.request_id).collect::<Vec<_>>(), "write group");
        let call = Call { trace: &trace, now: Utc::now() };
        let changes = match self.0.apply_all(&call, operations, Traces::PerOperation(&traces), NothingMore).await {
            Ok(changes) if changes.len() == group.len() => changes,
            Ok(changes) => {
                let error = TaskError::Internal(format!(
                    "the storage plugin answered {} writes with {} changes",
                    group.len(),
                    changes.len()
                ));
                return Err((group, error));
            }
            Err(error) => return Err((group, error)),
        };
        for (pending, change) in group.into_iter().zip(changes) {
            let _ = pending.answer.send(Ok(vec![change]));
        }
        Ok(())
    }

    /// One write in a transaction of its own.
    async fn alone(&self, Pending { write, trace, answer }: Pending) -> Result<(), TaskError> {
        let call = Call { trace: &trace, now: Utc::now() };
        let changes = match write {
            PreparedWrite::Single { operation } => self.0.apply(&call, operation).await.map(|change| vec![change]),
            PreparedWrite::Batch { operations } => {
                self.0.apply_all(&call, operations, Traces::Shared(&trace), NothingMore).await
            }
        };
        let _ = answer.send(changes);
        Ok(())
    }

    fn splits(&self, _: &TaskError) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(ready: &[u32]) -> (mpsc::Sender<u32>, mpsc::Receiver<u32>) {
        let (sender, receiver) = mpsc::channel(16);
        for item in ready {
            sender.try_send(*item).unwrap();
        }
        (sender, receiver)
    }

    #[tokio::test]
    async fn a_group_takes_what_is_ready_up_to_its_size() {
        let (_sender, mut receiver) = channel(&[2, 3, 4, 5]);
        let mut more = futures::stream::poll_fn(|context| receiver.poll_recv(context));
        assert_eq!(gather(1, &mut more, 3, Duration::ZERO).await, [1, 2, 3]);
        assert_eq!(gather(9, &mut more, 3, Duration::ZERO).await, [9, 4, 5], "the rest is left for the next");
    }

    #[tokio::test]
    async fn a_group_waits_the_linger_time_for_more_and_no_longer() {
        let (sender, mut receiver) = channel(&[]);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            sender.send(2).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            sender.send(3).await.unwrap();
        });
        let mut more = futures::stream::poll_fn(|context| receiver.poll_recv(context));
        let started = std::time::Instant::now();
        assert_eq!(gather(1, &mut more, 10, Duration::from_millis(100)).await, [1, 2]);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2), "{took:?}");
    }
}
