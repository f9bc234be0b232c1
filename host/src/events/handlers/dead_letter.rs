//! The dead-letter topic: an event a handler cannot process goes to
//! `task-events.dlq` as it was, with headers saying who gave up on it and
//! why (docs/events.md).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use crate::kafka::{self, Kafka, SharedProducer, topics};

/// Why an event went to the dead-letter topic.
#[derive(Debug, PartialEq)]
pub struct DeadLetter {
    /// `retryable` (attempts used up), `permanent` or `malformed`.
    pub kind: &'static str,
    pub error: String,
    pub attempts: u32,
}

impl DeadLetter {
    /// The original headers, plus the `dlq-*` ones.
    fn headers(
        self,
        handler: &str,
        message: &OwnedMessage,
        mut headers: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        headers.insert("dlq-handler".into(), handler.to_string());
        headers.insert("dlq-error".into(), self.error);
        headers.insert("dlq-error-kind".into(), self.kind.into());
        headers.insert("dlq-attempts".into(), self.attempts.to_string());
        headers.insert("dlq-original-topic".into(), message.topic().to_string());
        headers.insert("dlq-original-partition".into(), message.partition().to_string());
        headers.insert("dlq-original-offset".into(), message.offset().to_string());
        headers
    }
}

/// Produces `message` to the dead-letter topic, retrying until the broker
/// takes it; `false` when shutdown interrupted that.
pub async fn send(
    kafka: &Kafka,
    producer: &SharedProducer,
    handler: &str,
    message: &OwnedMessage,
    headers: BTreeMap<String, String>,
    dead: DeadLetter,
    shutdown: &CancellationToken,
) -> bool {
    tracing::warn!(kind = dead.kind, attempts = dead.attempts, error = %dead.error, "event dead-lettered");
    let headers = kafka::headers(&dead.headers(handler, message, headers));
    let topic = kafka.topic(topics::DEAD_LETTERS);
    loop {
        let mut record =
            FutureRecord::to(&topic).payload(message.payload().unwrap_or_default()).headers(headers.clone());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        let sent = tokio::select! {
            _ = shutdown.cancelled() => return false,
            sent = producer.send(record, Duration::from_secs(10)) => sent,
        };
        match sent {
            Ok(_) => {
                metrics::counter!("kafka_dead_lettered_total", "handler" => handler.to_string()).increment(1);
                return true;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot dead-letter an event; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
