//! `GET /commands/{id}`: where an async write stands.

use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;

use super::AppState;
use super::extract::Path;
use crate::auth::Authenticated;
use crate::commands::CommandState;
use crate::problem::Problem;

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
