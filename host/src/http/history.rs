//! `GET /tasks/{id}/history`: a task's changes as the audit-log handler
//! plugin recorded them (table `task_audit`, filled from `task-events`, so
//! it trails the task by the event pipeline's latency).
//!
//! Visibility follows the task's owner at the time of each change: a user
//! sees the entries of the times the task was theirs. Entries are ordered
//! by the task's version (the order of its commits), not by clock.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::AppState;
use super::extract::Path;
use crate::auth::{Authenticated, Role};
use crate::problem::Problem;

#[derive(Serialize, sqlx::FromRow)]
pub struct HistoryEntry {
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    occurred_at: DateTime<Utc>,
    request_id: Option<String>,
    /// `{field: {from, to}}` for an update.
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Value>,
    /// The task after the change (as it was, for a deletion).
    task: Value,
}

#[derive(Serialize)]
pub struct History {
    items: Vec<HistoryEntry>,
}

pub async fn get(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<History>, Problem> {
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
    if items.is_empty() {
        return Err(Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail("no history is recorded for a task with this id that is visible to you"));
    }
    Ok(axum::Json(History { items }))
}
