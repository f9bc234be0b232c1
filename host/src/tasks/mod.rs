//! Tasks: the model (plain types and validation), the typed client of the
//! storage plugin, and the service that applies roles and scopes.

pub mod cursor;
mod error;
pub mod model;
mod service;
mod store;

pub use error::{BatchFailure, TaskError};
pub use service::{BatchOutcome, ListQuery, PreparedWrite, RequestContext, TaskService, WriteOutcome};
pub use store::{Call, ScopedOperation, TaskStore, Traces};
