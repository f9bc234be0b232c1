//! Task events on their way out and in: the relay publishes the outbox to
//! Kafka, and each event-handler plugin consumes `task-events` with
//! retries, a dead-letter topic and a processed-event ledger.
//!
//! - `relay`: publishes the outbox to Kafka, safely on many replicas.
//! - `handlers`: runs each event-handler plugin as a Kafka consumer.
//! - `live`: follows `task-events` for the browsers' live streams.

pub mod handlers;
pub mod live;
pub mod relay;
