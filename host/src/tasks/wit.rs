//! The task model in the storage world's WIT types and back: what goes to
//! the storage plugin and how its answers become `TaskChange`s and
//! `TaskError`s. A malformed answer is the plugin's bug (`Internal`).

use chrono::DateTime;
use uuid::Uuid;

use super::error::{BatchFailure, TaskError};
use super::model::{
    FieldError, HistoryEntry, PageRequest, Priority, SortField, SortOrder, Task, TaskChange, TaskFilter, TaskPatch,
    TaskStatus,
};
use super::write::{Creation, ScopedOperation, StoreOperation};
use crate::plugins::history;
use crate::plugins::task_store as wit;
use crate::plugins::wit_types;

pub(super) fn filter_to_wit(filter: &TaskFilter) -> wit::TaskFilter {
    wit::TaskFilter {
        owner_id: filter.owner_id.map(|id| id.to_string()),
        status: filter.status.map(status_to_wit),
        priority: filter.priority.map(priority_to_wit),
        due_before: filter.due_before.map(|t| t.timestamp_micros()),
        due_after: filter.due_after.map(|t| t.timestamp_micros()),
        title_contains: filter.title_contains.clone(),
    }
}

pub(super) fn page_to_wit(page: PageRequest) -> wit::PageRequest {
    wit::PageRequest {
        sort: match page.sort {
            SortField::CreatedAt => wit::SortField::CreatedAt,
            SortField::DueAt => wit::SortField::DueAt,
            SortField::Priority => wit::SortField::Priority,
        },
        order: match page.order {
            SortOrder::Asc => wit::SortOrder::Asc,
            SortOrder::Desc => wit::SortOrder::Desc,
        },
        limit: page.limit,
        cursor: page.cursor,
    }
}

pub(super) fn batch_op_to_wit(ScopedOperation { scope, operation }: ScopedOperation) -> wit::BatchOp {
    wit::BatchOp {
        owner_scope: scope.map(|s| s.to_string()),
        action: match operation {
            StoreOperation::Create(task) => wit::BatchAction::Create(creation_to_wit(task)),
            StoreOperation::Update { id, patch, expected_version } => {
                wit::BatchAction::Update(update_to_wit(id, patch, expected_version))
            }
            StoreOperation::Delete { id, expected_version } => {
                wit::BatchAction::Delete(wit::DeleteOp { id: id.to_string(), expected_version })
            }
        },
    }
}

/// `apply-batch`'s answer as the batch's changes; any failed operation
/// turns the whole answer into an error, so the host rolls the batch back.
pub(super) fn batch_results_from_wit(
    answer: Result<Vec<Result<wit::BatchResult, wit::StoreError>>, wit::StoreError>,
) -> Result<Vec<TaskChange>, TaskError> {
    match answer {
        Ok(results) if results.iter().all(Result::is_ok) => {
            results.into_iter().flatten().map(batch_result_from_wit).collect()
        }
        Ok(results) => Err(TaskError::BatchFailed(
            results
                .into_iter()
                .enumerate()
                .filter_map(|(index, result)| result.err().map(|error| BatchFailure { index, error: error.into() }))
                .collect(),
        )),
        Err(error) => Err(error.into()),
    }
}

impl From<wit::StoreError> for TaskError {
    fn from(error: wit::StoreError) -> Self {
        match error {
            wit::StoreError::NotFound => TaskError::NotFound,
            wit::StoreError::VersionMismatch(current) => TaskError::VersionMismatch { current },
            wit::StoreError::Invalid(detail) => TaskError::Invalid(vec![FieldError::new("", detail)]),
            wit::StoreError::Unavailable(detail) => TaskError::Unavailable(detail),
            wit::StoreError::Internal(detail) => TaskError::Internal(detail),
        }
    }
}

pub(super) fn creation_to_wit(task: Creation) -> wit_types::NewTask {
    wit_types::NewTask {
        id: task.id.to_string(),
        owner_id: task.owner_id.to_string(),
        title: task.title,
        description: task.description,
        status: status_to_wit(task.status),
        priority: priority_to_wit(task.priority),
        due_at: task.due_at.map(|t| t.timestamp_micros()),
    }
}

pub(super) fn update_to_wit(id: Uuid, patch: TaskPatch, expected_version: Option<i64>) -> wit::UpdateOp {
    wit::UpdateOp {
        id: id.to_string(),
        patch: wit_types::TaskPatch {
            title: patch.title,
            description: patch.description,
            status: patch.status.map(status_to_wit),
            priority: patch.priority.map(priority_to_wit),
            due_at: patch.due_at.map(|due| due.map(|t| t.timestamp_micros())),
            owner_id: patch.owner_id.map(|id| id.to_string()),
        },
        expected_version,
    }
}

fn status_to_wit(status: TaskStatus) -> wit_types::TaskStatus {
    match status {
        TaskStatus::Todo => wit_types::TaskStatus::Todo,
        TaskStatus::InProgress => wit_types::TaskStatus::InProgress,
        TaskStatus::Done => wit_types::TaskStatus::Done,
    }
}

fn priority_to_wit(priority: Priority) -> wit_types::Priority {
    match priority {
        Priority::Low => wit_types::Priority::Low,
        Priority::Medium => wit_types::Priority::Medium,
        Priority::High => wit_types::Priority::High,
    }
}

pub(super) fn update_from_wit(update: wit::TaskUpdate) -> Result<TaskChange, TaskError> {
    Ok(TaskChange::Updated { before: task_from_wit(update.before)?, after: task_from_wit(update.after)? })
}

fn batch_result_from_wit(result: wit::BatchResult) -> Result<TaskChange, TaskError> {
    match result {
        wit::BatchResult::Created(task) => Ok(TaskChange::Created(task_from_wit(task)?)),
        wit::BatchResult::Updated(update) => update_from_wit(update),
        wit::BatchResult::Deleted(task) => Ok(TaskChange::Deleted(task_from_wit(task)?)),
    }
}

/// A task as the plugin answered it; a malformed answer is the plugin's bug.
pub(super) fn task_from_wit(task: wit_types::Task) -> Result<Task, TaskError> {
    let malformed = |what: &str| TaskError::Internal(format!("the storage plugin answered a task with {what}"));
    let uuid = |text: &str| Uuid::parse_str(text).map_err(|_| malformed("a malformed id"));
    let instant =
        |micros: i64| DateTime::from_timestamp_micros(micros).ok_or_else(|| malformed("an impossible timestamp"));
    Ok(Task {
        id: uuid(&task.id)?,
        owner_id: uuid(&task.owner_id)?,
        title: task.title,
        description: task.description,
        status: match task.status {
            wit_types::TaskStatus::Todo => TaskStatus::Todo,
            wit_types::TaskStatus::InProgress => TaskStatus::InProgress,
            wit_types::TaskStatus::Done => TaskStatus::Done,
        },
        priority: match task.priority {
            wit_types::Priority::Low => Priority::Low,
            wit_types::Priority::Medium => Priority::Medium,
            wit_types::Priority::High => Priority::High,
        },
        due_at: task.due_at.map(instant).transpose()?,
        created_at: instant(task.created_at)?,
        updated_at: instant(task.updated_at)?,
        version: task.version,
    })
}

impl From<history::HistoryError> for TaskError {
    fn from(error: history::HistoryError) -> Self {
        match error {
            history::HistoryError::Unavailable(detail) => TaskError::Unavailable(detail),
            history::HistoryError::Internal(detail) => TaskError::Internal(detail),
        }
    }
}

/// A history entry as the plugin answered it.
pub(super) fn history_entry_from_wit(entry: history::HistoryEntry) -> Result<HistoryEntry, TaskError> {
    let malformed = |what: &str| TaskError::Internal(format!("the history plugin answered an entry with {what}"));
    let json = |text: &str| serde_json::from_str(text).map_err(|_| malformed("malformed JSON"));
    Ok(HistoryEntry {
        event_id: entry.event_id,
        event_type: entry.event_type,
        occurred_at: DateTime::from_timestamp_micros(entry.occurred_at)
            .ok_or_else(|| malformed("an impossible time"))?,
        request_id: entry.request_id,
        changes: entry.changes.as_deref().map(json).transpose()?,
        task: json(&entry.task)?,
        owner_id: Uuid::parse_str(&entry.owner_id).map_err(|_| malformed("a malformed owner id"))?,
        version: entry.version,
    })
}
