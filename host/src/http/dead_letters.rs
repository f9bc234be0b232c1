//! `/admin/dead-letters`: the events handlers gave up on, and their replay
//! through the handler's ledger. Admins only.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::extract::{Json, Path, Query};
use super::openapi::params::ProblemDetails;
use crate::auth::Admin;
use crate::events::handlers::{BulkReplay, DeadLetterPage, DeadLetterQuery, ReplayError, ReplayResult, ReplayStatus};
use crate::problem::Problem;
use crate::trace::RequestTrace;

impl From<ReplayError> for Problem {
    fn from(error: ReplayError) -> Self {
        match error {
            ReplayError::NotFound => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(error.to_string())
            }
            ReplayError::HandlerNotInService(_) => {
                Problem::new(StatusCode::CONFLICT, "handler-not-in-service", "Handler not in service")
                    .detail(format!("{error}: load it (EVENT_HANDLERS, or its manifest's `enabled`) and replay again"))
            }
            ReplayError::Database(error) => database_unavailable(error),
        }
    }
}

fn database_unavailable(error: sqlx::Error) -> Problem {
    tracing::warn!(%error, "the dead letters cannot be read or written");
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "database-unavailable", "Service unavailable")
        .detail("the database did not answer; retry shortly")
        .header(axum::http::header::RETRY_AFTER, 1)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only this handler's.
    handler: Option<String>,
    /// `pending` (default), `replayed` or `all`.
    #[param(inline)]
    status: Option<ReplayStatus>,
    /// 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

/// The dead letters, newest first.
#[utoipa::path(get, path = "/admin/dead-letters", tag = "admin", operation_id = "list_dead_letters", security(("bearer" = [])),
    params(DeadLetterParams),
    responses(
        (status = 200, description = "One page of dead letters", body = DeadLetterPage),
        (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    _: Admin,
    Query(params): Query<DeadLetterParams>,
) -> Result<axum::Json<DeadLetterPage>, Problem> {
    let query = DeadLetterQuery {
        handler: params.handler,
        status: params.status.unwrap_or_default(),
        limit: params.limit.unwrap_or(50),
        after: params.cursor,
    };
    Ok(axum::Json(state.dead_letters.list(query).await.map_err(database_unavailable)?))
}

/// Hands a dead letter's event to its handler again, through the handler's
/// ledger: an event handled meanwhile is not applied twice.
#[utoipa::path(post, path = "/admin/dead-letters/{id}/replay", tag = "admin", operation_id = "replay_dead_letter", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The dead letter's id")),
    responses(
        (status = 200, description = "How the replay came out (`failed`: the dead letter stays pending)", body = ReplayResult),
        (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No dead letter has this id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Its handler is not in service here (`handler-not-in-service`)", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn replay(
    State(state): State<AppState>,
    _: Admin,
    trace: RequestTrace,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<ReplayResult>, Problem> {
    Ok(axum::Json(state.dead_letters.replay(id, &trace).await?))
}

/// The body of `POST /admin/dead-letters/replay`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkReplayRequest {
    /// Replays this handler's pending dead letters, oldest first (up to 1000).
    handler: String,
}

/// Replays every pending dead letter of a handler.
#[utoipa::path(post, path = "/admin/dead-letters/replay", tag = "admin", operation_id = "replay_dead_letters", security(("bearer" = [])),
    request_body = BulkReplayRequest,
    responses(
        (status = 200, description = "How the replays came out", body = BulkReplay),
        (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The handler is not in service here (`handler-not-in-service`)", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn replay_all(
    State(state): State<AppState>,
    _: Admin,
    trace: RequestTrace,
    Json(request): Json<BulkReplayRequest>,
) -> Result<axum::Json<BulkReplay>, Problem> {
    Ok(axum::Json(state.dead_letters.replay_all(&request.handler, &trace).await?))
}
