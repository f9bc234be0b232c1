//! `GET /tasks/{id}/history`: a task's changes as the audit-log handler
//! plugin recorded them (table `task_audit`, filled from `task-events`, so
//! it trails the task by the event pipeline's latency).
//!
//! Visibility follows the task's owner at the time of each change: a user
//! sees the entries of the times the task was theirs. Entries are ordered
//! by the task's version (the order of its commits), not by clock. A task
//! the caller can read whose first entry is not recorded yet has an empty
//! history. A deleted task's trail stays readable by admins only: for
//! everyone else the history goes with the task.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::extract::Path;
use super::openapi::params::{ProblemDetails, TaskId};
use crate::auth::{Authenticated, Role};
use crate::problem::Problem;
use crate::tasks::RequestContext;
use crate::tasks::model::Task;
use crate::trace::RequestTrace;

#[derive(Serialize, sqlx::FromRow, ToSchema)]
pub struct HistoryEntry {
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    occurred_at: DateTime<Utc>,
    request_id: Option<String>,
    /// `{field: {from, to}}` for an update.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    changes: Option<Value>,
    /// The task after the change (as it was, for a deletion).
    #[schema(value_type = Task)]
    task: Value,
}

#[derive(Serialize, ToSchema)]
pub struct History {
    items: Vec<HistoryEntry>,
}

/// The recorded changes of a task, oldest first.
#[utoipa::path(get, path = "/tasks/{id}/history", tag = "tasks", operation_id = "get_task_history", security(("bearer" = [])),
    params(TaskId),
    responses(
        (status = 200, description = "The entries visible to the caller; empty while the first is being recorded", body = History),
        (status = 404, description = "No task with this id is visible to the caller (after a deletion, only admins read the history)", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Authenticated,
    trace: RequestTrace,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<History>, Problem> {
    let Authenticated(actor) = caller;
    let ctx = RequestContext { trace, actor };
    if actor.role != Role::Admin {
        ensure_readable(&state, &ctx, id).await?;
    }
    let owner = (actor.role == Role::User).then_some(actor.user_id);
    let items: Vec<HistoryEntry> = sqlx::query_as(
        "SELECT event_id, event_type, occurred_at, request_id, changes, task FROM task_audit \
         WHERE task_id = $1 AND ($2::uuid IS NULL OR owner_id = $2) ORDER BY (task ->> 'version')::bigint, occurred_at, event_id",
    )
    .bind(id)
    .bind(owner)
    .fetch_all(&state.pool)
    .await
    .map_err(|error| {
        tracing::error!(%error, "cannot read a task's history");
        Problem::internal()
    })?;
    if items.is_empty() && actor.role == Role::Admin {
        // Not recorded yet, or no such task: the task tells which.
        ensure_readable(&state, &ctx, id).await?;
    }
    Ok(axum::Json(History { items }))
}

async fn ensure_readable(state: &AppState, ctx: &RequestContext, id: Uuid) -> Result<(), Problem> {
    state.tasks.get(ctx, id).await.map(|_| ()).map_err(|error| match Problem::from(error) {
        problem if problem.status() == StatusCode::NOT_FOUND => {
            problem.detail("no task with this id is visible to you (a deleted task's history is for admins)")
        }
        problem => problem,
    })
}
