//! The typed client of the active storage plugin: converts the task model
//! to and from the WIT types and maps the plugin's answers to `TaskError`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use wasmtime::Store;

use crate::plugins::task_store as wit;
use crate::plugins::wit_types;
use crate::plugins::{CallKind, CallState, PluginRegistry};

use super::error::TaskError;
use super::model::{Priority, SortField, SortOrder, Task, TaskFilter, TaskPatch, TaskStatus};

/// A store call's frame: which request it serves and its clock.
pub struct Call<'a> {
    pub request_id: &'a str,
    pub now: DateTime<Utc>,
}

impl Call<'_> {
    fn context(&self) -> wit_types::CallContext {
        wit_types::CallContext { request_id: self.request_id.to_string(), now: self.now.timestamp_micros() }
    }
}

/// A task to create, with the id and owner the service chose.
pub struct Creation {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub status: TaskStatus,
    pub priority: Priority,
    pub due_at: Option<DateTime<Utc>>,
}

pub struct PageRequest {
    pub sort: SortField,
    pub order: SortOrder,
    pub limit: u32,
    pub cursor: Option<String>,
}

/// One operation of a batch, already validated and scoped.
pub enum StoreOperation {
    Create(Creation),
    Update { id: Uuid, patch: TaskPatch, expected_version: Option<i64> },
    Delete { id: Uuid, expected_version: Option<i64> },
}

#[derive(Clone)]
pub struct TaskStore {
    plugins: Arc<PluginRegistry>,
}

impl TaskStore {
    pub fn new(plugins: Arc<PluginRegistry>) -> Self {
        Self { plugins }
    }

    /// Calls the active storage plugin; the export's own error becomes a
    /// `TaskError`.
    async fn call<R, E: Into<TaskError>>(
        &self,
        call: &Call<'_>,
        kind: CallKind,
        body: impl AsyncFnOnce(&wit::Guest, &mut Store<CallState>) -> wasmtime::Result<Result<R, E>>,
    ) -> Result<R, TaskError> {
        let answer = self.plugins.storage().call(call.request_id, kind, body).await?;
        answer.map_err(Into::into)
    }

    pub async fn create(&self, call: &Call<'_>, task: Creation) -> Result<Task, TaskError> {
        let (context, task) = (call.context(), creation_to_wit(task));
        task_from_wit(
            self.call(call, CallKind::Write, async |store, s| store.call_create(s, &context, &task).await).await?,
        )
    }

    pub async fn get(&self, call: &Call<'_>, scope: Option<Uuid>, id: Uuid) -> Result<Task, TaskError> {
        let (context, scope, id) = (call.context(), scope.map(|s| s.to_string()), id.to_string());
        task_from_wit(
            self.call(call, CallKind::Read, async |store, s| store.call_get(s, &context, scope.as_deref(), &id).await)
                .await?,
        )
    }

    /// One page; `next_cursor` is the plugin's own cursor (the service
    /// seals it).
    pub async fn list(
        &self,
        call: &Call<'_>,
        scope: Option<Uuid>,
        filter: &TaskFilter,
        page: PageRequest,
    ) -> Result<(Vec<Task>, Option<String>), TaskError> {
        let context = call.context();
        let scope = scope.map(|s| s.to_string());
        let filter = wit::TaskFilter {
            owner_id: filter.owner_id.map(|id| id.to_string()),
            status: filter.status.map(status_to_wit),
            priority: filter.priority.map(priority_to_wit),
            due_before: filter.due_before.map(|t| t.timestamp_micros()),
            due_after: filter.due_after.map(|t| t.timestamp_micros()),
            title_contains: filter.title_contains.clone(),
        };
        let page = wit::PageRequest {
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
        };
        let page = self
            .call(call, CallKind::Read, async |store, s| {
                store.call_list(s, &context, scope.as_deref(), &filter, &page).await
            })
            .await?;
        let items = page.items.into_iter().map(task_from_wit).collect::<Result<_, _>>()?;
        Ok((items, page.next_cursor))
    }

    pub async fn update(
        &self,
        call: &Call<'_>,
        scope: Option<Uuid>,
        id: Uuid,
        patch: TaskPatch,
        expected_version: Option<i64>,
    ) -> Result<Task, TaskError> {
        let (context, scope) = (call.context(), scope.map(|s| s.to_string()));
        let op = update_to_wit(id, patch, expected_version);
        task_from_wit(
            self.call(call, CallKind::Write, async |store, s| {
                store.call_update(s, &context, scope.as_deref(), &op).await
            })
            .await?,
        )
    }

    /// Deletes and answers the task as it was.
    pub async fn delete(
        &self,
        call: &Call<'_>,
        scope: Option<Uuid>,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<Task, TaskError> {
        let (context, scope) = (call.context(), scope.map(|s| s.to_string()));
        let op = wit::DeleteOp { id: id.to_string(), expected_version };
        task_from_wit(
            self.call(call, CallKind::Write, async |store, s| {
                store.call_delete(s, &context, scope.as_deref(), &op).await
            })
            .await?,
        )
    }

    /// Applies every operation in one transaction, all or nothing: if any
    /// operation fails, the transaction is rolled back and every failure is
    /// reported with its index.
    pub async fn apply_all(
        &self,
        call: &Call<'_>,
        scope: Option<Uuid>,
        operations: Vec<StoreOperation>,
    ) -> Result<Vec<Task>, TaskError> {
        let context = call.context();
        let scope = scope.map(|s| s.to_string());
        let ops: Vec<wit::BatchOp> = operations
            .into_iter()
            .map(|operation| wit::BatchOp {
                owner_scope: scope.clone(),
                action: match operation {
                    StoreOperation::Create(task) => wit::BatchAction::Create(creation_to_wit(task)),
                    StoreOperation::Update { id, patch, expected_version } => {
                        wit::BatchAction::Update(update_to_wit(id, patch, expected_version))
                    }
                    StoreOperation::Delete { id, expected_version } => {
                        wit::BatchAction::Delete(wit::DeleteOp { id: id.to_string(), expected_version })
                    }
                },
            })
            .collect();
        let answer = self
            .call(call, CallKind::Write, async |store, s| {
                let answer = store.call_apply_batch(s, &context, &ops).await?;
                // Any failed operation turns the call into an error, so the
                // host rolls the whole batch back.
                Ok(match answer {
                    Ok(results) if results.iter().all(Result::is_ok) => {
                        Ok(results.into_iter().filter_map(Result::ok).collect::<Vec<_>>())
                    }
                    Ok(results) => Err(TaskError::BatchFailed(
                        results
                            .into_iter()
                            .enumerate()
                            .filter_map(|(index, result)| {
                                result.err().map(|error| super::BatchFailure { index, error: error.into() })
                            })
                            .collect(),
                    )),
                    Err(error) => Err(error.into()),
                })
            })
            .await?;
        answer.into_iter().map(task_from_wit).collect()
    }
}

impl From<wit::StoreError> for TaskError {
    fn from(error: wit::StoreError) -> Self {
        match error {
            wit::StoreError::NotFound => TaskError::NotFound,
            wit::StoreError::VersionMismatch(current) => TaskError::VersionMismatch { current },
            wit::StoreError::Invalid(detail) => TaskError::Invalid(vec![super::model::FieldError::new("", detail)]),
            wit::StoreError::Unavailable(detail) => TaskError::Unavailable(detail),
            wit::StoreError::Internal(detail) => TaskError::Internal(detail),
        }
    }
}

fn creation_to_wit(task: Creation) -> wit_types::NewTask {
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

fn update_to_wit(id: Uuid, patch: TaskPatch, expected_version: Option<i64>) -> wit::UpdateOp {
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

/// A task as the plugin answered it; a malformed answer is the plugin's bug.
fn task_from_wit(task: wit_types::Task) -> Result<Task, TaskError> {
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
