//! Tasks: the model (plain types and validation), the typed client of the
//! storage plugin, group commit of concurrent writes, and the service that
//! applies roles and scopes.

mod cache;
pub mod cursor;
mod error;
mod group_commit;
pub mod model;
mod service;
mod store;

pub use cache::{CacheOutcome, TaskCache};
pub use error::{BatchFailure, TaskError};
pub use group_commit::GroupCommit;
pub use service::{BatchOutcome, ListQuery, PreparedWrite, RequestContext, TaskService, WriteOutcome};
pub use store::{Call, PageRequest, ScopedOperation, TaskStore, Traces};
