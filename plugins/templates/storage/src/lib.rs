//! A template storage strategy: the shape of a `task-store`, to fill in.
//!
//! The host reads and writes tasks only through these six functions, so a
//! strategy implements all of them. Each one not yet written below logs and
//! answers `internal` (a 500 for the request); `apply_batch` is complete,
//! written in terms of the other three writes. plugins/postgres-store (on
//! `sql`) and plugins/kv-store (on `kv`) are complete strategies to read.
//!
//! Rules every function keeps (wit/task-store.wit):
//! - `owner_scope: Some(user)`: only that user's tasks exist; any other task
//!   is answered exactly like a missing one, `not-found`.
//! - One call is one transaction the host commits when the call answers
//!   `ok` and rolls back otherwise: never BEGIN or COMMIT yourself.
//! - No clock: stamp `created_at`/`updated_at` with `ctx.now`.
//! - `version` is 1 on creation and +1 on every update; a given
//!   `expected_version` that differs answers `version-mismatch(current)`.

wit_bindgen::generate!({
    world: "storage",
    // The WIT package of the host, relative to this crate's Cargo.toml.
    path: "../../wit",
});

use exports::todo::plugin::task_store::{
    BatchAction, BatchOp, BatchResult, DeleteOp, Guest, PageRequest, StoreError, TaskFilter, TaskPage, TaskUpdate,
    UpdateOp,
};
use todo::plugin::log::{self, Level};
use todo::plugin::types::{CallContext, NewTask, Task};

struct Store;

impl Guest for Store {
    /// Stores `task` (validated, its id chosen by the host) with version 1.
    fn create(_ctx: CallContext, _task: NewTask) -> Result<Task, StoreError> {
        Err(not_written("create"))
    }

    fn get(_ctx: CallContext, _owner_scope: Option<String>, _id: String) -> Result<Task, StoreError> {
        Err(not_written("get"))
    }

    /// One page of the tasks matching `filter` (and the scope), sorted by
    /// `page.sort` then by id, at most `page.limit`. `next_cursor` is yours
    /// to encode: the host hands it back untouched for the next page.
    fn list(
        _ctx: CallContext,
        _owner_scope: Option<String>,
        _filter: TaskFilter,
        _page: PageRequest,
    ) -> Result<TaskPage, StoreError> {
        Err(not_written("list"))
    }

    /// Applies `op.patch` and answers the task before and after (the host
    /// derives the `task.updated` event from the pair).
    fn update(_ctx: CallContext, _owner_scope: Option<String>, _op: UpdateOp) -> Result<TaskUpdate, StoreError> {
        Err(not_written("update"))
    }

    /// Answers the task as it was before deletion.
    fn delete(_ctx: CallContext, _owner_scope: Option<String>, _op: DeleteOp) -> Result<Task, StoreError> {
        Err(not_written("delete"))
    }

    /// One result per operation, in order. Correct as long as a failing
    /// `create`/`update`/`delete` changes nothing; the host rolls the whole
    /// call back when the batch is all-or-nothing.
    fn apply_batch(ctx: CallContext, ops: Vec<BatchOp>) -> Result<Vec<Result<BatchResult, StoreError>>, StoreError> {
        let results = ops
            .into_iter()
            .map(|BatchOp { owner_scope, action }| match action {
                BatchAction::Create(task) => Self::create(ctx.clone(), task).map(BatchResult::Created),
                BatchAction::Update(op) => Self::update(ctx.clone(), owner_scope, op).map(BatchResult::Updated),
                BatchAction::Delete(op) => Self::delete(ctx.clone(), owner_scope, op).map(BatchResult::Deleted),
            })
            .collect();
        Ok(results)
    }
}

/// Logs and answers the failure of a function not written yet. Log what
/// goes wrong before answering it: the user sees only a 500.
fn not_written(function: &str) -> StoreError {
    let message = format!("`{function}` is not written yet");
    log::log(Level::Error, function, &message);
    StoreError::Internal(message)
}

export!(Store);
