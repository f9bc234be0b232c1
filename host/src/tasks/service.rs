//! The task service: who may do what, and in which scope.
//!
//! - admin: reads and changes every task, may create for or reassign to
//!   another user, may filter by owner;
//! - user: reads and changes own tasks only (anything else is `NotFound`);
//! - viewer: reads every task, changes none (`Forbidden`).

use chrono::Utc;
use uuid::Uuid;

use crate::auth::{Actor, Role, UserRepository};
use crate::db::replica::Freshness;
use crate::trace::RequestTrace;

use super::cache::{CacheOutcome, CacheSlot, ListScope, TaskCache};
use super::cursor::{self, CursorSeal};
use super::error::TaskError;
use super::group_commit::GroupCommit;
use super::model::{
    BatchOperation, FieldError, HistoryEntry, NewTask, PageRequest, Priority, SortField, SortOrder, TaskChanges,
    TaskFilter, TaskJson, TaskPage, TaskStatus,
};
use super::store::{Call, TaskStore};
use super::write::{Creation, MAX_BATCH_OPERATIONS, PreparedWrite, ScopedOperation, StoreOperation, WriteOutcome};

/// Who asks, on behalf of which request.
pub struct RequestContext {
    pub trace: RequestTrace,
    pub actor: Actor,
}

impl RequestContext {
    fn call(&self) -> Call<'_> {
        Call { trace: &self.trace, now: Utc::now() }
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

#[derive(Clone)]
pub struct TaskService {
    store: TaskStore,
    writes: GroupCommit,
    cache: TaskCache,
    users: UserRepository,
    cursors: CursorSeal,
}

impl TaskService {
    pub fn new(
        store: TaskStore,
        writes: GroupCommit,
        cache: TaskCache,
        users: UserRepository,
        cursors: CursorSeal,
    ) -> Self {
        Self { store, writes, cache, users, cursors }
    }

    /// `POST /tasks`, validated and authorised, ready to run now or later.
    pub async fn prepare_create(&self, ctx: &RequestContext, input: NewTask) -> Result<PreparedWrite, TaskError> {
        let scope = ctx.write_scope()?;
        let input = input.validate().map_err(TaskError::Invalid)?;
        let operation = StoreOperation::Create(creation(ctx, input)?);
        self.check_new_owners(ctx, PreparedWrite::Single { operation: ScopedOperation { scope, operation } }).await
    }

    pub async fn prepare_update(
        &self,
        ctx: &RequestContext,
        id: Uuid,
        changes: TaskChanges,
        expected_version: Option<i64>,
    ) -> Result<PreparedWrite, TaskError> {
        let scope = ctx.write_scope()?;
        let patch = changes.validate().map_err(TaskError::Invalid)?;
        if patch.owner_id.is_some() {
            ctx.require_admin("only admins may reassign a task")?;
        }
        let operation = StoreOperation::Update { id, patch, expected_version };
        self.check_new_owners(ctx, PreparedWrite::Single { operation: ScopedOperation { scope, operation } }).await
    }

    pub fn prepare_delete(
        &self,
        ctx: &RequestContext,
        id: Uuid,
        expected_version: Option<i64>,
    ) -> Result<PreparedWrite, TaskError> {
        let scope = ctx.write_scope()?;
        let operation = StoreOperation::Delete { id, expected_version };
        Ok(PreparedWrite::Single { operation: ScopedOperation { scope, operation } })
    }

    /// Validates up to `MAX_BATCH_OPERATIONS` operations, reporting every
    /// broken rule of every operation at once.
    pub async fn prepare_batch(
        &self,
        ctx: &RequestContext,
        operations: Vec<BatchOperation>,
    ) -> Result<PreparedWrite, TaskError> {
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
                Ok(operation) => prepared.push(ScopedOperation { scope, operation }),
                Err(TaskError::Invalid(more)) => errors.extend(more),
                Err(other) => return Err(other),
            }
        }
        if !errors.is_empty() {
            return Err(TaskError::Invalid(errors));
        }
        self.check_new_owners(ctx, PreparedWrite::Batch { operations: prepared }).await
    }

    /// Refuses a write giving a task to an owner no account has (an admin
    /// creating for, or reassigning to, someone else). postgres-store's
    /// foreign key would refuse it too, but a store without one (kv-store)
    /// would keep a task nobody can see.
    async fn check_new_owners(&self, ctx: &RequestContext, write: PreparedWrite) -> Result<PreparedWrite, TaskError> {
        let batch = matches!(write, PreparedWrite::Batch { .. });
        let named: Vec<(String, Uuid)> = write
            .operations()
            .iter()
            .enumerate()
            .filter_map(|(index, scoped)| {
                let (field, owner) = match &scoped.operation {
                    StoreOperation::Create(task) => ("task", task.owner_id),
                    StoreOperation::Update { patch, .. } => ("changes", patch.owner_id?),
                    StoreOperation::Delete { .. } => return None,
                };
                let pointer = if batch { format!("/operations/{index}/{field}/owner_id") } else { "/owner_id".into() };
                (owner != ctx.actor.user_id).then_some((pointer, owner))
            })
            .collect();
        if named.is_empty() {
            return Ok(write);
        }
        let ids: Vec<Uuid> = named.iter().map(|(_, owner)| *owner).collect();
        let unknown = self.users.unknown(&ids).await.map_err(|error| TaskError::Unavailable(error.to_string()))?;
        let errors: Vec<FieldError> = named
            .into_iter()
            .filter(|(_, owner)| unknown.contains(owner))
            .map(|(pointer, _)| FieldError::new(pointer, "no user has this id"))
            .collect();
        if errors.is_empty() { Ok(write) } else { Err(TaskError::Invalid(errors)) }
    }

    /// Runs a prepared write now, in one transaction (possibly shared with
    /// other requests' writes, see `group_commit`).
    pub async fn execute(&self, ctx: &RequestContext, write: PreparedWrite) -> Result<WriteOutcome, TaskError> {
        let changes = self.writes.run(&ctx.trace, write.clone()).await?;
        Ok(write.outcome(changes))
    }

    /// Deletes every task of `owner` (an account being deleted), a batch
    /// at a time, each with its `task.deleted` event; answers how many.
    /// Read from the primary: a replica could still list what was deleted.
    pub async fn delete_all_of(&self, ctx: &RequestContext, owner: Uuid) -> Result<usize, TaskError> {
        ctx.require_admin("only admins may delete another user's tasks")?;
        let filter = TaskFilter { owner_id: Some(owner), ..TaskFilter::default() };
        let mut deleted = 0;
        loop {
            let page = PageRequest {
                sort: SortField::CreatedAt,
                order: SortOrder::Asc,
                limit: MAX_BATCH_OPERATIONS as u32,
                cursor: None,
            };
            let (tasks, _) = self.store.list(&ctx.call(), Freshness::Latest, None, &filter, page).await?;
            if tasks.is_empty() {
                return Ok(deleted);
            }
            let operations = tasks
                .iter()
                .map(|task| ScopedOperation {
                    scope: None,
                    operation: StoreOperation::Delete { id: task.id, expected_version: None },
                })
                .collect();
            match self.execute(ctx, PreparedWrite::Batch { operations }).await {
                Ok(_) => deleted += tasks.len(),
                // Deleted meanwhile by someone else: list again.
                Err(TaskError::BatchFailed(failures))
                    if failures.iter().all(|failure| matches!(failure.error, TaskError::NotFound)) => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// One task, from the cache when it holds it.
    pub async fn get(&self, ctx: &RequestContext, id: Uuid) -> Result<(TaskJson, CacheOutcome), TaskError> {
        let scope = ctx.read_scope();
        let (cached, slot) = self.cache.task(id).await;
        if let Some(task) = cached {
            // The store's own scope rule, applied to the cached task.
            if scope.is_some_and(|owner| owner != task.owner_id) {
                return Err(TaskError::NotFound);
            }
            return Ok((task, CacheOutcome::Hit));
        }
        let task = self.store.get(&ctx.call(), freshness(&slot), scope, id).await?;
        let task = TaskJson::new(&task).map_err(|error| TaskError::Internal(error.to_string()))?;
        let outcome = self.fill(slot, || Some(&task.json)).await;
        Ok((task, outcome))
    }

    /// One page of a listing, from the cache when it holds it.
    pub async fn list(&self, ctx: &RequestContext, query: ListQuery) -> Result<(TaskPage, CacheOutcome), TaskError> {
        if query.filter.owner_id.is_some() {
            ctx.require_admin("only admins may filter by owner")?;
        }
        let scope = ctx.read_scope();
        let cache_scope = scope.map_or(ListScope::All, ListScope::Owner);
        let shape = (scope, &query.filter, query.sort, query.order, query.limit, &query.cursor);
        let (cached, slot) = self.cache.page(cache_scope, &shape).await;
        if let Some(page) = cached {
            return Ok((page, CacheOutcome::Hit));
        }
        // Everything that shapes the listing, so a cursor cannot be replayed
        // against another one.
        let fingerprint = cursor::fingerprint(&(scope, &query.filter, query.sort, query.order));
        let plugin_cursor = query
            .cursor
            .as_deref()
            .map(|sealed| self.cursors.open(sealed, &fingerprint))
            .transpose()
            .map_err(|reason| TaskError::BadRequest(reason.to_string()))?;
        let page = PageRequest { sort: query.sort, order: query.order, limit: query.limit, cursor: plugin_cursor };
        let (items, next) = self.store.list(&ctx.call(), freshness(&slot), scope, &query.filter, page).await?;
        let page = TaskPage { items, next_cursor: next.map(|next| self.cursors.seal(next, &fingerprint)) };
        let outcome = self.fill(slot, || serde_json::to_vec(&page).ok()).await;
        Ok((page, outcome))
    }

    /// A task's recorded changes, oldest first (by version: the order of
    /// its commits), as the caller may see them: a user sees the entries of
    /// the times the task was theirs, and only while it is readable; a
    /// deleted task's trail stays readable by admins.
    pub async fn history(&self, ctx: &RequestContext, id: Uuid) -> Result<Vec<HistoryEntry>, TaskError> {
        let admin = ctx.actor.role == Role::Admin;
        if !admin {
            self.get(ctx, id).await?;
        }
        let mut entries = self.store.history(&ctx.call(), id).await?;
        if let Some(owner) = ctx.read_scope() {
            entries.retain(|entry| entry.owner_id == owner);
        }
        entries.sort_by(|a, b| (a.version, a.occurred_at, &a.event_id).cmp(&(b.version, b.occurred_at, &b.event_id)));
        if entries.is_empty() && admin {
            // Not recorded yet, or no such task: the task tells which.
            self.get(ctx, id).await?;
        }
        Ok(entries)
    }

    /// Stores a database answer, as JSON, in the cache slot of a miss
    /// (before answering, so the caller's next read is a hit). Serialises
    /// only when there is a slot.
    async fn fill<J: AsRef<[u8]>>(&self, slot: Option<CacheSlot>, json: impl FnOnce() -> Option<J>) -> CacheOutcome {
        let Some(slot) = slot else { return CacheOutcome::Bypass };
        if let Some(json) = json() {
            self.cache.store(slot, json.as_ref()).await;
        }
        CacheOutcome::Miss
    }
}

/// How fresh a read that missed the cache must be: what its slot says, the
/// primary's when there is no slot (no cache, or Redis not answering).
fn freshness(slot: &Option<CacheSlot>) -> Freshness {
    slot.as_ref().map_or(Freshness::Latest, |slot| slot.freshness)
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
