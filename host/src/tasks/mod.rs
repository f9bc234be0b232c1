//! Tasks: the model (plain types and validation), the vocabulary of writes,
//! the events announcing changes, the typed client of the storage plugin,
//! group commit of concurrent writes, the cache, and the service that
//! applies roles and scopes.

mod cache;
mod cursor;
mod error;
pub mod event;
mod group_commit;
pub mod model;
mod service;
mod store;
mod wit;
pub mod write;

pub use cache::{CacheOutcome, TaskCache};
pub use cursor::CursorSeal;
pub use error::{BatchFailure, TaskError};
pub use group_commit::{Group, GroupCommit, gather, together_else_each_alone};
pub use service::{ListQuery, RequestContext, TaskService};
pub use store::{Call, TaskStore, Traces};
pub use write::{BatchOutcome, PreparedWrite, ScopedOperation, WriteOutcome};
