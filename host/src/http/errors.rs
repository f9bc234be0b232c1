//! How the services' errors answer over HTTP. Internal details are logged,
//! never sent.

use axum::http::StatusCode;
use serde::Serialize;

use crate::auth::AuthError;
use crate::plugins::PluginFailure;
use crate::problem::Problem;
use crate::tasks::TaskError;
use crate::validation::FieldError;

pub fn validation_failed(errors: Vec<FieldError>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed", "Validation failed")
        .detail("the request breaks the rules listed in `errors`")
        .with("errors", errors)
}

impl From<TaskError> for Problem {
    fn from(error: TaskError) -> Self {
        match error {
            TaskError::NotFound => Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
                .detail("no task with this id is visible to you"),
            TaskError::Forbidden(reason) => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(reason)
            }
            TaskError::VersionMismatch { current } => {
                Problem::new(StatusCode::PRECONDITION_FAILED, "version-mismatch", "Precondition failed")
                    .detail(format!("the task is at version {current}; fetch it again before changing it"))
                    .with("current_version", current)
            }
            TaskError::Invalid(errors) => validation_failed(errors),
            TaskError::BadRequest(detail) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameter").detail(detail)
            }
            TaskError::Unavailable(detail) => {
                tracing::warn!(%detail, "task store unavailable");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", "Service unavailable")
                    .detail("the task store is unavailable; retry shortly")
                    .header(axum::http::header::RETRY_AFTER, 1)
            }
            TaskError::Plugin(failure) => plugin_failure(failure),
            TaskError::Internal(detail) => {
                tracing::error!(%detail, "task operation failed");
                Problem::internal()
            }
            TaskError::BatchFailed(failures) => batch_failed(failures),
        }
    }
}

fn plugin_failure(failure: PluginFailure) -> Problem {
    let plugin = failure.plugin().to_string();
    let (status, slug, title, detail) = match &failure {
        PluginFailure::DeadlineExceeded { .. }
        | PluginFailure::MemoryExhausted { .. }
        | PluginFailure::Trapped { .. } => {
            let (status, slug, title) = match &failure {
                PluginFailure::DeadlineExceeded { .. } => {
                    (StatusCode::GATEWAY_TIMEOUT, "plugin-timeout", "Plugin timed out")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "plugin-failed", "Plugin failed"),
            };
            // What the plugin did is the operator's business and not secret.
            (status, slug, title, failure.to_string())
        }
        // These carry database and runtime messages: logged, never sent.
        PluginFailure::CommitFailed { .. } => {
            tracing::warn!(%failure, "plugin call not committed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "Service unavailable",
                "the database did not commit the change; nothing was changed — retry shortly".to_string(),
            )
        }
        PluginFailure::CircuitOpen { retry_after_secs, .. } => {
            let retry_after = *retry_after_secs;
            return Problem::new(StatusCode::SERVICE_UNAVAILABLE, "plugin-circuit-open", "Plugin switched off")
                .detail(failure.to_string())
                .with("plugin", plugin)
                .header(axum::http::header::RETRY_AFTER, retry_after);
        }
        PluginFailure::Failed { .. } => {
            tracing::error!(%failure, "plugin call failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin-failed",
                "Plugin failed",
                format!("plugin `{plugin}` failed; the error has been logged"),
            )
        }
    };
    Problem::new(status, slug, title).detail(detail).with("plugin", plugin)
}

/// An all-or-nothing batch that was rolled back: the status of the first
/// failure, and every failure by operation index.
fn batch_failed(failures: Vec<crate::tasks::BatchFailure>) -> Problem {
    #[derive(Serialize)]
    struct Failed {
        index: usize,
        status: u16,
        #[serde(rename = "type", serialize_with = "crate::problem::type_uri")]
        slug: &'static str,
        detail: Option<String>,
    }
    let failed: Vec<Failed> = failures
        .into_iter()
        .map(|failure| {
            let problem = Problem::from(failure.error);
            Failed { index: failure.index, status: problem.status, slug: problem.slug, detail: problem.detail }
        })
        .collect();
    let first = failed.first().map_or(StatusCode::CONFLICT.as_u16(), |f| f.status);
    let detail = match failed.first() {
        Some(f) => format!("operation {} failed ({}); nothing was applied", f.index, f.detail.as_deref().unwrap_or("")),
        None => "the batch failed; nothing was applied".into(),
    };
    Problem::new(StatusCode::from_u16(first).unwrap_or(StatusCode::CONFLICT), "batch-failed", "Batch failed")
        .detail(detail)
        .with("failures", failed)
}

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
