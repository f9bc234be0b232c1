//! The shape of a validation failure, shared by every request type.

use serde::Serialize;

/// One rule a request broke, located by a JSON pointer into the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
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
