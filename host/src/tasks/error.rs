//! Why a task operation failed, in the service's terms.

use crate::plugins::PluginFailure;

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
}

/// One failed operation of an all-or-nothing batch.
#[derive(Debug)]
pub struct BatchFailure {
    pub index: usize,
    pub error: TaskError,
}
