//! Mapping between `tasks` rows, WIT values and store errors.

use storage_kit::exports::todo::plugin::task_store::StoreError;
use storage_kit::failure::Failure;
use storage_kit::todo::plugin::sql::{Rows, Value};
use storage_kit::todo::plugin::types::{Priority, Task, TaskStatus};

/// The column list every query selects, in the order `task_from_row` reads
/// and `task_params` writes.
pub const TASK_COLUMNS: &str =
    "id, owner_id, title, description, status, priority, due_at, created_at, updated_at, version";
const TASK_COLUMN_COUNT: usize = 10;

/// The most rows one INSERT may carry: the wire protocol counts a
/// statement's parameters in 16 bits.
pub const MAX_INSERT_ROWS: usize = u16::MAX as usize / TASK_COLUMN_COUNT;

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

/// `INSERT INTO tasks` of `rows` rows, whose parameters are the rows'
/// `task_params` one after the other.
pub fn insert_statement(rows: usize) -> String {
    let rows: Vec<String> = (0..rows)
        .map(|row| {
            let first = row * TASK_COLUMN_COUNT + 1;
            let placeholders: Vec<String> = (first..first + TASK_COLUMN_COUNT).map(|n| format!("${n}")).collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    format!("INSERT INTO tasks ({TASK_COLUMNS}) VALUES {}", rows.join(", "))
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
    let Ok(columns) = <[Value; TASK_COLUMN_COUNT]>::try_from(row) else {
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
