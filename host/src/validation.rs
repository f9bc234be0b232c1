//! The shape of a validation failure, shared by every request type.

use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};

use crate::problem::Problem;

/// PostgreSQL text cannot hold U+0000: text carrying one is refused with
/// this rule up front, naming the field, rather than failing in the store.
pub const NO_NUL_RULE: &str = "must not contain the NUL character (U+0000)";

pub fn contains_nul(text: &str) -> bool {
    text.contains('\0')
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`):
/// `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// One rule a request broke, located by a JSON pointer into the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer (RFC 6901) to the offending member; empty for the whole body.
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), detail: detail.into() }
    }

    /// The same error located under `prefix` (e.g. `/operations/3`).
    pub fn under(self, prefix: &str) -> Self {
        Self { pointer: format!("{prefix}{}", self.pointer), detail: self.detail }
    }
}

/// The problem answering a request that broke `errors`.
pub fn validation_failed(errors: Vec<FieldError>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed", "Validation failed")
        .detail("the request breaks the rules listed in `errors`")
        .with("errors", errors)
}
