//! Task events: CloudEvents written to the transactional outbox with the
//! change they announce, published to Kafka by the relay, and consumed by
//! event-handler plugins.
//!
//! - `task_event`: the CloudEvents envelope of a task change (docs/events.md).
//! - `outbox`: outbox records and how they are written, in the caller's
//!   transaction.
//! - `relay`: publishes the outbox to Kafka, safely on many replicas.
//! - `handlers`: runs each event-handler plugin as a Kafka consumer, with
//!   retries, a dead-letter topic and a processed-event ledger.

pub mod handlers;
pub mod outbox;
pub mod relay;
pub mod task_event;

pub use outbox::{OutboxRecord, OutboxWaker};
