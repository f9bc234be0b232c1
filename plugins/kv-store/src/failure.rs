//! Why an operation failed, and whether a batch can go on after it.

use std::ops::Range;

use crate::exports::todo::plugin::task_store::StoreError;
use crate::todo::plugin::kv::KvError;

/// An operation's error, and whether it may have left writes behind.
///
/// The plugin's own refusals (not found, version mismatch, malformed cursor)
/// come before an operation's first write, so the batch can go on without
/// it. A kv error or an unreadable value can strike between two writes of one
/// operation; the batch as a whole then fails, and the host discards every
/// write of the call.
#[derive(Debug)]
pub struct Failure {
    pub error: StoreError,
    pub fails_batch: bool,
}

impl Failure {
    /// A refusal decided before anything was written.
    pub fn rejected(error: StoreError) -> Self {
        Self { error, fails_batch: false }
    }

    /// An unexpected state: a value the plugin cannot read or write, a taken
    /// id, an answer of the wrong shape.
    pub fn internal(message: String) -> Self {
        Self { error: StoreError::Internal(message), fails_batch: true }
    }

    /// A failed kv call; `doing` says what for (e.g. "reading task:…").
    pub fn kv(doing: &str, error: KvError) -> Self {
        let error = match error {
            KvError::Unavailable(message) => StoreError::Unavailable(format!("{doing}: {message}")),
            // The host refused the call itself: a bug of this plugin.
            KvError::Other(message) => StoreError::Internal(format!("{doing}: {message}")),
        };
        Self { error, fails_batch: true }
    }

    pub fn into_error(self) -> StoreError {
        self.error
    }
}

impl StoreError {
    /// Names the batch operations the error came from: one, or a run of
    /// creations made together (which cannot always tell which one failed).
    pub fn in_operations(self, operations: Range<usize>) -> Self {
        let prefix = |message: String| match operations.len() {
            1 => format!("operation {}: {message}", operations.start),
            _ => format!("operations {} to {}: {message}", operations.start, operations.end - 1),
        };
        match self {
            StoreError::Invalid(message) => StoreError::Invalid(prefix(message)),
            StoreError::Unavailable(message) => StoreError::Unavailable(prefix(message)),
            StoreError::Internal(message) => StoreError::Internal(prefix(message)),
            other => other,
        }
    }
}
