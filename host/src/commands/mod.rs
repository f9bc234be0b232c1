//! Async writes (`Prefer: respond-async`): the API validates a write,
//! produces it as a command to `task-commands` and answers 202; a consumer
//! applies commands in batches, one transaction per batch, through the
//! storage plugin's `apply-batch`.
//!
//! - `wire`: the versioned format of a command on `task-commands`.
//! - `bus`: producing commands.
//! - `consumer`: applying them in batches, exactly once per command.
//! - `status`: what `GET /commands/{id}` answers.

mod bus;
mod consumer;
mod status;
pub mod wire;

pub use bus::{CommandBus, Submission};
pub use consumer::CommandConsumer;
pub use status::{CommandState, CommandStatus};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::auth::Actor;
use crate::tasks::PreparedWrite;
use crate::trace::RequestTrace;

/// A write to apply later (on `task-commands` as `wire` says).
#[derive(Debug, Clone)]
pub struct Command {
    pub id: Uuid,
    pub issuer: Actor,
    pub trace: RequestTrace,
    pub issued_at: DateTime<Utc>,
    pub write: PreparedWrite,
}
