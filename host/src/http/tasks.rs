//! `/tasks`: CRUD, listing and batches. Every handler goes through the task
//! service, which goes through the storage plugin.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::extract::{Json, Path, Query, etag, if_match_version, if_none_match_version, prefers_async};
use super::openapi::params::{IdempotencyKey, IfMatch, IfNoneMatch, PreferAsync, ProblemDetails, TaskId};
use crate::auth::Authenticated;
use crate::commands::Submission;
use crate::problem::Problem;
use crate::tasks::model::{
    BatchOperation, NewTask, Priority, SortField, SortOrder, Task, TaskChanges, TaskFilter, TaskStatus,
};
use crate::tasks::{BatchOutcome, CacheOutcome, ListQuery, PreparedWrite, RequestContext, WriteOutcome};
use crate::trace::RequestTrace;
use crate::validation::{NO_NUL_RULE, contains_nul};

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
const MAX_SEARCH_CHARS: usize = 200;

fn context(trace: RequestTrace, Authenticated(actor): Authenticated) -> RequestContext {
    RequestContext { trace, actor }
}

/// A single task, with its version as `ETag`.
fn task_response(status: StatusCode, task: Task) -> Response {
    with_etag((status, axum::Json(&task)).into_response(), task.version)
}

fn with_etag(mut response: Response, version: i64) -> Response {
    if let Ok(tag) = HeaderValue::from_str(&etag(version)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// `Cache-Status` (RFC 9211): whether the answer came from the cache.
fn with_cache_status(mut response: Response, cache: CacheOutcome) -> Response {
    let status = match cache {
        CacheOutcome::Hit => "todo-host; hit",
        CacheOutcome::Miss => "todo-host; fwd=miss; stored",
        CacheOutcome::Bypass => "todo-host; fwd=bypass",
    };
    response.headers_mut().insert(HeaderName::from_static("cache-status"), HeaderValue::from_static(status));
    response
}

/// Runs a prepared write now, or — when the client prefers it and a broker
/// is configured — queues it as a command and answers 202.
///
/// `Prefer: respond-async` is a preference (RFC 7240): when the broker does
/// not take the command, the write is applied now and answered as a
/// synchronous one, without `Preference-Applied`. The command, which may
/// have reached the broker all the same, is withdrawn first, so it is never
/// applied twice.
async fn write(
    state: &AppState,
    ctx: RequestContext,
    headers: &HeaderMap,
    write: PreparedWrite,
) -> Result<Response, Problem> {
    let write = match state.commands.as_ref().filter(|_| prefers_async(headers)) {
        Some(commands) => match commands.submit(&ctx, write).await {
            Ok(Submission::Queued(id)) => return Ok(accepted(id)),
            Ok(Submission::ApplyNow(write)) => write,
            Err(error) => {
                tracing::warn!(%error, "cannot withdraw a command the broker did not acknowledge");
                return Err(commands_unavailable());
            }
        },
        None => write,
    };
    Ok(match state.tasks.execute(&ctx, write).await? {
        WriteOutcome::Created { task } => {
            let location = format!("/tasks/{}", task.id);
            let mut response = task_response(StatusCode::CREATED, task);
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        WriteOutcome::Updated { task } => task_response(StatusCode::OK, task),
        WriteOutcome::Deleted { .. } => StatusCode::NO_CONTENT.into_response(),
        WriteOutcome::Batch { results } => axum::Json(BatchResponse { results }).into_response(),
    })
}

/// 202 for a queued command: where to poll for its outcome.
fn accepted(id: Uuid) -> Response {
    let mut response = (StatusCode::ACCEPTED, axum::Json(CommandAccepted { id, status: "pending" })).into_response();
    let headers = response.headers_mut();
    headers.insert(HeaderName::from_static("preference-applied"), HeaderValue::from_static("respond-async"));
    if let Ok(location) = HeaderValue::from_str(&format!("/commands/{id}")) {
        headers.insert(header::LOCATION, location);
    }
    response
}

fn commands_unavailable() -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "commands-unavailable", "Service unavailable")
        .detail("the command queue is unavailable; retry shortly or send the request without Prefer: respond-async")
        .header(header::RETRY_AFTER, 1)
}

/// Creates a task, owned by the caller (or by `owner_id`, for an admin).
#[utoipa::path(post, path = "/tasks", tag = "tasks", operation_id = "create_task", security(("bearer" = [])),
    params(IdempotencyKey, PreferAsync),
    request_body = NewTask,
    responses(
        (status = 201, description = "The task", body = Task,
            headers(("Location" = String, description = "/tasks/{id}"), ("ETag" = String, description = "The version, quoted"))),
        (status = 403, description = "A viewer cannot write; a user cannot create for someone else", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is still running", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Authenticated,
    trace: RequestTrace,
    headers: HeaderMap,
    Json(input): Json<NewTask>,
) -> Result<Response, Problem> {
    let ctx = context(trace, caller);
    let prepared = state.tasks.prepare_create(&ctx, input).await?;
    write(&state, ctx, &headers, prepared).await
}

/// One task, when the caller may read it (another user's task answers 404).
#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks", operation_id = "get_task", security(("bearer" = [])),
    params(TaskId, IfNoneMatch),
    responses(
        (status = 200, description = "The task", body = Task,
            headers(("ETag" = String, description = "The version, quoted"), ("Cache-Status" = String, description = "RFC 9211: hit or miss of the server's cache"))),
        (status = 304, description = "The client's copy is current"),
        (status = 404, description = "No task with this id is visible to the caller", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The storage plugin is unavailable", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Authenticated,
    trace: RequestTrace,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (task, cache) = state.tasks.get(&context(trace, caller), id).await?;
    let response = if if_none_match_version(&headers) == Some(task.version) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], task.json).into_response()
    };
    let response = with_etag(response, task.version);
    Ok(with_cache_status(response, cache))
}

/// Changes the given fields; `null` clears a nullable one.
#[utoipa::path(patch, path = "/tasks/{id}", tag = "tasks", operation_id = "update_task", security(("bearer" = [])),
    params(TaskId, IfMatch, PreferAsync),
    request_body = TaskChanges,
    responses(
        (status = 200, description = "The task after the change", body = Task, headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 403, description = "A viewer cannot write; only an admin reassigns", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No task with this id is visible to the caller", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names a version that is not current", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Authenticated,
    trace: RequestTrace,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(changes): Json<TaskChanges>,
) -> Result<Response, Problem> {
    let expected_version = if_match_version(&headers)?;
    let ctx = context(trace, caller);
    let prepared = state.tasks.prepare_update(&ctx, id, changes, expected_version).await?;
    write(&state, ctx, &headers, prepared).await
}

/// Deletes a task.
#[utoipa::path(delete, path = "/tasks/{id}", tag = "tasks", operation_id = "delete_task", security(("bearer" = [])),
    params(TaskId, IfMatch, PreferAsync),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "A viewer cannot write", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No task with this id is visible to the caller", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` names a version that is not current", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Authenticated,
    trace: RequestTrace,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let expected_version = if_match_version(&headers)?;
    let ctx = context(trace, caller);
    let prepared = state.tasks.prepare_delete(&ctx, id, expected_version)?;
    write(&state, ctx, &headers, prepared).await
}

/// Query parameters of `GET /tasks`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    status: Option<TaskStatus>,
    priority: Option<Priority>,
    /// Tasks due before this instant.
    due_before: Option<DateTime<Utc>>,
    /// Tasks due after this instant.
    due_after: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the title.
    #[param(max_length = 200, pattern = r"^[^\u0000]*$")]
    q: Option<String>,
    /// Owner's user id (admins only).
    owner: Option<Uuid>,
    /// Default `created_at`.
    #[param(inline)]
    sort: Option<SortField>,
    /// Default `desc`.
    #[param(inline)]
    order: Option<SortOrder>,
    /// Page size, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page, with the same filters and sort.
    #[param(min_length = 1, pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")]
    cursor: Option<String>,
}

/// One page of tasks.
#[derive(Serialize, ToSchema)]
pub struct TaskList {
    items: Vec<Task>,
    /// Absent on the last page.
    next_cursor: Option<String>,
}

/// The answer to a write queued with `Prefer: respond-async`.
#[derive(Serialize, ToSchema)]
pub struct CommandAccepted {
    /// Poll `/commands/{id}`.
    id: Uuid,
    /// Always `pending`.
    #[schema(value_type = String)]
    status: &'static str,
}

/// The tasks the caller may read (all for admins and viewers), filtered,
/// sorted and paginated by cursor.
#[utoipa::path(get, path = "/tasks", tag = "tasks", operation_id = "list_tasks", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page", body = TaskList,
            headers(("Cache-Status" = String, description = "RFC 9211: hit or miss of the server's cache"))),
        (status = 403, description = "Only an admin filters by owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The storage plugin is unavailable", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    trace: RequestTrace,
    Query(params): Query<ListParams>,
) -> Result<Response, Problem> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameter")
            .detail(format!("limit must be between 1 and {MAX_PAGE_SIZE}")));
    }
    let search = params.q.map(|q| q.trim().to_string()).filter(|q| !q.is_empty());
    if search.as_ref().is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameter")
            .detail(format!("q must be at most {MAX_SEARCH_CHARS} characters")));
    }
    if search.as_deref().is_some_and(contains_nul) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameter")
            .detail(format!("q {NO_NUL_RULE}")));
    }
    let query = ListQuery {
        filter: TaskFilter {
            owner_id: params.owner,
            status: params.status,
            priority: params.priority,
            due_before: params.due_before,
            due_after: params.due_after,
            title_contains: search,
        },
        sort: params.sort.unwrap_or_default(),
        order: params.order.unwrap_or_default(),
        limit,
        cursor: params.cursor,
    };
    let (page, cache) = state.tasks.list(&context(trace, caller), query).await?;
    let response = axum::Json(TaskList { items: page.items, next_cursor: page.next_cursor }).into_response();
    Ok(with_cache_status(response, cache))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"operations": [{"op": "create", "task": {"title": "Book the venue"}}, {"op": "create", "task": {"title": "Send the invitations", "priority": "low"}}]}))]
pub struct BatchRequest {
    #[schema(min_items = 1, max_items = 100)]
    operations: Vec<BatchOperation>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    /// One per operation, in order.
    results: Vec<BatchOutcome>,
}

/// Up to 100 operations, applied all together or not at all.
#[utoipa::path(post, path = "/tasks/batch", tag = "tasks", operation_id = "batch_tasks", security(("bearer" = [])),
    params(IdempotencyKey, PreferAsync),
    request_body = BatchRequest,
    responses(
        (status = 200, description = "Every operation was applied", body = BatchResponse),
        (status = 403, description = "An operation is not the caller's to make", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "An operation names a task not visible to the caller; nothing was applied", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is still running", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 412, description = "An operation's `expected_version` is not current; nothing was applied", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn batch(
    State(state): State<AppState>,
    caller: Authenticated,
    trace: RequestTrace,
    headers: HeaderMap,
    Json(request): Json<BatchRequest>,
) -> Result<Response, Problem> {
    let ctx = context(trace, caller);
    let prepared = state.tasks.prepare_batch(&ctx, request.operations).await?;
    write(&state, ctx, &headers, prepared).await
}
