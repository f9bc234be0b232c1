//! `GET /tasks/{id}/history`: a task's changes as the history plugin
//! (`HISTORY_PLUGIN`, audit-log by default) recorded them from
//! `task-events`, so it trails the task by the event pipeline's latency.
//! The host never reads the plugin's tables: it calls the plugin's
//! `history` export and applies the role rules (`TaskService::history`).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::extract::Path;
use super::openapi::params::{ProblemDetails, TaskId};
use crate::auth::Authenticated;
use crate::problem::Problem;
use crate::tasks::RequestContext;
use crate::tasks::model::HistoryEntry;
use crate::trace::RequestTrace;

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
        (status = 501, description = "No history plugin is loaded (`HISTORY_PLUGIN`)", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    trace: RequestTrace,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<History>, Problem> {
    let ctx = RequestContext { trace, actor };
    let items = state.tasks.history(&ctx, id).await.map_err(|error| match Problem::from(error) {
        problem if problem.status() == StatusCode::NOT_FOUND => {
            problem.detail("no task with this id is visible to you (a deleted task's history is for admins)")
        }
        problem => problem,
    })?;
    Ok(axum::Json(History { items }))
}
