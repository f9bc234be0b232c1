//! The typed client of the active storage plugin: converts the task model
//! to and from the WIT types, maps the plugin's answers to `TaskError`, and
//! announces every committed change through the outbox, in the write's own
//! transaction.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;
use wasmtime::Store;

use crate::events::{OutboxRecord, outbox};
use crate::plugins::task_store as wit;
use crate::plugins::wit_types;
use crate::plugins::{BeforeCommit, CallKind, CallState, NothingMore, PluginRegistry};
use crate::trace::RequestTrace;

use super::cache::TaskCache;
use super::error::{BatchFailure, TaskError};
use super::model::{Priority, SortField, SortOrder, Task, TaskChange, TaskFilter, TaskPatch, TaskStatus};

/// A store call's frame: which request it serves and its clock.
pub struct Call<'a> {
    pub trace: &'a RequestTrace,
    pub now: DateTime<Utc>,
}

impl Call<'_> {
    fn context(&self) -> wit_types::CallContext {
        wit_types::CallContext { request_id: self.trace.request_id.clone(), now: self.now.timestamp_micros() }
    }
}

/// A task to create, with the id and owner the service chose.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// One write, already validated (and, once scoped, authorised).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StoreOperation {
    Create(Creation),
    Update { id: Uuid, patch: TaskPatch, expected_version: Option<i64> },
    Delete { id: Uuid, expected_version: Option<i64> },
}

/// An operation and the tasks it may touch (`Some(owner)`: only theirs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScopedOperation {
    pub scope: Option<Uuid>,
    pub operation: StoreOperation,
}

/// Which request each change of a write announces.
#[derive(Clone, Copy)]
pub enum Traces<'a> {
    /// Every change comes from the call's request.
    Shared(&'a RequestTrace),
    /// One per operation (a batch of commands from many requests).
    PerOperation(&'a [RequestTrace]),
}

impl Traces<'_> {
    fn get(&self, index: usize) -> &RequestTrace {
        match self {
            Traces::Shared(trace) => trace,
            Traces::PerOperation(traces) => &traces[index.min(traces.len().saturating_sub(1))],
        }
    }
}

/// Appends the outbox records of a write's changes, then whatever `then`
/// adds, before the write commits.
struct Announce<'a, T> {
    traces: Traces<'a>,
    now: DateTime<Utc>,
    then: T,
}

impl<T: BeforeCommit<Vec<TaskChange>> + Send> BeforeCommit<Vec<TaskChange>> for Announce<'_, T> {
    async fn run(self, changes: &Vec<TaskChange>, connection: &mut PgConnection) -> Result<(), sqlx::Error> {
        let records: Vec<OutboxRecord> = changes
            .iter()
            .enumerate()
            .map(|(index, change)| OutboxRecord::task_event(change, self.traces.get(index), self.now))
            .collect();
        outbox::append(connection, &records).await?;
        self.then.run(changes, connection).await
    }
}

#[derive(Clone)]
pub struct TaskStore {
    plugins: Arc<PluginRegistry>,
    cache: TaskCache,
}

type Guest = wit::Guest;

impl TaskStore {
    pub fn new(plugins: Arc<PluginRegistry>, cache: TaskCache) -> Self {
        Self { plugins, cache }
    }

    async fn read<R, E: Into<TaskError>>(
        &self,
        call: &Call<'_>,
        body: impl AsyncFnOnce(&Guest, &mut Store<CallState>) -> wasmtime::Result<Result<R, E>>,
    ) -> Result<R, TaskError> {
        let answer = self.plugins.storage().call(call.trace, CallKind::Read, body, NothingMore).await?;
        answer.map_err(Into::into)
    }

    /// Runs a write; its changes are announced in its transaction, and what
    /// they made stale in the cache is outdated once it committed. Every
    /// write path (sync, batch, async commands) comes through here.
    async fn write(
        &self,
        call: &Call<'_>,
        traces: Traces<'_>,
        body: impl AsyncFnOnce(&Guest, &mut Store<CallState>) -> wasmtime::Result<Result<Vec<TaskChange>, TaskError>>,
        then: impl BeforeCommit<Vec<TaskChange>> + Send,
    ) -> Result<Vec<TaskChange>, TaskError> {
        let announce = Announce { traces, now: call.now, then };
        let changes = self.plugins.storage().call(call.trace, CallKind::Write, body, announce).await??;
        self.cache.invalidate(&changes).await;
        Ok(changes)
    }

    pub async fn create(&self, call: &Call<'_>, task: Creation) -> Result<TaskChange, TaskError> {
        let (context, task) = (call.context(), creation_to_wit(task));
        let changes = self
            .write(
                call,
                Traces::Shared(call.trace),
                async |store, s| {
                    let answer = store.call_create(s, &context, &task).await?;
                    Ok(answer
                        .map_err(TaskError::from)
                        .and_then(|task| Ok(vec![TaskChange::Created(task_from_wit(task)?)])))
                },
                NothingMore,
            )
            .await?;
        single(changes)
    }

    pub async fn get(&self, call: &Call<'_>, scope: Option<Uuid>, id: Uuid) -> Result<Task, TaskError> {
        let (context, scope, id) = (call.context(), scope.map(|s| s.to_string()), id.to_string());
        task_from_wit(self.read(call, async |store, s| store.call_get(s, &context, scope.as_deref(), &id).await).await?)
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
            .read(call, async |store, s| store.call_list(s, &context, scope.as_deref(), &filter, &page).await)
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
    ) -> Result<TaskChange, TaskError> {
        let (context, scope) = (call.context(), scope.map(|s| s.to_string()));
        let op = update_to_wit(id, patch, expected_version);
        let changes = self
            .write(
                call,
                Traces::Shared(call.trace),
                async |store, s| {
                    let answer = store.call_update(s, &context, scope.as_deref(), &op).await?;
                    Ok(answer.map_err(TaskError::from).and_then(|update| Ok(vec![update_from_wit(update)?])))
                },
                NothingMore,
            )
            .await?;
        single(changes)
    }

    pub async fn delete(
        &self,
        call: &Call<'_>,
        scope: Option<Uuid>,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<TaskChange, TaskError> {
        let (context, scope) = (call.context(), scope.map(|s| s.to_string()));
        let op = wit::DeleteOp { id: id.to_string(), expected_version };
        let changes = self
            .write(
                call,
                Traces::Shared(call.trace),
                async |store, s| {
                    let answer = store.call_delete(s, &context, scope.as_deref(), &op).await?;
                    Ok(answer
                        .map_err(TaskError::from)
                        .and_then(|task| Ok(vec![TaskChange::Deleted(task_from_wit(task)?)])))
                },
                NothingMore,
            )
            .await?;
        single(changes)
    }

    /// Applies every operation in one transaction, all or nothing: if any
    /// operation fails, the transaction is rolled back and every failure is
    /// reported with its index. `then` adds the caller's own statements to
    /// the transaction.
    pub async fn apply_all(
        &self,
        call: &Call<'_>,
        operations: Vec<ScopedOperation>,
        traces: Traces<'_>,
        then: impl BeforeCommit<Vec<TaskChange>> + Send,
    ) -> Result<Vec<TaskChange>, TaskError> {
        let context = call.context();
        let ops: Vec<wit::BatchOp> = operations
            .into_iter()
            .map(|ScopedOperation { scope, operation }| wit::BatchOp {
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
            })
            .collect();
        self.write(
            call,
            traces,
            async |store, s| {
                let answer = store.call_apply_batch(s, &context, &ops).await?;
                // Any failed operation turns the call into an error, so the
                // host rolls the whole batch back.
                Ok(match answer {
                    Ok(results) if results.iter().all(Result::is_ok) => {
                        results.into_iter().flatten().map(batch_result_from_wit).collect()
                    }
                    Ok(results) => Err(TaskError::BatchFailed(
                        results
                            .into_iter()
                            .enumerate()
                            .filter_map(|(index, result)| {
                                result.err().map(|error| BatchFailure { index, error: error.into() })
                            })
                            .collect(),
                    )),
                    Err(error) => Err(error.into()),
                })
            },
            then,
        )
        .await
    }
}

/// The one change of a single-operation write.
fn single(mut changes: Vec<TaskChange>) -> Result<TaskChange, TaskError> {
    match (changes.pop(), changes.is_empty()) {
        (Some(change), true) => Ok(change),
        _ => Err(TaskError::Internal("the storage plugin answered a single write with several changes".into())),
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

fn update_from_wit(update: wit::TaskUpdate) -> Result<TaskChange, TaskError> {
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
