//! `apply-batch`: the operations in order, one result each.
//!
//! A run of consecutive creations is inserted by one multi-row statement
//! (chunked to the protocol's parameter limit) instead of one per task: the
//! async command path batches writes, and a round trip per task would
//! dominate its cost.

use crate::exports::todo::plugin::task_store::{BatchAction, BatchOp, BatchResult, StoreError};
use crate::row::{Failure, MAX_INSERT_ROWS};
use crate::todo::plugin::types::{CallContext, NewTask};

type Results = Vec<Result<BatchResult, StoreError>>;

pub fn apply(ctx: &CallContext, ops: Vec<BatchOp>) -> Result<Results, StoreError> {
    let mut results = Vec::with_capacity(ops.len());
    let mut ops = ops.into_iter().peekable();
    while let Some(op) = ops.next() {
        match op.action {
            BatchAction::Create(first) => {
                let mut run = vec![first];
                while let Some(new) = ops.next_if_map(creation) {
                    run.push(new);
                }
                create_run(ctx, run, &mut results)?;
            }
            BatchAction::Update(update_op) => {
                settle(&mut results, crate::update(ctx, op.owner_scope, update_op).map(BatchResult::Updated))?;
            }
            BatchAction::Delete(delete_op) => {
                settle(&mut results, crate::delete(op.owner_scope, delete_op).map(BatchResult::Deleted))?;
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

/// Inserts a run of creations. An insert only fails by its statement, which
/// aborts the transaction, so any failure fails the batch.
fn create_run(ctx: &CallContext, run: Vec<NewTask>, results: &mut Results) -> Result<(), StoreError> {
    let tasks: Vec<_> = run.into_iter().map(|new| crate::stamp(ctx, new)).collect();
    for chunk in tasks.chunks(MAX_INSERT_ROWS) {
        let first = results.len();
        crate::insert(chunk).map_err(|failure| failure.error.in_operations(first..first + chunk.len()))?;
        results.extend(chunk.iter().cloned().map(|task| Ok(BatchResult::Created(task))));
    }
    Ok(())
}

/// Records the outcome of one update or delete.
fn settle(results: &mut Results, outcome: Result<BatchResult, Failure>) -> Result<(), StoreError> {
    match outcome {
        Ok(result) => results.push(Ok(result)),
        // A failed statement aborts the whole PostgreSQL transaction:
        // nothing after it could run, so the batch as a whole fails.
        Err(failure) if failure.aborted_transaction => {
            let index = results.len();
            return Err(failure.error.in_operations(index..index + 1));
        }
        Err(failure) => results.push(Err(failure.error)),
    }
    Ok(())
}
