//! Runs each event-handler plugin as a Kafka consumer of `task-events`, in
//! its own consumer group.
//!
//! Delivery is at-least-once: an event's offset is stored only once the
//! handler succeeded or the event was dead-lettered. A retryable error (or
//! a trap) is retried with exponential backoff up to the configured
//! attempts (database outages wait without using up attempts); then, or at
//! once for a permanent error, the event goes to
//! `task-events.dlq` with headers saying why. The processed-event ledger
//! (`processed_events`) commits in the handler's own transaction, so a
//! redelivered event is recognised and skipped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::EventConfig;
use crate::kafka::{self, Kafka, LagReporter, topics};
use crate::plugins::event_handler::{Event, HandlerError};
use crate::plugins::{BeforeCommit, HandlerPlugin, HandlerRunners, PluginFailure, PluginSlot};
use crate::trace::{REQUEST_ID_HEADER, RequestTrace, TRACEPARENT_HEADER};

/// Events received for one partition and not yet handled, at most.
const PARTITION_BACKLOG: usize = 64;

/// Longest wait between checks of a database that is down.
const MAX_OUTAGE_BACKOFF: Duration = Duration::from_secs(5);

/// Runs one `HandlerRunner` per event handler, each stoppable on its own
/// (a handler removed by a reload) and all stopped at shutdown.
pub struct HandlerSupervisor {
    kafka: Kafka,
    producer: FutureProducer,
    pool: PgPool,
    settings: EventConfig,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl HandlerSupervisor {
    pub fn new(
        kafka: Kafka,
        producer: FutureProducer,
        pool: PgPool,
        settings: EventConfig,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self { kafka, producer, pool, settings, tasks, shutdown, running: Mutex::default() }
    }
}

impl HandlerRunners for HandlerSupervisor {
    /// Creates the topics the handler is granted, then runs it.
    fn start(&self, handler: Arc<PluginSlot<HandlerPlugin>>) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let name = handler.identity().name;
            let granted = handler.current().granted_topics().to_vec();
            let granted: Vec<&str> = granted.iter().map(String::as_str).collect();
            self.kafka
                .ensure_topics(&granted)
                .await
                .with_context(|| format!("cannot create the topics event handler `{name}` is granted"))?;
            let runner = HandlerRunner::new(
                handler,
                self.kafka.clone(),
                self.producer.clone(),
                self.pool.clone(),
                &self.settings,
            )?;
            let stop = self.shutdown.child_token();
            self.running.lock().expect("poisoned").insert(name, stop.clone());
            self.tasks.spawn(runner.run(stop));
            Ok(())
        })
    }

    /// The runner finishes the event in hand and commits its offsets.
    fn stop(&self, name: &str) {
        if let Some(stop) = self.running.lock().expect("poisoned").remove(name) {
            stop.cancel();
        }
    }
}

pub struct HandlerRunner {
    /// Each event is handled by the version serving when it arrives.
    plugin: Arc<PluginSlot<HandlerPlugin>>,
    name: String,
    kafka: Kafka,
    consumer: StreamConsumer<LagReporter>,
    producer: FutureProducer,
    pool: PgPool,
    max_attempts: u32,
    backoff: Duration,
}

/// Why an event went to the dead-letter topic.
struct DeadLetter {
    kind: &'static str,
    error: String,
    attempts: u32,
}

impl HandlerRunner {
    pub fn new(
        plugin: Arc<PluginSlot<HandlerPlugin>>,
        kafka: Kafka,
        producer: FutureProducer,
        pool: PgPool,
        settings: &EventConfig,
    ) -> anyhow::Result<Self> {
        let name = plugin.identity().name;
        let group = kafka.group(&format!("handler.{name}"));
        let consumer = kafka.consumer(&group)?;
        consumer.subscribe(&[&kafka.topic(topics::TASK_EVENTS)])?;
        Ok(Self {
            plugin,
            name,
            kafka,
            consumer,
            producer,
            pool,
            max_attempts: settings.handler_max_attempts.max(1),
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
        if let Err(error) = runner.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%handler, %error, "no offsets committed at shutdown");
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
        let event = parse_event(message.payload().unwrap_or_default());
        let span = tracing::info_span!(
            "event",
            handler = %self.name,
            event_id = event.as_ref().map(|e| e.id.as_str()).unwrap_or_default(),
            event_type = event.as_ref().map(|e| e.type_.as_str()).unwrap_or_default(),
            request_id = %trace.request_id,
            trace_id = %trace.trace_id(),
        );
        async {
            let outcome = match event {
                Ok(event) => self.deliver(&trace, &event, shutdown).await,
                Err(reason) => Some(Err(DeadLetter { kind: "malformed", error: reason, attempts: 0 })),
            };
            match outcome {
                None => false,
                Some(Ok(())) => true,
                Some(Err(dead)) => self.dead_letter(message, headers, dead, shutdown).await,
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
        let handler = self.name.as_str();
        let mut last_error = String::new();
        let mut attempt = 1;
        let mut outage = Duration::from_millis(100);
        loop {
            // Infrastructure trouble (the ledger unreadable, the commit
            // refused) says nothing about the handler: wait for the database
            // without using up an attempt, holding the partition meanwhile.
            let infrastructure = match self.already_processed(&event.id).await {
                Ok(true) => {
                    tracing::debug!("event already processed; skipped");
                    return Some(Ok(()));
                }
                Ok(false) => {
                    let ledger = Ledger { handler, event_id: &event.id };
                    match self.plugin.current().handle(trace, event, attempt, ledger).await {
                        Ok(Ok(())) => return Some(Ok(())),
                        Ok(Err(HandlerError::Permanent(error))) => {
                            return Some(Err(DeadLetter { kind: "permanent", error, attempts: attempt }));
                        }
                        Ok(Err(HandlerError::Retryable(error))) => {
                            last_error = error;
                            None
                        }
                        // An open circuit waits for a reload or its cool-down.
                        Err(failure @ (PluginFailure::CommitFailed { .. } | PluginFailure::CircuitOpen { .. })) => {
                            Some(failure.to_string())
                        }
                        Err(failure) => {
                            last_error = failure.to_string();
                            None
                        }
                    }
                }
                Err(error) => Some(format!("cannot read the processed-event ledger: {error}")),
            };
            let delay = match infrastructure {
                Some(error) => {
                    tracing::warn!(%error, retry_in_ms = outage.as_millis(), "event handling waits for the database");
                    let delay = outage;
                    outage = (outage * 2).min(MAX_OUTAGE_BACKOFF);
                    delay
                }
                None if attempt >= self.max_attempts => break,
                None => {
                    let delay = self.backoff * 2u32.saturating_pow(attempt - 1);
                    tracing::info!(attempt, error = %last_error, retry_in_ms = delay.as_millis(), "event handler failed; retrying");
                    attempt += 1;
                    delay
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        Some(Err(DeadLetter { kind: "retryable", error: last_error, attempts: self.max_attempts }))
    }

    async fn already_processed(&self, event_id: &str) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM processed_events WHERE handler = $1 AND event_id = $2)")
            .bind(&self.name)
            .bind(event_id)
            .fetch_one(&self.pool)
            .await
    }

    /// Produces the record to the dead-letter topic, retrying until the
    /// broker takes it; `false` when shutdown interrupted that.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        mut headers: BTreeMap<String, String>,
        dead: DeadLetter,
        shutdown: &CancellationToken,
    ) -> bool {
        tracing::warn!(kind = dead.kind, attempts = dead.attempts, error = %dead.error, "event dead-lettered");
        headers.insert("dlq-handler".into(), self.name.clone());
        headers.insert("dlq-error".into(), dead.error);
        headers.insert("dlq-error-kind".into(), dead.kind.into());
        headers.insert("dlq-attempts".into(), dead.attempts.to_string());
        headers.insert("dlq-original-topic".into(), message.topic().to_string());
        headers.insert("dlq-original-partition".into(), message.partition().to_string());
        headers.insert("dlq-original-offset".into(), message.offset().to_string());
        let topic = self.kafka.topic(topics::DEAD_LETTERS);
        loop {
            let mut record = FutureRecord::to(&topic).payload(message.payload().unwrap_or_default());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            let record = record.headers(kafka::headers(&headers));
            let sent = tokio::select! {
                _ = shutdown.cancelled() => return false,
                sent = self.producer.send(record, Duration::from_secs(10)) => sent,
            };
            match sent {
                Ok(_) => {
                    let handler = self.name.clone();
                    metrics::counter!("kafka_dead_lettered_total", "handler" => handler).increment(1);
                    return true;
                }
                Err((error, _)) => {
                    tracing::warn!(%error, "cannot dead-letter an event; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Records in the handler's transaction that it processed the event.
struct Ledger<'a> {
    handler: &'a str,
    event_id: &'a str,
}

impl BeforeCommit<()> for Ledger<'_> {
    async fn run(self, _: &(), connection: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO processed_events (handler, event_id) VALUES ($1, $2)")
            .bind(self.handler)
            .bind(self.event_id)
            .execute(connection)
            .await?;
        Ok(())
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

/// The parts of a CloudEvents envelope handlers receive.
#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    source: String,
    #[serde(default)]
    subject: Option<String>,
    time: DateTime<Utc>,
    #[serde(default)]
    data: serde_json::Value,
}

fn parse_event(payload: &[u8]) -> Result<Event, String> {
    let envelope: Envelope = serde_json::from_slice(payload)
        .map_err(|error| format!("the record is not a CloudEvents envelope: {error}"))?;
    Ok(Event {
        id: envelope.id,
        type_: envelope.kind,
        source: envelope.source,
        subject: envelope.subject,
        time: envelope.time.timestamp_micros(),
        data: envelope.data.to_string(),
    })
}
