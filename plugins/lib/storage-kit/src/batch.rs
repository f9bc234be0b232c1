//! `apply-batch`: the operations in order, one result each, over a store's
//! own writes (`StoreWrites`).
//!
//! Every operation sees the writes of those before it (they run in the
//! call's one transaction). A run of consecutive creations is stored
//! together, `StoreWrites::MAX_CREATE` at a time, instead of one by one: the
//! async command path and group commit batch many creations, and a round
//! trip per task would dominate their cost.
//!
//! A refused operation (not found, version mismatch) has written nothing and
//! the batch goes on; any other failure fails the batch as a whole (see
//! `Failure`), naming the operations it came from. The host decides whether
//! the others are kept: today it turns any failed operation into an error
//! of the whole call (all or nothing), and rolls the call back.

use crate::change::stamp;
use crate::exports::todo::plugin::task_store::{
    BatchAction, BatchOp, BatchResult, DeleteOp, StoreError, TaskUpdate, UpdateOp,
};
use crate::failure::Failure;
use crate::todo::plugin::types::{CallContext, NewTask, Task};

/// A store's writes, as `apply` combines them.
pub trait StoreWrites {
    /// The most creations `create` takes at once.
    const MAX_CREATE: usize = usize::MAX;

    /// Stores new (stamped) tasks, all or none.
    fn create(tasks: &[Task]) -> Result<(), Failure>;

    fn update(ctx: &CallContext, owner_scope: Option<String>, op: UpdateOp) -> Result<TaskUpdate, Failure>;

    /// Answers the task as it was before deletion.
    fn delete(owner_scope: Option<String>, op: DeleteOp) -> Result<Task, Failure>;
}

pub type Results = Vec<Result<BatchResult, StoreError>>;

pub fn apply<S: StoreWrites>(ctx: &CallContext, ops: Vec<BatchOp>) -> Result<Results, StoreError> {
    let mut results = Vec::with_capacity(ops.len());
    let mut ops = ops.into_iter().peekable();
    while let Some(op) = ops.next() {
        match op.action {
            BatchAction::Create(first) => {
                let mut run = vec![first];
                while let Some(new) = ops.next_if_map(creation) {
                    run.push(new);
                }
                create_run::<S>(ctx, run, &mut results)?;
            }
            BatchAction::Update(update_op) => {
                settle(&mut results, S::update(ctx, op.owner_scope, update_op).map(BatchResult::Updated))?;
            }
            BatchAction::Delete(delete_op) => {
                settle(&mut results, S::delete(op.owner_scope, delete_op).map(BatchResult::Deleted))?;
            }
        }
    }
    Ok(results)
}

/// The task to create, when `op` is a creation; `op` itself otherwise.
fn creation(op: BatchOp) -> Result<NewTask, BatchOp> {
    match op.action {
        BatchAction::Create(new) => Ok(new),
        action => Err(BatchOp { action, ..op }),
    }
}

/// Stores a run of creations. A creation has no refusal of its own (the
/// host validated it), so any failure fails the batch, naming the
/// creations stored together.
fn create_run<S: StoreWrites>(ctx: &CallContext, run: Vec<NewTask>, results: &mut Results) -> Result<(), StoreError> {
    let tasks: Vec<Task> = run.into_iter().map(|new| stamp(ctx, new)).collect();
    for chunk in tasks.chunks(S::MAX_CREATE) {
        let first = results.len();
        S::create(chunk).map_err(|failure| failure.error.in_operations(first..first + chunk.len()))?;
        results.extend(chunk.iter().cloned().map(|task| Ok(BatchResult::Created(task))));
    }
    Ok(())
}

/// Records the outcome of one update or delete.
fn settle(results: &mut Results, outcome: Result<BatchResult, Failure>) -> Result<(), StoreError> {
    match outcome {
        Ok(result) => results.push(Ok(result)),
        Err(failure) if failure.fails_batch => {
            let index = results.len();
            return Err(failure.error.in_operations(index..index + 1));
        }
        Err(failure) => results.push(Err(failure.error)),
    }
    Ok(())
}
