//! Why an operation failed, and whether a batch can go on after it.

use std::ops::Range;

use crate::exports::todo::plugin::task_store::StoreError;
use crate::todo::plugin::kv::KvError;
use crate::todo::plugin::sql::SqlError;

/// An operation's error, and whether the batch as a whole must fail.
///
/// A store's own refusals (not found, version mismatch, malformed cursor)
/// are decided before an operation's first write, so a batch can go on
/// without it. A failed import call cannot: a failed statement aborts the
/// PostgreSQL transaction (no further statement can run), and a kv error
/// or an unreadable value can strike between two writes of one operation;
/// the batch then fails, and the host discards every write of the call.
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
            // The host refused the call itself: a bug of the plugin.
            KvError::Other(message) => StoreError::Internal(format!("{doing}: {message}")),
        };
        Self { error, fails_batch: true }
    }

    pub fn into_error(self) -> StoreError {
        self.error
    }
}

/// A failed statement, by its SQLSTATE.
impl From<SqlError> for Failure {
    fn from(error: SqlError) -> Self {
        let message = error.message;
        let error = match error.code.as_deref() {
            // A task's one foreign key is its owner.
            Some("23503") => StoreError::Invalid("the new owner does not exist".into()),
            Some(code) if code.starts_with("22") || code == "23514" => {
                StoreError::Invalid(format!("the store refused a value: {message}"))
            }
            // No SQLSTATE: the host could not reach the database at all.
            None => StoreError::Unavailable(message),
            // Timeouts, lock timeouts, serialization failures, deadlocks,
            // connection loss, server shutdown: a retry may succeed.
            Some(code)
                if code.starts_with("08")
                    || code.starts_with("40")
                    || code.starts_with("53")
                    || code.starts_with("57")
                    || code == "55P03" =>
            {
                StoreError::Unavailable(format!("{code}: {message}"))
            }
            Some(code) => StoreError::Internal(format!("{code}: {message}")),
        };
        Self { error, fails_batch: true }
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
