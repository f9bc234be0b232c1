//! One event handler's consumer: its partitions handled side by side, each
//! in order, and the path of one event — parse, ledger, handler call,
//! retries (`delivery`), dead letter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, OwnedMessage};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::dead_letter::{self, DeadLetter};
use super::delivery::{Attempt, Delivery, Step};
use super::ledger;
use crate::config::EventConfig;
use crate::kafka::{GroupConsumer, Kafka, SharedProducer, topics};
use crate::plugins::event_handler::{Event, HandlerError};
use crate::plugins::{HandlerPlugin, PluginFailure, PluginSlot};
use crate::tasks::event::TaskEvent;
use crate::trace::{REQUEST_ID_HEADER, RequestTrace, TRACEPARENT_HEADER};

/// Events received for one partition and not yet handled, at most.
const PARTITION_BACKLOG: usize = 64;

pub struct HandlerRunner {
    /// Each event is handled by the version serving when it arrives.
    plugin: Arc<PluginSlot<HandlerPlugin>>,
    name: String,
    kafka: Kafka,
    consumer: GroupConsumer,
    producer: SharedProducer,
    pool: PgPool,
    max_attempts: u32,
    backoff: Duration,
}

impl HandlerRunner {
    pub fn new(
        plugin: Arc<PluginSlot<HandlerPlugin>>,
        kafka: Kafka,
        producer: SharedProducer,
        pool: PgPool,
        settings: &EventConfig,
    ) -> anyhow::Result<Self> {
        let name = plugin.identity().name;
        let group = kafka.group(&format!("handler.{name}"));
        let consumer = kafka.consumer(&group, topics::TASK_EVENTS)?;
        Ok(Self {
            plugin,
            name,
            kafka,
            consumer,
            producer,
            pool,
            max_attempts: settings.handler_max_attempts,
            backoff: Duration::from_millis(settings.handler_retry_backoff_ms),
        })
    }

    /// Consumes until `shutdown`, then commits the stored offsets.
    ///
    /// The partitions are handled side by side, each by a worker of its own
    /// taking its events in order (a task's events share a partition): one
    /// slow or retried event holds back its partition, not the handler.
    pub async fn run(self, shutdown: CancellationToken) {
        let handler = self.name.clone();
        tracing::info!(%handler, "event handler consuming");
        let runner = Arc::new(self);
        let workers = TaskTracker::new();
        let mut partitions: HashMap<i32, mpsc::Sender<OwnedMessage>> = HashMap::new();
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                message = runner.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => {
                    metrics::counter!("kafka_consumed_total", "consumer" => handler.clone()).increment(1);
                    message.detach()
                }
                Err(error) => {
                    tracing::warn!(%handler, %error, "cannot consume task events");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let worker = partitions.entry(message.partition()).or_insert_with(|| {
                let (sender, events) = mpsc::channel(PARTITION_BACKLOG);
                workers.spawn(runner.clone().work(events, shutdown.clone()));
                sender
            });
            // A full backlog holds the consumer back (bounded memory); a
            // worker that ended did so because of shutdown.
            if worker.send(message).await.is_err() {
                break;
            }
        }
        drop(partitions);
        workers.close();
        workers.wait().await;
        match Arc::try_unwrap(runner) {
            Ok(runner) => runner.consumer.close().await,
            Err(_) => {
                tracing::error!(%handler, "a partition worker outlived the runner; its offsets are not committed")
            }
        }
    }

    /// Handles one partition's events in order until `shutdown`, storing
    /// the offset of each handled one for the next commit.
    async fn work(self: Arc<Self>, mut events: mpsc::Receiver<OwnedMessage>, shutdown: CancellationToken) {
        while let Some(message) = events.recv().await {
            if shutdown.is_cancelled() || !self.process(&message, &shutdown).await {
                return;
            }
            // Fails for a partition taken away by a rebalance meanwhile: its
            // new owner handles the event again, and the ledger skips it.
            if let Err(error) = self.consumer.store_offset(message.topic(), message.partition(), message.offset()) {
                tracing::debug!(handler = %self.name, %error, "cannot store the offset of a handled event");
            }
        }
    }

    /// Handles or dead-letters one record; `false` when shutdown interrupted
    /// it (its offset must not be stored).
    async fn process(&self, message: &OwnedMessage, shutdown: &CancellationToken) -> bool {
        let headers = record_headers(message);
        let trace = RequestTrace {
            request_id: headers.get(REQUEST_ID_HEADER).cloned().unwrap_or_default(),
            traceparent: headers.get(TRACEPARENT_HEADER).cloned(),
        };
        let event = TaskEvent::parse(message.payload().unwrap_or_default());
        let span = tracing::info_span!(
            "event",
            handler = %self.name,
            event_id = event.as_ref().map(|e| e.id.to_string()).unwrap_or_default(),
            event_type = event.as_ref().map(|e| e.kind.as_str()).unwrap_or_default(),
            request_id = %trace.request_id,
            trace_id = %trace.trace_id(),
        );
        async {
            let outcome = match event {
                Ok(event) => self.deliver(&trace, &wit_event(&event), shutdown).await,
                Err(error) => Some(Err(DeadLetter {
                    kind: "malformed",
                    error: format!("the record is not a task event: {error}"),
                    attempts: 0,
                })),
            };
            match outcome {
                None => false,
                Some(Ok(())) => true,
                Some(Err(dead)) => {
                    dead_letter::send(&self.kafka, &self.producer, &self.name, message, headers, dead, shutdown).await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Calls the handler until it succeeds, fails permanently or runs out
    /// of attempts. `None` when shutdown interrupted the retries.
    async fn deliver(
        &self,
        trace: &RequestTrace,
        event: &Event,
        shutdown: &CancellationToken,
    ) -> Option<Result<(), DeadLetter>> {
        let mut delivery = Delivery::new(self.max_attempts, self.backoff);
        loop {
            let after = match delivery.after(self.attempt(trace, event, delivery.attempt()).await) {
                Step::Done => return Some(Ok(())),
                Step::DeadLetter(dead) => return Some(Err(dead)),
                Step::Retry { after, attempt, error } => {
                    tracing::info!(attempt, %error, retry_in_ms = after.as_millis(), "event handler failed; retrying");
                    after
                }
                // Holding the partition meanwhile: its order is kept.
                Step::Wait { after, error } => {
                    tracing::warn!(%error, retry_in_ms = after.as_millis(), "event handling waits for the database");
                    after
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(after) => {}
            }
        }
    }

    /// One attempt: skipped if the ledger has the event, else the handler
    /// called in a transaction that records it in the ledger.
    async fn attempt(&self, trace: &RequestTrace, event: &Event, attempt: u32) -> Attempt {
        match ledger::processed(&self.pool, &self.name, &event.id).await {
            Ok(true) => {
                tracing::debug!("event already processed; skipped");
                return Attempt::Handled;
            }
            Ok(false) => {}
            Err(error) => return Attempt::Infrastructure(format!("cannot read the processed-event ledger: {error}")),
        }
        let record = ledger::Record { handler: &self.name, event_id: &event.id };
        match self.plugin.current().handle(trace, event, attempt, record).await {
            Ok(Ok(())) => Attempt::Handled,
            Ok(Err(HandlerError::Permanent(error))) => Attempt::Permanent(error),
            Ok(Err(HandlerError::Retryable(error))) => Attempt::Failed(error),
            // An open circuit waits for a reload or its cool-down.
            Err(
                failure @ (PluginFailure::CommitFailed { .. }
                | PluginFailure::Unavailable { .. }
                | PluginFailure::CircuitOpen { .. }),
            ) => Attempt::Infrastructure(failure.to_string()),
            Err(failure) => Attempt::Failed(failure.to_string()),
        }
    }
}

/// The event as the `event-handler` world hands it over.
fn wit_event(event: &TaskEvent) -> Event {
    Event {
        id: event.id.to_string(),
        type_: event.kind.as_str().to_string(),
        source: event.source.clone(),
        subject: Some(event.subject.to_string()),
        time: event.time.timestamp_micros(),
        data: serde_json::to_string(&event.data).unwrap_or_default(),
    }
}

fn record_headers(message: &OwnedMessage) -> BTreeMap<String, String> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .filter_map(|header| Some((header.key.to_string(), String::from_utf8(header.value?.to_vec()).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}
