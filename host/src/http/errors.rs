//! How the account errors answer over HTTP (task errors answer as
//! `tasks::TaskError` says). Internal details are logged, never sent.

use axum::http::StatusCode;

use crate::auth::AuthError;
use crate::problem::Problem;
use crate::validation::validation_failed;

impl From<AuthError> for Problem {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Invalid(errors) => validation_failed(errors),
            AuthError::EmailTaken => Problem::new(StatusCode::CONFLICT, "email-taken", "Email already registered")
                .detail("an account with this email already exists"),
            AuthError::InvalidCredentials => {
                Problem::new(StatusCode::UNAUTHORIZED, "invalid-credentials", "Invalid credentials")
                    .detail("the email or the password is wrong")
            }
            AuthError::LockedOut { retry_after_secs } => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "login-locked-out", "Too many failed logins")
                    .detail(format!(
                        "this account had too many failed logins; retry in {retry_after_secs} s or reset the password"
                    ))
                    .header(axum::http::header::RETRY_AFTER, retry_after_secs)
            }
            AuthError::AccountDisabled => Problem::new(StatusCode::FORBIDDEN, "account-disabled", "Account disabled")
                .detail("this account is disabled; ask an administrator"),
            AuthError::WrongPassword => Problem::new(StatusCode::FORBIDDEN, "wrong-password", "Wrong password")
                .detail("the current password is wrong"),
            AuthError::ProviderAccount => Problem::new(
                StatusCode::CONFLICT,
                "provider-account",
                "Account of the identity provider",
            )
            .detail(
                "this account signs in at the identity provider (OIDC_ISSUER): its password and role are managed there",
            ),
            AuthError::SelfLockout => Problem::new(StatusCode::CONFLICT, "self-lockout", "Own account")
                .detail("an admin cannot disable, demote or delete their own account; another admin can"),
            AuthError::UserNotFound => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail("no account has this id")
            }
            AuthError::InvalidQuery(detail) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameter").detail(detail)
            }
            AuthError::InvalidResetToken => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-reset-token", "Invalid password reset token")
                    .detail("the password reset token is unknown, used or expired; ask for a new one")
            }
            AuthError::InvalidRefreshToken => {
                Problem::new(StatusCode::UNAUTHORIZED, "invalid-refresh-token", "Invalid refresh token")
                    .detail("the refresh token is unknown, expired or revoked; log in again")
            }
            AuthError::RedisNotConfigured => {
                redis_unavailable("refresh tokens and logout need Redis, which this server is not configured with")
            }
            AuthError::RedisUnavailable(error) => {
                tracing::warn!(%error, "Redis is unavailable to refresh or logout");
                redis_unavailable("Redis is unavailable; retry shortly").header(axum::http::header::RETRY_AFTER, 1)
            }
            AuthError::Internal(error) => {
                tracing::error!(error = %format!("{error:#}"), "authentication failed internally");
                Problem::internal()
            }
        }
    }
}

fn redis_unavailable(detail: &str) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "redis-unavailable", "Service unavailable").detail(detail)
}
