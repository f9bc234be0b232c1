//! One event handler's consumer: its partitions handled side by side, each
//! in order and in batches, and the path of one event alone — ledger,
//! handler call, retries (`delivery`), dead letter.
//!
//! A partition's worker takes the events that are ready (up to
//! `HANDLER_BATCH_MAX`, lingering `HANDLER_BATCH_LINGER_MS` for more) and
//! hands them to the handler together: one ledger look-up, one call per
//! event in a fresh instance, one transaction with one multi-row ledger
//! insert, one commit, one offset store. Should an event of the batch fail,
//! nothing of it commits: the events before it are handled again as a
//! batch, then it alone — retried or dead-lettered as a single event always
//! is, going on from the outcome it had in the batch, so it is called no
//! more often than alone — then the events after it as a batch. Should the
//! batch fail as a whole (the ledger unreadable, the commit refused), each
//! of its events runs alone, in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::OwnedMessage;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

use super::attempt::{Handed, Handler, Short, wit_event};
use super::dead_letter::{DeadLetter, DeadLetterRecorder};
use super::delivery::{Attempt, Delivery, Step};
use crate::config::EventConfig;
use crate::kafka::{self, GroupConsumer, Kafka, topics};
use crate::plugins::event_handler::Event;
use crate::plugins::{HandlerPlugin, PluginSlot};
use crate::tasks::event::TaskEvent;
use crate::tasks::gather;
use crate::trace::{REQUEST_ID_HEADER, RequestTrace, TRACEPARENT_HEADER};

/// Events received for one partition and not yet handled, at least.
const PARTITION_BACKLOG: usize = 64;

pub struct HandlerRunner {
    /// Each batch is handled by the version serving when it begins.
    plugin: Arc<PluginSlot<HandlerPlugin>>,
    name: String,
    consumer: GroupConsumer,
    dead_letters: DeadLetterRecorder,
    pool: PgPool,
    max_attempts: u32,
    backoff: Duration,
    batch_max: usize,
    linger: Duration,
}

impl HandlerRunner {
    pub fn new(
        plugin: Arc<PluginSlot<HandlerPlugin>>,
        kafka: Kafka,
        dead_letters: DeadLetterRecorder,
        pool: PgPool,
        settings: &EventConfig,
    ) -> anyhow::Result<Self> {
        let name = plugin.identity().name;
        let group = kafka.group(&format!("handler.{name}"));
        let consumer = kafka.consumer(&group, topics::TASK_EVENTS)?;
        Ok(Self {
            plugin,
            name,
            consumer,
            dead_letters,
            pool,
            max_attempts: settings.handler_max_attempts,
            backoff: Duration::from_millis(settings.handler_retry_backoff_ms),
            batch_max: settings.handler_batch_max.max(1),
            linger: Duration::from_millis(settings.handler_batch_linger_ms),
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
        let backlog = PARTITION_BACKLOG.max(self.batch_max);
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
                let (sender, events) = mpsc::channel(backlog);
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

    /// Handles one partition's events in order, in batches, until
    /// `shutdown`, storing the offset of the handled ones for the next
    /// commit.
    async fn work(self: Arc<Self>, mut events: mpsc::Receiver<OwnedMessage>, shutdown: CancellationToken) {
        while let Some(first) = events.recv().await {
            let mut more = futures::stream::poll_fn(|context| events.poll_recv(context));
            let batch = gather(first, &mut more, self.batch_size(), self.linger).await;
            if shutdown.is_cancelled() {
                return;
            }
            let batch = batch.into_iter().map(|message| Received::new(message, &self.name)).collect();
            if self.handle(batch, &shutdown).await.is_err() {
                return;
            }
        }
    }

    /// Handles `batch` (in order) together, else splits it at the event
    /// that failed (see the module's doc), storing the offsets of what was
    /// handled.
    async fn handle(&self, mut batch: Vec<Received>, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        if batch.len() == 1 {
            return self.alone(batch.remove(0), shutdown).await;
        }
        let Some(events) = batch.iter().map(Received::handed).collect::<Option<Vec<_>>>() else {
            // A malformed record is dead-lettered alone.
            let at = batch.iter().position(|received| received.event.is_err()).expect("one is malformed");
            return self.split(batch, at, None, shutdown).await;
        };
        let tried = self.handler().attempt(&events, 1, shutdown).await;
        drop(events);
        match tried {
            Ok(_) => {
                self.store_offset(&batch.last().expect("a batch has events").message);
                Ok(())
            }
            Err(Short::Event { at, outcome }) => self.split(batch, at, Some(outcome), shutdown).await,
            Err(Short::Batch(outcome)) => {
                tracing::warn!(handler = %self.name, ?outcome, "a batch of events failed; handling each alone");
                for received in batch {
                    self.alone(received, shutdown).await?;
                }
                Ok(())
            }
            Err(Short::Interrupted) => Err(Interrupted),
        }
    }

    /// The events before `at` as a batch, the one at `at` alone (going on
    /// from `outcome`), the events after it as a batch.
    async fn split(
        &self,
        mut batch: Vec<Received>,
        at: usize,
        outcome: Option<Attempt>,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let after = batch.split_off(at + 1);
        let mut failed = batch.pop().expect("the event at `at`");
        failed.first = outcome;
        if !batch.is_empty() {
            Box::pin(self.handle(batch, shutdown)).await?;
        }
        self.alone(failed, shutdown).await?;
        match after.is_empty() {
            true => Ok(()),
            false => Box::pin(self.handle(after, shutdown)).await,
        }
    }

    /// The handler as its serving version, for one attempt.
    fn handler(&self) -> Handler<'_> {
        Handler { name: &self.name, plugin: self.plugin.current(), pool: &self.pool }
    }

    fn batch_size(&self) -> usize {
        match self.plugin.current().batches_events() {
            true => self.batch_max,
            false => 1,
        }
    }

    /// Handles or dead-letters one record alone, then stores its offset.
    async fn alone(&self, received: Received, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        if shutdown.is_cancelled() {
            return Err(Interrupted);
        }
        let Received { message, headers, trace, span, event, first } = received;
        async {
            let outcome = match &event {
                Ok(event) => self.deliver(Handed { trace: &trace, event, span: &span }, first, shutdown).await,
                Err(error) => Some(Err(DeadLetter { kind: "malformed", error: error.clone(), attempts: 0 })),
            };
            let handled = match outcome {
                None => false,
                Some(Ok(())) => true,
                Some(Err(dead)) => {
                    let event = event.as_ref().ok();
                    self.dead_letters.record(&self.name, &message, headers, event, dead, shutdown).await
                }
            };
            if !handled {
                return Err(Interrupted);
            }
            self.store_offset(&message);
            Ok(())
        }
        .instrument(span.clone())
        .await
    }

    /// Calls the handler until it succeeds, fails permanently or runs out
    /// of attempts, going on from `first` when the event had an attempt in
    /// a batch already. `None` when shutdown interrupted the retries.
    async fn deliver(
        &self,
        event: Handed<'_>,
        mut first: Option<Attempt>,
        shutdown: &CancellationToken,
    ) -> Option<Result<(), DeadLetter>> {
        let mut delivery = Delivery::new(self.max_attempts, self.backoff);
        loop {
            let outcome = match first.take() {
                Some(outcome) => outcome,
                None => self.attempt_alone(&event, delivery.attempt(), shutdown).await,
            };
            let after = match delivery.after(outcome) {
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

    async fn attempt_alone(&self, event: &Handed<'_>, attempt: u32, shutdown: &CancellationToken) -> Attempt {
        match self.handler().attempt(std::slice::from_ref(event), attempt, shutdown).await {
            Ok(_) => Attempt::Handled,
            Err(Short::Event { outcome, .. } | Short::Batch(outcome)) => outcome,
            Err(Short::Interrupted) => Attempt::Infrastructure("the server is shutting down".into()),
        }
    }

    /// Fails for a partition taken away by a rebalance meanwhile: its new
    /// owner handles the event again, and the ledger skips it.
    fn store_offset(&self, message: &OwnedMessage) {
        if let Err(error) = self.consumer.store_offset(message.topic(), message.partition(), message.offset()) {
            tracing::debug!(handler = %self.name, %error, "cannot store the offset of a handled event");
        }
    }
}

/// A record of the partition, read once: its headers, the trace it
/// carries, its span, and the event it holds (or why it holds none).
struct Received {
    message: OwnedMessage,
    headers: BTreeMap<String, String>,
    trace: RequestTrace,
    span: Span,
    event: Result<Event, String>,
    /// Its outcome in a batch that failed on it: its first attempt.
    first: Option<Attempt>,
}

impl Received {
    fn new(message: OwnedMessage, handler: &str) -> Self {
        let headers = kafka::record_headers(&message);
        let trace = RequestTrace {
            request_id: headers.get(REQUEST_ID_HEADER).cloned().unwrap_or_default(),
            traceparent: headers.get(TRACEPARENT_HEADER).cloned(),
        };
        let event = TaskEvent::parse(message.payload().unwrap_or_default());
        let span = tracing::info_span!(
            "event",
            handler = %handler,
            event_id = event.as_ref().map(|e| e.id.to_string()).unwrap_or_default(),
            event_type = event.as_ref().map(|e| e.kind.as_str()).unwrap_or_default(),
            request_id = %trace.request_id,
            trace_id = %trace.trace_id(),
        );
        let event =
            event.map(|event| wit_event(&event)).map_err(|error| format!("the record is not a task event: {error}"));
        Self { message, headers, trace, span, event, first: None }
    }

    fn handed(&self) -> Option<Handed<'_>> {
        let event = self.event.as_ref().ok()?;
        Some(Handed { trace: &self.trace, event, span: &self.span })
    }
}

/// Shutdown stopped the partition: the offsets of what it had not handled
/// are not stored.
#[derive(Debug)]
struct Interrupted;
