//! `/tasks`: CRUD, listing and batches. Every handler goes through the task
//! service, which goes through the storage plugin.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::extract::{Json, Path, Query, RequestId, etag, if_match_version, if_none_match_version};
use crate::auth::Authenticated;
use crate::problem::Problem;
use crate::tasks::model::{
    BatchOperation, NewTask, Priority, SortField, SortOrder, Task, TaskChanges, TaskFilter, TaskStatus,
};
use crate::tasks::{BatchOutcome, ListQuery, RequestContext};

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
const MAX_SEARCH_CHARS: usize = 200;

fn context(request_id: RequestId, Authenticated(actor): Authenticated) -> RequestContext {
    RequestContext { request_id: request_id.0, actor }
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

pub async fn create(
    State(state): State<AppState>,
    caller: Authenticated,
    request_id: RequestId,
    Json(input): Json<NewTask>,
) -> Result<Response, Problem> {
    let task = state.tasks.create(&context(request_id, caller), input).await?;
    let location = format!("/tasks/{}", task.id);
    let mut response = task_response(StatusCode::CREATED, task);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

pub async fn get(
    State(state): State<AppState>,
    caller: Authenticated,
    request_id: RequestId,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let task = state.tasks.get(&context(request_id, caller), id).await?;
    if if_none_match_version(&headers) == Some(task.version) {
        return Ok(with_etag(StatusCode::NOT_MODIFIED.into_response(), task.version));
    }
    Ok(task_response(StatusCode::OK, task))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Authenticated,
    request_id: RequestId,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(changes): Json<TaskChanges>,
) -> Result<Response, Problem> {
    let expected_version = if_match_version(&headers)?;
    let task = state.tasks.update(&context(request_id, caller), id, changes, expected_version).await?;
    Ok(task_response(StatusCode::OK, task))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Authenticated,
    request_id: RequestId,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    let expected_version = if_match_version(&headers)?;
    state.tasks.delete(&context(request_id, caller), id, expected_version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query parameters of `GET /tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    status: Option<TaskStatus>,
    priority: Option<Priority>,
    due_before: Option<DateTime<Utc>>,
    due_after: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the title.
    q: Option<String>,
    /// Owner's user id (admins only).
    owner: Option<Uuid>,
    sort: Option<SortField>,
    order: Option<SortOrder>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct TaskList {
    items: Vec<Task>,
    next_cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
    request_id: RequestId,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<TaskList>, Problem> {
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
    let page = state.tasks.list(&context(request_id, caller), query).await?;
    Ok(axum::Json(TaskList { items: page.items, next_cursor: page.next_cursor }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    operations: Vec<BatchOperation>,
}

#[derive(Serialize)]
pub struct BatchResponse {
    results: Vec<BatchOutcome>,
}

pub async fn batch(
    State(state): State<AppState>,
    caller: Authenticated,
    request_id: RequestId,
    Json(request): Json<BatchRequest>,
) -> Result<axum::Json<BatchResponse>, Problem> {
    let results = state.tasks.batch(&context(request_id, caller), request.operations).await?;
    Ok(axum::Json(BatchResponse { results }))
}
