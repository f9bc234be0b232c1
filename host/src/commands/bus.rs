//! Producing commands: acks=all from an idempotent producer, keyed by the
//! issuer so that one client's commands apply in the order it sent them.

use std::time::Duration;

use chrono::Utc;
use rdkafka::producer::FutureRecord;
use uuid::Uuid;

use super::{Command, CommandStatus, wire};
use crate::kafka::{self, Kafka, SharedProducer, topics};
use crate::tasks::{PreparedWrite, RequestContext};

#[derive(Clone)]
pub struct CommandBus {
    topic: String,
    producer: SharedProducer,
    status: CommandStatus,
    timeout: Duration,
}

/// The broker did not acknowledge the command in time. It may have reached
/// the broker all the same: see `CommandStatus::withdraw`.
#[derive(Debug, thiserror::Error)]
#[error("the command could not be queued: {reason}")]
pub struct NotQueued {
    pub command: Command,
    pub reason: String,
}

impl CommandBus {
    pub fn new(kafka: &Kafka, producer: SharedProducer, status: CommandStatus, timeout: Duration) -> Self {
        Self { topic: kafka.topic(topics::TASK_COMMANDS), producer, status, timeout }
    }

    /// Queues `write` and answers the command's id once the broker has it
    /// (acks=all): from then on it is applied even if this process dies.
    pub async fn submit(&self, ctx: &RequestContext, write: PreparedWrite) -> Result<Uuid, Box<NotQueued>> {
        let command =
            Command { id: Uuid::now_v7(), issuer: ctx.actor, trace: ctx.trace.clone(), issued_at: Utc::now(), write };
        let payload = wire::encode(&command);
        let key = command.issuer.user_id.to_string();
        let record =
            FutureRecord::to(&self.topic).key(&key).payload(&payload).headers(kafka::headers(&command.trace.headers()));
        if let Err(error) = self.producer.send(record, self.timeout).await {
            return Err(Box::new(NotQueued { command, reason: error.to_string() }));
        }
        metrics::counter!("kafka_produced_total", "topic" => topics::TASK_COMMANDS).increment(1);
        self.status.mark_pending(&command).await;
        Ok(command.id)
    }
}
