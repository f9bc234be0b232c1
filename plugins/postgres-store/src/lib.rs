//! postgres-store: the default storage strategy.
//!
//! Tasks live in the `tasks` table (see `migrations/`). Every statement goes
//! through the host's `sql` import and so runs inside the transaction the host
//! opened for this call; updates lock their row with `SELECT … FOR UPDATE`
//! before reading it, so concurrent writers of different fields of one task
//! never lose each other's changes.

mod list;
mod row;

use storage_kit::batch::{self, StoreWrites};
use storage_kit::change::{check_version, patched, stamp};
use storage_kit::exports::todo::plugin::task_store::{
    BatchOp, BatchResult, DeleteOp, Guest, PageRequest, StoreError, TaskFilter, TaskPage, TaskUpdate, UpdateOp,
};
use storage_kit::failure::Failure;
use storage_kit::todo::plugin::sql::{self, Value};
use storage_kit::todo::plugin::types::{CallContext, NewTask, Task};

use row::{MAX_INSERT_ROWS, TASK_COLUMNS};

struct PostgresStore;

impl Guest for PostgresStore {
    fn create(ctx: CallContext, task: NewTask) -> Result<Task, StoreError> {
        create(&ctx, task).map_err(Failure::into_error)
    }

    fn get(_ctx: CallContext, owner_scope: Option<String>, id: String) -> Result<Task, StoreError> {
        get(owner_scope, id).map_err(Failure::into_error)
    }

    fn list(
        _ctx: CallContext,
        owner_scope: Option<String>,
        filter: TaskFilter,
        page: PageRequest,
    ) -> Result<TaskPage, StoreError> {
        list::list(owner_scope, filter, page).map_err(Failure::into_error)
    }

    fn update(ctx: CallContext, owner_scope: Option<String>, op: UpdateOp) -> Result<TaskUpdate, StoreError> {
        update(&ctx, owner_scope, op).map_err(Failure::into_error)
    }

    fn delete(_ctx: CallContext, owner_scope: Option<String>, op: DeleteOp) -> Result<Task, StoreError> {
        delete(owner_scope, op).map_err(Failure::into_error)
    }

    fn apply_batch(ctx: CallContext, ops: Vec<BatchOp>) -> Result<Vec<Result<BatchResult, StoreError>>, StoreError> {
        batch::apply::<PostgresStore>(&ctx, ops)
    }
}

impl StoreWrites for PostgresStore {
    const MAX_CREATE: usize = MAX_INSERT_ROWS;

    fn create(tasks: &[Task]) -> Result<(), Failure> {
        insert(tasks)
    }

    fn update(ctx: &CallContext, owner_scope: Option<String>, op: UpdateOp) -> Result<TaskUpdate, Failure> {
        update(ctx, owner_scope, op)
    }

    fn delete(owner_scope: Option<String>, op: DeleteOp) -> Result<Task, Failure> {
        delete(owner_scope, op)
    }
}

fn create(ctx: &CallContext, new: NewTask) -> Result<Task, Failure> {
    let task = stamp(ctx, new);
    insert(std::slice::from_ref(&task))?;
    Ok(task)
}

/// Inserts `tasks` with one statement, so at most `row::MAX_INSERT_ROWS`.
fn insert(tasks: &[Task]) -> Result<(), Failure> {
    let params: Vec<Value> = tasks.iter().flat_map(row::task_params).collect();
    sql::execute(&row::insert_statement(tasks.len()), &params)?;
    Ok(())
}

fn get(owner_scope: Option<String>, id: String) -> Result<Task, Failure> {
    let statement = scoped(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"), &owner_scope, "");
    let rows = sql::query(&statement, &id_params(id, owner_scope))?;
    row::single_task(rows)
}

fn update(ctx: &CallContext, owner_scope: Option<String>, op: UpdateOp) -> Result<TaskUpdate, Failure> {
    let statement = scoped(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"), &owner_scope, " FOR UPDATE");
    let before = row::single_task(sql::query(&statement, &id_params(op.id, owner_scope))?)?;
    check_version(op.expected_version, before.version)?;
    let task = patched(&before, op.patch, ctx.now);
    sql::execute(
        "UPDATE tasks SET owner_id = $2, title = $3, description = $4, status = $5, \
         priority = $6, due_at = $7, created_at = $8, updated_at = $9, version = $10 \
         WHERE id = $1",
        &row::task_params(&task),
    )?;
    Ok(TaskUpdate { before, after: task })
}

fn delete(owner_scope: Option<String>, op: DeleteOp) -> Result<Task, Failure> {
    let scope_clause = if owner_scope.is_some() { " AND owner_id = $3" } else { "" };
    let statement = format!(
        "DELETE FROM tasks WHERE id = $1 AND ($2::int8 IS NULL OR version = $2){scope_clause} \
         RETURNING {TASK_COLUMNS}"
    );
    let mut params = vec![Value::Uuid(Some(op.id.clone())), Value::Int(op.expected_version)];
    if let Some(owner) = owner_scope.clone() {
        params.push(Value::Uuid(Some(owner)));
    }
    match row::single_task(sql::query(&statement, &params)?) {
        // Nothing deleted: tell a missing task from a stale version.
        Err(failure) if matches!(failure.error, StoreError::NotFound) && op.expected_version.is_some() => {
            let current = get(owner_scope, op.id)?;
            Err(Failure::rejected(StoreError::VersionMismatch(current.version)))
        }
        outcome => outcome,
    }
}

/// Appends the owner restriction (`AND owner_id = $2`) when the caller is
/// scoped, then `suffix`.
fn scoped(statement: &str, owner_scope: &Option<String>, suffix: &str) -> String {
    match owner_scope {
        Some(_) => format!("{statement} AND owner_id = $2{suffix}"),
        None => format!("{statement}{suffix}"),
    }
}

fn id_params(id: String, owner_scope: Option<String>) -> Vec<Value> {
    let mut params = vec![Value::Uuid(Some(id))];
    params.extend(owner_scope.map(|owner| Value::Uuid(Some(owner))));
    params
}

storage_kit::export!(PostgresStore with_types_in storage_kit);
