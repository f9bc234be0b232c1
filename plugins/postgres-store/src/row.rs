//! Mapping between `tasks` rows, WIT values and store errors.

use crate::exports::todo::plugin::task_store::StoreError;
use crate::todo::plugin::sql::{Rows, SqlError, Value};
use crate::todo::plugin::types::{Priority, Task, TaskStatus};

/// The column list every query selects, in the order `task_from_row` reads.
pub const TASK_COLUMNS: &str =
    "id, owner_id, title, description, status, priority, due_at, created_at, updated_at, version";

/// Why an operation failed, and whether the failure aborted the
/// PostgreSQL transaction (after which no further statement can run).
pub struct Failure {
    pub error: StoreError,
    pub aborted_transaction: bool,
}

impl Failure {
    /// A failure the plugin decided on without a failing statement.
    pub fn rejected(error: StoreError) -> Self {
        Self { error, aborted_transaction: false }
    }

    pub fn into_error(self) -> StoreError {
        self.error
    }
}

impl From<SqlError> for Failure {
    fn from(error: SqlError) -> Self {
        let message = error.message;
        let error = match error.code.as_deref() {
            Some("23503") => StoreError::Invalid("the new owner does not exist".into()),
            Some(code) if code.starts_with("22") || code == "23514" => {
                StoreError::Invalid(format!("the store refused a value: {message}"))
            }
            // No SQLSTATE: the host could not reach the database at all.
            None => StoreError::Unavailable(message),
            // Timeouts, lock timeouts, serialization failures, deadlocks,
            // connection loss, server shutdown: a retry may succeed.
            Some(code)
                if code.starts_with("08")
                    || code.starts_with("40")
                    || code.starts_with("53")
                    || code.starts_with("57")
                    || code == "55P03" =>
            {
                StoreError::Unavailable(format!("{code}: {message}"))
            }
            Some(code) => StoreError::Internal(format!("{code}: {message}")),
        };
        Self { error, aborted_transaction: true }
    }
}

impl StoreError {
    /// Names the batch operation the error came from.
    pub fn in_operation(self, index: usize) -> Self {
        let prefix = |message: String| format!("operation {index}: {message}");
        match self {
            StoreError::Invalid(message) => StoreError::Invalid(prefix(message)),
            StoreError::Unavailable(message) => StoreError::Unavailable(prefix(message)),
            StoreError::Internal(message) => StoreError::Internal(prefix(message)),
            other => other,
        }
    }
}

pub fn status_name(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Todo => "todo",
        TaskStatus::InProgress => "in_progress",
        TaskStatus::Done => "done",
    }
}

/// Priorities are stored as 1..=3 so that they sort by rank.
pub fn priority_rank(priority: Priority) -> i64 {
    match priority {
        Priority::Low => 1,
        Priority::Medium => 2,
        Priority::High => 3,
    }
}

/// `$1..$10` in `TASK_COLUMNS` order.
pub fn task_params(task: &Task) -> Vec<Value> {
    vec![
        Value::Uuid(Some(task.id.clone())),
        Value::Uuid(Some(task.owner_id.clone())),
        Value::Text(Some(task.title.clone())),
        Value::Text(task.description.clone()),
        Value::Text(Some(status_name(task.status).into())),
        Value::Int(Some(priority_rank(task.priority))),
        Value::Timestamp(task.due_at),
        Value::Timestamp(Some(task.created_at)),
        Value::Timestamp(Some(task.updated_at)),
        Value::Int(Some(task.version)),
    ]
}

pub fn task_from_row(row: Vec<Value>) -> Result<Task, Failure> {
    let Ok(columns) = <[Value; 10]>::try_from(row) else {
        return Err(unexpected_row());
    };
    let [
        Value::Uuid(Some(id)),
        Value::Uuid(Some(owner_id)),
        Value::Text(Some(title)),
        Value::Text(description),
        Value::Text(Some(status)),
        Value::Int(Some(priority)),
        Value::Timestamp(due_at),
        Value::Timestamp(Some(created_at)),
        Value::Timestamp(Some(updated_at)),
        Value::Int(Some(version)),
    ] = columns
    else {
        return Err(unexpected_row());
    };
    let status = match status.as_str() {
        "todo" => TaskStatus::Todo,
        "in_progress" => TaskStatus::InProgress,
        "done" => TaskStatus::Done,
        _ => return Err(unexpected_row()),
    };
    let priority = match priority {
        1 => Priority::Low,
        2 => Priority::Medium,
        3 => Priority::High,
        _ => return Err(unexpected_row()),
    };
    Ok(Task { id, owner_id, title, description, status, priority, due_at, created_at, updated_at, version })
}

/// The one task a by-id statement answered, or `not-found`.
pub fn single_task(rows: Rows) -> Result<Task, Failure> {
    match rows.rows.into_iter().next() {
        Some(row) => task_from_row(row),
        None => Err(Failure::rejected(StoreError::NotFound)),
    }
}

fn unexpected_row() -> Failure {
    Failure::rejected(StoreError::Internal("a tasks row does not have the expected columns and types".into()))
}
