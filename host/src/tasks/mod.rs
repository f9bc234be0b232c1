//! Tasks: the model (plain types and validation), the typed client of the
//! storage plugin, and the service that applies roles and scopes.

mod cache;
pub mod cursor;
mod error;
pub mod model;
mod service;
mod store;

pub use cache::{CacheOutcome, TaskCache};
pub use error::{BatchFailure, TaskError};
pub use service::{BatchOutcome, ListQuery, PreparedWrite, RequestContext, TaskService, WriteOutcome};
pub use store::{Call, PageRequest, ScopedOperation, TaskStore, Traces};
