//! One attempt at events by a handler, guarded by the ledger: the events
//! the ledger has are skipped, the others handed to the handler, one call
//! each, in one transaction that records them in the ledger and commits
//! only if every call succeeded. The runner's batches and an admin's replay
//! of a dead letter both go this way, so an event is applied once whoever
//! hands it over.

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use super::delivery::Attempt;
use super::ledger;
use crate::plugins::event_handler::{Event, HandlerError};
use crate::plugins::{HandlerPlugin, PluginFailure};
use crate::tasks::event::TaskEvent;
use crate::trace::RequestTrace;

/// An event as handed to the handler.
pub(super) struct Handed<'a> {
    pub trace: &'a RequestTrace,
    pub event: &'a Event,
    pub span: &'a Span,
}

/// How an attempt at a batch ended short of committing.
pub(super) enum Short {
    /// The event at position `at` came to `outcome`.
    Event {
        at: usize,
        outcome: Attempt,
    },
    /// The batch as a whole: the ledger unreadable, the commit refused.
    Batch(Attempt),
    Interrupted,
}

/// The handler `name` as the version `plugin`, its ledger in `pool`.
pub(super) struct Handler<'a> {
    pub name: &'a str,
    pub plugin: Arc<HandlerPlugin>,
    pub pool: &'a PgPool,
}

impl Handler<'_> {
    /// One attempt (number `attempt`) at `events`, in order (see the
    /// module's doc); how many the handler handled now (the others the
    /// ledger had).
    pub async fn attempt(
        &self,
        events: &[Handed<'_>],
        attempt: u32,
        shutdown: &CancellationToken,
    ) -> Result<usize, Short> {
        let ids: Vec<&str> = events.iter().map(|handed| handed.event.id.as_str()).collect();
        let processed = ledger::processed(self.pool, self.name, &ids).await.map_err(|error| {
            Short::Batch(Attempt::Infrastructure(format!("cannot read the processed-event ledger: {error}")))
        })?;
        let mut batch = self.plugin.begin_batch();
        let mut handled = Vec::with_capacity(events.len());
        for (at, Handed { trace, event, span }) in events.iter().enumerate() {
            if processed.contains(&event.id) {
                span.in_scope(|| tracing::debug!("event already processed; skipped"));
                continue;
            }
            if shutdown.is_cancelled() {
                batch.rollback().await;
                return Err(Short::Interrupted);
            }
            match outcome(self.plugin.handle(&mut batch, trace, event, attempt).instrument((*span).clone()).await) {
                Attempt::Handled => handled.push(event.id.as_str()),
                failed => {
                    batch.rollback().await;
                    return Err(Short::Event { at, outcome: failed });
                }
            }
        }
        if handled.is_empty() {
            batch.rollback().await;
            return Ok(0);
        }
        let committed = handled.len();
        batch.commit(ledger::Record { handler: self.name, event_ids: handled }).await.map_err(|error| {
            Short::Batch(Attempt::Infrastructure(format!("the handler's transaction did not commit: {error}")))
        })?;
        metrics::histogram!("event_handler_batch_size", "handler" => self.name.to_string()).record(committed as f64);
        Ok(committed)
    }
}

/// What one call came to, as the retry rule sees it.
fn outcome(answer: Result<Result<(), HandlerError>, PluginFailure>) -> Attempt {
    match answer {
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

/// The event as the `event-handler` world hands it over.
pub(super) fn wit_event(event: &TaskEvent) -> Event {
    Event {
        id: event.id.to_string(),
        type_: event.kind.as_str().to_string(),
        source: event.source.clone(),
        subject: Some(event.subject.to_string()),
        time: event.time.timestamp_micros(),
        data: serde_json::to_string(&event.data).unwrap_or_default(),
    }
}
