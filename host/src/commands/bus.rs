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

/// What became of a write offered as a command.
pub enum Submission {
    /// The broker has it; poll `/commands/{id}`.
    Queued(Uuid),
    /// The broker did not acknowledge it, and the command is withdrawn (a
    /// late delivery of it is skipped): the caller applies the write now.
    ApplyNow(PreparedWrite),
}

impl CommandBus {
    pub fn new(kafka: &Kafka, producer: SharedProducer, status: CommandStatus, timeout: Duration) -> Self {
        Self { topic: kafka.topic(topics::TASK_COMMANDS), producer, status, timeout }
    }

    /// Queues `write` once the broker has it (acks=all): from then on it is
    /// applied even if this process dies. When the broker does not
    /// acknowledge it — it may have reached the broker all the same — the
    /// command is withdrawn and handed back, unless the consumer applied it
    /// first. `Err` only when it can be neither queued nor withdrawn.
    pub async fn submit(&self, ctx: &RequestContext, write: PreparedWrite) -> Result<Submission, sqlx::Error> {
        let command =
            Command { id: Uuid::now_v7(), issuer: ctx.actor, trace: ctx.trace.clone(), issued_at: Utc::now(), write };
        let payload = wire::encode(&command);
        let key = command.issuer.user_id.to_string();
        let record =
            FutureRecord::to(&self.topic).key(&key).payload(&payload).headers(kafka::headers(&command.trace.headers()));
        if let Err(error) = self.producer.send(record, self.timeout).await {
            tracing::warn!(%error, command_id = %command.id, "the broker did not take a command; withdrawing it");
            return Ok(match self.status.withdraw(&command).await? {
                true => Submission::ApplyNow(command.write),
                // The broker had it, and it has been applied already.
                false => Submission::Queued(command.id),
            });
        }
        metrics::counter!("kafka_produced_total", "topic" => topics::TASK_COMMANDS).increment(1);
        self.status.mark_pending(&command).await;
        Ok(Submission::Queued(command.id))
    }
}
