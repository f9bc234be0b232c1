//! Runs each event-handler plugin as a Kafka consumer of `task-events`, in
//! its own consumer group.
//!
//! Delivery is at-least-once: an event's offset is stored only once the
//! handler succeeded or the event was dead-lettered. A retryable error (or
//! a trap) is retried with exponential backoff up to the configured
//! attempts (infrastructure trouble waits without using up attempts); then,
//! or at once for a permanent error, the event is dead-lettered: recorded
//! for admins to list and replay, and put on `task-events.dlq` with headers
//! saying why. The processed-event ledger commits in the handler's own
//! transaction, so a redelivered or replayed event is recognised and
//! skipped.
//!
//! - `supervisor` (here): one stoppable runner per handler.
//! - `runner`: the consumer, its partitions side by side, one event's path.
//! - `attempt`: one ledger-guarded attempt at events (runner and replay).
//! - `delivery`: whether an attempt's outcome retries, waits or gives up.
//! - `ledger`: the processed-event ledger.
//! - `dead_letter`: recording a dead letter (table + topic) and its view.
//! - `replay`: listing and replaying dead letters.

mod attempt;
mod dead_letter;
mod delivery;
mod ledger;
mod replay;
mod runner;

pub use dead_letter::{DeadLetterRecorder, DeadLetterView, OriginalPosition};
pub use replay::{
    BulkReplay, DeadLetterPage, DeadLetterQuery, DeadLetters, ReplayError, ReplayOutcome, ReplayResult, ReplayStatus,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::background::Background;
use crate::config::EventConfig;
use crate::kafka::Kafka;
use crate::plugins::{HandlerPlugin, HandlerRunners, PluginSlot};

use runner::HandlerRunner;

/// Runs one `HandlerRunner` per event handler, each stoppable on its own
/// (a handler removed by a reload) and all stopped at shutdown.
pub struct HandlerSupervisor {
    kafka: Kafka,
    dead_letters: DeadLetterRecorder,
    pool: PgPool,
    settings: EventConfig,
    background: Background,
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl HandlerSupervisor {
    pub fn new(
        kafka: Kafka,
        dead_letters: DeadLetterRecorder,
        pool: PgPool,
        settings: EventConfig,
        background: Background,
    ) -> Self {
        Self { kafka, dead_letters, pool, settings, background, running: Mutex::default() }
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
                self.dead_letters.clone(),
                self.pool.clone(),
                &self.settings,
            )?;
            let stop = self.background.shutdown().child_token();
            self.running.lock().expect("poisoned").insert(name, stop.clone());
            self.background.spawn(runner.run(stop));
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
