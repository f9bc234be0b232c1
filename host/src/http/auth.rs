//! `/auth`: registration, login, refresh, logout and password resets.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::extract::Json;
use super::openapi::params::ProblemDetails;
use crate::auth::{
    AccessToken, AsOf, Credentials, RefreshRequest, Registration, ResetConfirmation, ResetRequest, Tokens, User,
};
use crate::problem::Problem;
use crate::trace::RequestTrace;

/// Creates an account with the `user` role.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = Registration, responses(
    (status = 201, description = "The account (never its password hash)", body = User),
    (status = 409, description = "An account with this email exists", body = ProblemDetails, content_type = "application/problem+json"),
))]
pub async fn register(
    State(state): State<AppState>,
    Json(registration): Json<Registration>,
) -> Result<(StatusCode, axum::Json<User>), Problem> {
    let user = state.accounts.register(registration).await?;
    tracing::info!(user_id = %user.id, "account registered");
    Ok((StatusCode::CREATED, axum::Json(user)))
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT for `Authorization: Bearer …`.
    access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String)]
    token_type: &'static str,
    /// Seconds the access token lives.
    expires_in: u64,
    /// Absent when the server could not issue one (no Redis).
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_in: Option<u64>,
}

impl IntoResponse for Tokens {
    fn into_response(self) -> axum::response::Response {
        let (refresh_token, refresh_expires_in) =
            self.refresh.map(|refresh| (refresh.token, refresh.expires_in.as_secs())).unzip();
        let body = TokenResponse {
            access_token: self.access_token,
            token_type: "Bearer",
            expires_in: self.expires_in.as_secs(),
            refresh_token,
            refresh_expires_in,
        };
        // Tokens must not linger in shared caches.
        ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
    }
}

/// Exchanges an email and a password for tokens.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Credentials, responses(
    (status = 200, description = "Tokens", body = TokenResponse),
    (status = 401, description = "Wrong email or password", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 429, description = "Too many requests from this address, or too many failed logins for this account (`login-locked-out`)", body = ProblemDetails, content_type = "application/problem+json"),
))]
pub async fn login(State(state): State<AppState>, Json(credentials): Json<Credentials>) -> Result<Tokens, Problem> {
    let email = credentials.email.clone();
    let as_of = AsOf::now();
    let user = state.login_lockout.attempt(&email, state.accounts.authenticate(credentials)).await?;
    Ok(state.sessions.start(&user, as_of).await?)
}

/// Rotates a refresh token: a new access token and a new refresh token.
/// Reusing a spent refresh token revokes its whole family.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, description = "New tokens", body = TokenResponse),
    (status = 401, description = "Unknown, expired, revoked or reused refresh token", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 503, description = "Redis is not configured or did not answer", body = ProblemDetails, content_type = "application/problem+json"),
))]
pub async fn refresh(State(state): State<AppState>, Json(request): Json<RefreshRequest>) -> Result<Tokens, Problem> {
    Ok(state.sessions.refresh(request).await?)
}

/// Revokes the caller's access token and its refresh family, on every replica.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])), responses(
    (status = 204, description = "Logged out"),
    (status = 400, description = "The token is the identity provider's: log out there", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 503, description = "Redis is not configured or did not answer", body = ProblemDetails, content_type = "application/problem+json"),
))]
pub async fn logout(State(state): State<AppState>, token: Result<AccessToken, Problem>) -> Result<StatusCode, Problem> {
    // Behind require_auth: no token of the host's own is one of the
    // external provider's.
    let AccessToken(claims) = token.map_err(|_| {
        Problem::new(StatusCode::BAD_REQUEST, "provider-session", "Session of the identity provider")
            .detail("this token was issued by the identity provider (OIDC_ISSUER): end the session there")
    })?;
    state.sessions.end(&claims).await?;
    tracing::info!(user_id = %claims.sub, "logged out");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct ResetRequested {
    /// The same whether or not an account has the email.
    detail: &'static str,
}

/// Sends a password reset token to the account with this email, if there is
/// one (a `password-reset` record on the `notifications` topic, for a mail
/// handler to deliver). The answer is the same, as fast, either way; an
/// account is sent at most one token a minute.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth", request_body = ResetRequest, responses(
    (status = 202, description = "Accepted, whether or not the email is an account's", body = ResetRequested),
))]
pub async fn request_password_reset(
    State(state): State<AppState>,
    trace: RequestTrace,
    Json(request): Json<ResetRequest>,
) -> (StatusCode, axum::Json<ResetRequested>) {
    // After the answer: its timing tells nothing about the email.
    tokio::spawn(state.password_resets.clone().request(request.email, trace));
    let detail = "if an account has this email, a password reset token is on its way to it";
    (StatusCode::ACCEPTED, axum::Json(ResetRequested { detail }))
}

/// Sets a new password with the token of a password reset; the token is
/// used up, and every session of the account ends.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirmation, responses(
    (status = 204, description = "The password is changed; log in with it"),
    (status = 400, description = "The token is unknown, used or expired (`invalid-reset-token`)", body = ProblemDetails, content_type = "application/problem+json"),
    (status = 503, description = "Redis did not answer: the sessions could not be ended, nothing changed", body = ProblemDetails, content_type = "application/problem+json"),
))]
pub async fn confirm_password_reset(
    State(state): State<AppState>,
    Json(confirmation): Json<ResetConfirmation>,
) -> Result<StatusCode, Problem> {
    state.password_resets.confirm(confirmation).await?;
    Ok(StatusCode::NO_CONTENT)
}
