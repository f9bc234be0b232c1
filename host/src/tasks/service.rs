//! The task service: who may do what, and in which scope.
//!
//! - admin: reads and changes every task, may create for or reassign to
//!   another user, may filter by owner;
//! - user: reads and changes own tasks only (anything else is `NotFound`);
//! - viewer: reads every task, changes none (`Forbidden`).

use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::{Actor, Role};

use super::cursor;
use super::error::TaskError;
use super::model::{
    BatchOperation, FieldError, NewTask, Priority, SortField, SortOrder, Task, TaskChanges, TaskFilter, TaskPage,
    TaskStatus,
};
use super::store::{Call, Creation, PageRequest, StoreOperation, TaskStore};

/// Largest number of operations in one batch.
pub const MAX_BATCH_OPERATIONS: usize = 100;

/// Who asks, on behalf of which request.
pub struct RequestContext {
    pub request_id: String,
    pub actor: Actor,
}

impl RequestContext {
    fn call(&self) -> Call<'_> {
        Call { request_id: &self.request_id, now: Utc::now() }
    }

    /// Tasks this caller may read: `None` means all.
    fn read_scope(&self) -> Option<Uuid> {
        match self.actor.role {
            Role::Admin | Role::Viewer => None,
            Role::User => Some(self.actor.user_id),
        }
    }

    /// Tasks this caller may change.
    fn write_scope(&self) -> Result<Option<Uuid>, TaskError> {
        match self.actor.role {
            Role::Admin => Ok(None),
            Role::User => Ok(Some(self.actor.user_id)),
            Role::Viewer => Err(TaskError::Forbidden("viewers may read tasks but not change them")),
        }
    }

    fn require_admin(&self, what: &'static str) -> Result<(), TaskError> {
        if self.actor.role == Role::Admin { Ok(()) } else { Err(TaskError::Forbidden(what)) }
    }
}

/// `GET /tasks` after parsing.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: TaskFilter,
    pub sort: SortField,
    pub order: SortOrder,
    pub limit: u32,
    pub cursor: Option<String>,
}

/// The result of one batch operation.
#[derive(Debug, Clone, Serialize)]
pub struct BatchOutcome {
    pub index: usize,
    pub op: &'static str,
    /// What the operation alone would have answered: 201, 200 or 204.
    pub status: u16,
    pub id: Uuid,
    /// The task after the operation (absent for a deletion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
}

#[derive(Clone)]
pub struct TaskService {
    store: TaskStore,
}

impl TaskService {
    pub fn new(store: TaskStore) -> Self {
        Self { store }
    }

    pub async fn create(&self, ctx: &RequestContext, input: NewTask) -> Result<Task, TaskError> {
        ctx.write_scope()?;
        let input = input.validate().map_err(TaskError::Invalid)?;
        let creation = creation(ctx, input)?;
        self.store.create(&ctx.call(), creation).await
    }

    pub async fn get(&self, ctx: &RequestContext, id: Uuid) -> Result<Task, TaskError> {
        self.store.get(&ctx.call(), ctx.read_scope(), id).await
    }

    pub async fn list(&self, ctx: &RequestContext, query: ListQuery) -> Result<TaskPage, TaskError> {
        if query.filter.owner_id.is_some() {
            ctx.require_admin("only admins may filter by owner")?;
        }
        let scope = ctx.read_scope();
        // Everything that shapes the listing, so a cursor cannot be replayed
        // against another one.
        let fingerprint = cursor::fingerprint(&(scope, &query.filter, query.sort, query.order));
        let plugin_cursor = query
            .cursor
            .as_deref()
            .map(|sealed| cursor::open(sealed, &fingerprint))
            .transpose()
            .map_err(|reason| TaskError::BadRequest(reason.to_string()))?;
        let page = PageRequest { sort: query.sort, order: query.order, limit: query.limit, cursor: plugin_cursor };
        let (items, next) = self.store.list(&ctx.call(), scope, &query.filter, page).await?;
        Ok(TaskPage { items, next_cursor: next.map(|next| cursor::seal(next, &fingerprint)) })
    }

    pub async fn update(
        &self,
        ctx: &RequestContext,
        id: Uuid,
        changes: TaskChanges,
        expected_version: Option<i64>,
    ) -> Result<Task, TaskError> {
        let scope = ctx.write_scope()?;
        let patch = changes.validate().map_err(TaskError::Invalid)?;
        if patch.owner_id.is_some() {
            ctx.require_admin("only admins may reassign a task")?;
        }
        self.store.update(&ctx.call(), scope, id, patch, expected_version).await
    }

    pub async fn delete(
        &self,
        ctx: &RequestContext,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<Task, TaskError> {
        let scope = ctx.write_scope()?;
        self.store.delete(&ctx.call(), scope, id, expected_version).await
    }

    /// Applies up to `MAX_BATCH_OPERATIONS` operations in one transaction:
    /// all of them, or none.
    pub async fn batch(
        &self,
        ctx: &RequestContext,
        operations: Vec<BatchOperation>,
    ) -> Result<Vec<BatchOutcome>, TaskError> {
        let scope = ctx.write_scope()?;
        if operations.is_empty() || operations.len() > MAX_BATCH_OPERATIONS {
            return Err(TaskError::Invalid(vec![FieldError::new(
                "/operations",
                format!("must hold 1 to {MAX_BATCH_OPERATIONS} operations (got {})", operations.len()),
            )]));
        }
        let mut errors = Vec::new();
        let mut prepared = Vec::with_capacity(operations.len());
        for (index, operation) in operations.into_iter().enumerate() {
            let at = format!("/operations/{index}");
            let result = match operation {
                BatchOperation::Create { task } => task
                    .validate()
                    .map_err(|errors| under(errors, &format!("{at}/task")))
                    .and_then(|task| Ok(StoreOperation::Create(creation(ctx, task)?))),
                BatchOperation::Update { id, changes, expected_version } => {
                    changes.validate().map_err(|errors| under(errors, &format!("{at}/changes"))).and_then(|patch| {
                        if patch.owner_id.is_some() {
                            ctx.require_admin("only admins may reassign a task")?;
                        }
                        Ok(StoreOperation::Update { id, patch, expected_version })
                    })
                }
                BatchOperation::Delete { id, expected_version } => Ok(StoreOperation::Delete { id, expected_version }),
            };
            match result {
                Ok(operation) => prepared.push(operation),
                Err(TaskError::Invalid(more)) => errors.extend(more),
                Err(other) => return Err(other),
            }
        }
        if !errors.is_empty() {
            return Err(TaskError::Invalid(errors));
        }

        let kinds: Vec<(&'static str, u16)> = prepared
            .iter()
            .map(|operation| match operation {
                StoreOperation::Create(_) => ("create", 201),
                StoreOperation::Update { .. } => ("update", 200),
                StoreOperation::Delete { .. } => ("delete", 204),
            })
            .collect();
        let tasks = self.store.apply_all(&ctx.call(), scope, prepared).await?;
        Ok(tasks
            .into_iter()
            .zip(kinds)
            .enumerate()
            .map(|(index, (task, (op, status)))| BatchOutcome {
                index,
                op,
                status,
                id: task.id,
                task: (op != "delete").then_some(task),
            })
            .collect())
    }
}

/// Chooses the id and owner of a validated new task.
fn creation(ctx: &RequestContext, input: NewTask) -> Result<Creation, TaskError> {
    let owner_id = input.owner_id.unwrap_or(ctx.actor.user_id);
    if owner_id != ctx.actor.user_id {
        ctx.require_admin("only admins may create tasks for another user")?;
    }
    Ok(Creation {
        id: Uuid::now_v7(),
        owner_id,
        title: input.title,
        description: input.description,
        status: input.status.unwrap_or(TaskStatus::Todo),
        priority: input.priority.unwrap_or(Priority::Medium),
        due_at: input.due_at,
    })
}

fn under(errors: Vec<FieldError>, prefix: &str) -> TaskError {
    TaskError::Invalid(errors.into_iter().map(|error| error.under(prefix)).collect())
}
