//! `GET /commands/{id}`: where an async write stands.

use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;

use super::AppState;
use super::extract::Path;
use super::openapi::params::ProblemDetails;
use crate::auth::Authenticated;
use crate::commands::CommandState;
use crate::problem::Problem;

/// Where a write queued with `Prefer: respond-async` stands.
#[utoipa::path(get, path = "/commands/{id}", tag = "tasks", operation_id = "get_command", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The id the 202 answered")),
    responses(
        (status = 200, description = "Pending, applied (with the answer) or failed (with the problem)", body = CommandState),
        (status = 404, description = "No command with this id is known to be the caller's", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<CommandState>, Problem> {
    let found = state.command_status.lookup(&actor, id).await.map_err(|error| {
        tracing::error!(%error, "cannot read a command's status");
        Problem::internal()
    })?;
    found.map(axum::Json).ok_or_else(|| {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
            .detail("no command with this id is known to be yours (a command is tracked for 24 hours)")
    })
}
