//! `/users`: a caller's own account (`/users/me`) and, for admins, every
//! account.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::AppState;
use super::extract::{Json, Path, Query};
use super::openapi::params::ProblemDetails;
use crate::auth::{
    Admin, AdminChanges, Authenticated, MAX_USERS_PAGE, PasswordChange, ProfileChanges, Tokens, User, UserPage,
};
use crate::problem::Problem;
use crate::tasks::RequestContext;
use crate::trace::RequestTrace;

/// The caller's account.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])), responses(
    (status = 200, description = "The caller's account", body = User),
))]
pub async fn me(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
) -> Result<axum::Json<User>, Problem> {
    Ok(axum::Json(state.account_manager.get(actor.user_id).await?))
}

/// Changes the caller's display name.
#[utoipa::path(patch, path = "/users/me", tag = "users", security(("bearer" = [])), request_body = ProfileChanges, responses(
    (status = 200, description = "The account as changed", body = User),
))]
pub async fn update_me(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    Json(changes): Json<ProfileChanges>,
) -> Result<axum::Json<User>, Problem> {
    Ok(axum::Json(state.account_manager.update_profile(actor, changes).await?))
}

/// Changes the caller's password. Every session of the account ends, the
/// one of this request too; the answer is a new one.
#[utoipa::path(post, path = "/users/me/password", tag = "users", security(("bearer" = [])), request_body = PasswordChange, responses(
    (status = 200, description = "The caller's new session", body = super::auth::TokenResponse),
    (status = 403, description = "The current password is wrong (`wrong-password`); failures count towards LOGIN_FAILURE_LIMIT", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 409, description = "The account signs in at the identity provider (`provider-account`)", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 503, description = "Redis did not answer: the sessions could not be ended, nothing changed", body = ProblemDetails, content_type = "application/problem+json"),
))]
pub async fn change_password(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    Json(change): Json<PasswordChange>,
) -> Result<Tokens, Problem> {
    let tokens = state.account_manager.change_password(actor, change).await?;
    tracing::info!(user_id = %actor.user_id, "password changed; every other session ended");
    Ok(tokens)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListParams {
    /// Part of the email or display name (case-insensitive).
    search: Option<String>,
    /// 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Every account, by email (admins only).
#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])), params(UserListParams), responses(
    (status = 200, description = "One page of accounts", body = UserPage),
    (status = 400, description = "A cursor this server did not issue", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
))]
pub async fn list(
    State(state): State<AppState>,
    _: Admin,
    Query(params): Query<UserListParams>,
) -> Result<axum::Json<UserPage>, Problem> {
    let limit = params.limit.unwrap_or(50).min(MAX_USERS_PAGE);
    let page = state.account_manager.list(params.search.as_deref(), params.cursor.as_deref(), limit).await?;
    Ok(axum::Json(page))
}

/// One account (admins only).
#[utoipa::path(get, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account", body = User),
        (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No account has this id", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn get(State(state): State<AppState>, _: Admin, Path(id): Path<Uuid>) -> Result<axum::Json<User>, Problem> {
    Ok(axum::Json(state.account_manager.get(id).await?))
}

/// Changes an account's role, display name or whether it is disabled
/// (admins only). Disabling refuses every token of the account at once, on
/// every replica; a new role applies from the account's next refresh (its
/// access tokens are refused until then).
#[utoipa::path(patch, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The account's id")),
    request_body = AdminChanges,
    responses(
        (status = 200, description = "The account as changed", body = User),
        (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No account has this id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "An admin's own account cannot be disabled or demoted by them (`self-lockout`); an external account's role is the identity provider's (`provider-account`)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "Redis did not answer: the tokens could not be refused, nothing changed", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<Uuid>,
    Json(changes): Json<AdminChanges>,
) -> Result<axum::Json<User>, Problem> {
    Ok(axum::Json(state.account_manager.administer(admin, id, changes).await?))
}

/// Deletes an account and every task it owns (each with its
/// `task.deleted` event), admins only. The account is disabled first, so a
/// failure midway leaves it disabled, never half deleted and usable:
/// delete it again.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 204, description = "Deleted, with its tasks"),
        (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No account has this id", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "An admin cannot delete their own account (`self-lockout`)", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    Admin(admin): Admin,
    trace: RequestTrace,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, Problem> {
    state.account_manager.begin_deletion(admin, id).await?;
    let deleted = state.tasks.delete_all_of(&RequestContext { trace, actor: admin }, id).await?;
    state.account_manager.delete(admin, id).await?;
    tracing::info!(user_id = %id, tasks = deleted, "account and its tasks deleted");
    Ok(StatusCode::NO_CONTENT)
}
