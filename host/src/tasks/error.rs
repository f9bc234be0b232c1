//! Why a task operation failed, in the service's terms, and the problem
//! each failure answers (over HTTP, and as a failed command's outcome).
//! Internal details are logged, never sent.

use axum::http::StatusCode;
use serde::Serialize;

use crate::plugins::PluginFailure;
use crate::problem::Problem;
use crate::validation::validation_failed;

use super::model::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Missing, or outside the caller's scope: the two are never told apart.
    #[error("task not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("the task is at version {current}")]
    VersionMismatch { current: i64 },
    #[error("the request breaks {} rule(s)", .0.len())]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("the task store is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Plugin(#[from] PluginFailure),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("batch operation {} failed; nothing was applied", .0.first().map_or(0, |f| f.index))]
    BatchFailed(Vec<BatchFailure>),
    /// No loaded plugin answers task histories.
    #[error("{0}")]
    NoHistory(String),
}

/// One failed operation of an all-or-nothing batch.
#[derive(Debug)]
pub struct BatchFailure {
    pub index: usize,
    pub error: TaskError,
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
                store_unavailable()
            }
            TaskError::Plugin(failure) => plugin_failure(failure),
            TaskError::Internal(detail) => {
                tracing::error!(%detail, "task operation failed");
                Problem::internal()
            }
            TaskError::BatchFailed(failures) => batch_failed(failures),
            TaskError::NoHistory(detail) => {
                Problem::new(StatusCode::NOT_IMPLEMENTED, "history-unavailable", "History unavailable").detail(detail)
            }
        }
    }
}

/// The database (or what the store stands on) is down: a passing outage,
/// the same answer whoever noticed it.
fn store_unavailable() -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", "Service unavailable")
        .detail("the task store is unavailable; retry shortly")
        .header(axum::http::header::RETRY_AFTER, 1)
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
            return store_unavailable()
                .detail("the database did not commit the change; nothing was changed — retry shortly")
                .with("plugin", plugin);
        }
        PluginFailure::Unavailable { .. } => {
            tracing::warn!(%failure, "plugin call failed for want of the database");
            return store_unavailable();
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
fn batch_failed(failures: Vec<BatchFailure>) -> Problem {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn every_store_unavailable_answer_says_when_to_retry() {
        let failures = [
            TaskError::Unavailable("pool timed out".into()),
            TaskError::Plugin(PluginFailure::Unavailable { plugin: "postgres-store".into(), reason: "gone".into() }),
            TaskError::Plugin(PluginFailure::CommitFailed { plugin: "postgres-store".into(), reason: "gone".into() }),
        ];
        for failure in failures {
            let response = Problem::from(failure).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
        }
    }
}
