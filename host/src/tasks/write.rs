//! The vocabulary of writes, shared by the service that prepares them, the
//! store that runs them, group commit and the async command path: what a
//! validated, authorised write holds and what it answers.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::model::{Priority, Task, TaskChange, TaskPatch, TaskStatus};

/// Largest number of operations in one batch (and in one write group).
pub const MAX_BATCH_OPERATIONS: usize = 100;

/// A task to create, with the id and owner the service chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Creation {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub status: TaskStatus,
    pub priority: Priority,
    pub due_at: Option<DateTime<Utc>>,
}

/// One write, already validated (and, once scoped, authorised).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOperation {
    Create(Creation),
    Update { id: Uuid, patch: TaskPatch, expected_version: Option<i64> },
    Delete { id: Uuid, expected_version: Option<i64> },
}

impl StoreOperation {
    /// The task it touches (the new task's id, for a creation).
    pub fn task_id(&self) -> Uuid {
        match self {
            StoreOperation::Create(task) => task.id,
            StoreOperation::Update { id, .. } | StoreOperation::Delete { id, .. } => *id,
        }
    }
}

/// An operation and the tasks it may touch (`Some(owner)`: only theirs).
#[derive(Debug, Clone, PartialEq)]
pub struct ScopedOperation {
    pub scope: Option<Uuid>,
    pub operation: StoreOperation,
}

/// A validated, authorised write: run at once, or sent as a command and
/// run later all the same.
#[derive(Debug, Clone, PartialEq)]
pub enum PreparedWrite {
    /// `POST`, `PATCH` or `DELETE /tasks…`.
    Single { operation: ScopedOperation },
    /// `POST /tasks/batch`: all or nothing.
    Batch { operations: Vec<ScopedOperation> },
}

impl PreparedWrite {
    pub fn operations(&self) -> &[ScopedOperation] {
        match self {
            PreparedWrite::Single { operation } => std::slice::from_ref(operation),
            PreparedWrite::Batch { operations } => operations,
        }
    }

    /// What the write answers, given the changes of its operations.
    pub fn outcome(&self, changes: Vec<TaskChange>) -> WriteOutcome {
        match self {
            PreparedWrite::Single { .. } => match changes.into_iter().next() {
                Some(TaskChange::Created(task)) => WriteOutcome::Created { task },
                Some(TaskChange::Updated { after, .. }) => WriteOutcome::Updated { task: after },
                Some(TaskChange::Deleted(task)) => WriteOutcome::Deleted { id: task.id },
                None => WriteOutcome::Batch { results: Vec::new() },
            },
            PreparedWrite::Batch { .. } => WriteOutcome::Batch {
                results: changes
                    .into_iter()
                    .enumerate()
                    .map(|(index, change)| BatchOutcome::of(index, change))
                    .collect(),
            },
        }
    }
}

/// What a write answers (and what an applied command records).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum WriteOutcome {
    Created { task: Task },
    Updated { task: Task },
    Deleted { id: Uuid },
    Batch { results: Vec<BatchOutcome> },
}

/// The result of one batch operation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchOutcome {
    pub index: usize,
    /// `create`, `update` or `delete`.
    #[schema(value_type = String)]
    pub op: &'static str,
    /// What the operation alone would have answered: 201, 200 or 204.
    pub status: u16,
    pub id: Uuid,
    /// The task after the operation (absent for a deletion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
}

impl BatchOutcome {
    fn of(index: usize, change: TaskChange) -> Self {
        match change {
            TaskChange::Created(task) => Self { index, op: "create", status: 201, id: task.id, task: Some(task) },
            TaskChange::Updated { after, .. } => {
                Self { index, op: "update", status: 200, id: after.id, task: Some(after) }
            }
            TaskChange::Deleted(task) => Self { index, op: "delete", status: 204, id: task.id, task: None },
        }
    }
}
