//! Applying commands in batches: up to `COMMAND_BATCH_MAX` commands, or
//! what arrived within `COMMAND_BATCH_LINGER_MS` of the first, in ONE
//! transaction through the storage plugin's `apply-batch`. So the busier
//! the API, the fewer transactions per write.
//!
//! Exactly once per command: its outcome row (`command_results`) commits
//! with its changes, offsets are stored only after that commit, and a
//! command that already has an outcome (redelivered after a crash) is
//! skipped.
//!
//! One failing command must not sink the others: when the batch fails on a
//! command's own error, each command is applied again on its own, and the
//! failing ones get a `failed` outcome. Failures of the infrastructure
//! (database down) retry the whole batch with backoff — commands are never
//! dropped.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, OwnedMessage};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::types::Json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Command, wire};
use crate::config::CommandConfig;
use crate::db::HostConnection;
use crate::kafka::{GroupConsumer, Kafka, topics};
use crate::plugins::{BeforeCommit, PluginFailure};
use crate::problem::Problem;
use crate::tasks::model::TaskChange;
use crate::tasks::{
    Call, Group, PreparedWrite, ScopedOperation, TaskError, TaskStore, Traces, gather, together_else_each_alone,
};
use crate::trace::RequestTrace;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct CommandConsumer {
    consumer: GroupConsumer,
    store: TaskStore,
    pool: PgPool,
    batch_max: usize,
    linger: Duration,
}

impl CommandConsumer {
    pub fn new(kafka: &Kafka, store: TaskStore, pool: PgPool, settings: &CommandConfig) -> anyhow::Result<Self> {
        let consumer = kafka.consumer(&kafka.group("commands"), topics::TASK_COMMANDS)?;
        Ok(Self {
            consumer,
            store,
            pool,
            batch_max: settings.command_batch_max.max(1),
            linger: Duration::from_millis(settings.command_batch_linger_ms),
        })
    }

    /// Applies batches until `shutdown`, then commits the stored offsets.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = self.next_batch() => batch,
            };
            metrics::counter!("kafka_consumed_total", "consumer" => "commands").increment(batch.len() as u64);
            let mut commands: Vec<Command> = batch.iter().filter_map(parse_command).collect();
            // A record produced twice must not collide with itself on its
            // result row and stall the batch forever.
            let mut seen = std::collections::HashSet::new();
            commands.retain(|command| seen.insert(command.id));
            let mut backoff = Duration::from_millis(100);
            loop {
                match self.apply(&commands).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, commands = commands.len(), retry_in_ms = backoff.as_millis(), "cannot apply commands; retrying");
                        tokio::select! {
                            // Offsets stay unstored: the batch is redelivered.
                            _ = shutdown.cancelled() => return self.close().await,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            for message in &batch {
                // librdkafka stores `offset + 1`, the next record to read.
                if let Err(error) = self.consumer.store_offset(message.topic(), message.partition(), message.offset()) {
                    tracing::warn!(%error, "cannot store a command offset");
                }
            }
        }
        self.close().await;
    }

    /// Commits the stored offsets and leaves the group.
    async fn close(self) {
        self.consumer.close().await;
    }

    /// The first record to arrive, and whatever follows within the linger
    /// time, up to the batch size.
    async fn next_batch(&self) -> Vec<OwnedMessage> {
        let first = loop {
            match self.consumer.recv().await {
                Ok(message) => break message.detach(),
                Err(error) => {
                    tracing::warn!(%error, "cannot consume commands");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        // An error in between is left to the next batch's first `recv`.
        let mut more = self.consumer.stream().filter_map(detached);
        gather(first, &mut more, self.batch_max, self.linger).await
    }

    /// Applies the commands without an outcome yet. `Err` only for
    /// failures worth retrying the batch for.
    async fn apply(&self, commands: &[Command]) -> Result<(), TaskError> {
        let ids: Vec<Uuid> = commands.iter().map(|command| command.id).collect();
        let finished: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM command_results WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .map_err(|error| TaskError::Unavailable(error.to_string()))?;
        let pending: Vec<&Command> = commands.iter().filter(|command| !finished.contains(&command.id)).collect();
        if pending.is_empty() {
            return Ok(());
        }
        together_else_each_alone(&Commands(self), pending).await
    }

    async fn apply_together(&self, commands: &[&Command]) -> Result<(), TaskError> {
        let mut operations: Vec<ScopedOperation> = Vec::new();
        let mut traces: Vec<RequestTrace> = Vec::new();
        for command in commands {
            for operation in command.write.operations() {
                operations.push(operation.clone());
                traces.push(command.trace.clone());
            }
        }
        let batch_trace = RequestTrace { request_id: format!("command-batch-{}", Uuid::now_v7()), traceparent: None };
        let call = Call { trace: &batch_trace, now: Utc::now() };
        let results = RecordResults { commands };
        self.store.apply_all(&call, operations, Traces::PerOperation(&traces), results).await?;
        tracing::debug!(commands = commands.len(), "commands applied");
        Ok(())
    }

    /// Applies `command` in a transaction of its own, recording its
    /// failure when it fails on its own merits.
    async fn apply_alone(&self, command: &Command) -> Result<(), TaskError> {
        match self.apply_together(&[command]).await {
            Ok(()) => Ok(()),
            Err(error) if is_transient(&error) => Err(error),
            Err(error) => self.record_failure(command, error).await,
        }
    }

    /// Records that `command` failed with `error`, as the problem the
    /// synchronous request would have answered.
    async fn record_failure(&self, command: &Command, error: TaskError) -> Result<(), TaskError> {
        // A single write ran as a batch of one: report its own error, as
        // the synchronous request would have.
        let error = match (&command.write, error) {
            (PreparedWrite::Single { .. }, TaskError::BatchFailed(mut failures)) if failures.len() == 1 => {
                failures.remove(0).error
            }
            (_, error) => error,
        };
        tracing::info!(command_id = %command.id, %error, "command failed");
        let problem = serde_json::to_value(Problem::from(error)).unwrap_or(Value::Null);
        sqlx::query(
            "INSERT INTO command_results (id, issuer_id, status, result, request_id) \
             VALUES ($1, $2, 'failed', $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(command.id)
        .bind(command.issuer.user_id)
        .bind(Json(problem))
        .bind(&command.trace.request_id)
        .execute(&self.pool)
        .await
        .map_err(|error| TaskError::Unavailable(error.to_string()))?;
        Ok(())
    }
}

/// A batch of commands from many requests.
struct Commands<'a>(&'a CommandConsumer);

impl<'a> Group for Commands<'a> {
    type Member = &'a Command;
    type Error = TaskError;

    async fn together(&self, commands: Vec<&'a Command>) -> Result<(), (Vec<&'a Command>, TaskError)> {
        self.0.apply_together(&commands).await.map_err(|error| (commands, error))
    }

    async fn alone(&self, command: &'a Command) -> Result<(), TaskError> {
        self.0.apply_alone(command).await
    }

    /// A command's own failure (or a conflict with a duplicate): applying
    /// each alone finds it. Infrastructure failures retry the batch.
    fn splits(&self, error: &TaskError) -> bool {
        !is_transient(error)
    }
}

/// Failures of the infrastructure rather than of the command: a database
/// that is down or slow (a call can outlast its deadline waiting for a row
/// lock) says nothing about the command, which must be retried, not failed.
fn is_transient(error: &TaskError) -> bool {
    matches!(
        error,
        TaskError::Unavailable(_)
            | TaskError::Plugin(
                PluginFailure::CommitFailed { .. }
                    | PluginFailure::Unavailable { .. }
                    | PluginFailure::DeadlineExceeded { .. }
                    | PluginFailure::CircuitOpen { .. }
            )
    )
}

fn parse_command(message: &OwnedMessage) -> Option<Command> {
    match wire::decode(message.payload().unwrap_or_default()) {
        Ok(command) => Some(command),
        Err(error) => {
            tracing::error!(
                partition = message.partition(),
                offset = message.offset(),
                %error,
                "skipping a record of task-commands that is not a command"
            );
            None
        }
    }
}

/// Writes each command's `applied` outcome in the batch's transaction.
struct RecordResults<'a> {
    commands: &'a [&'a Command],
}

impl BeforeCommit<Vec<TaskChange>> for RecordResults<'_> {
    async fn run(self, changes: &Vec<TaskChange>, host: &mut HostConnection<'_>) -> Result<(), sqlx::Error> {
        let mut changes = changes.iter().cloned();
        let (mut ids, mut issuers, mut results, mut request_ids) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for command in self.commands {
            let own: Vec<TaskChange> = changes.by_ref().take(command.write.operations().len()).collect();
            let outcome = command.write.outcome(own);
            ids.push(command.id);
            issuers.push(command.issuer.user_id);
            results.push(Json(serde_json::to_value(outcome).unwrap_or(Value::Null)));
            request_ids.push(command.trace.request_id.as_str());
        }
        sqlx::query("SELECT public.host_record_command_results($1, $2, $3, $4, $5)")
            .bind(host.key.as_bytes())
            .bind(ids)
            .bind(issuers)
            .bind(results)
            .bind(request_ids)
            .execute(&mut *host.connection)
            .await?;
        Ok(())
    }
}
/// A record received, kept past the consumer's next poll.
fn detached(received: KafkaResult<BorrowedMessage<'_>>) -> std::future::Ready<Option<OwnedMessage>> {
    std::future::ready(received.ok().map(|message| message.detach()))
}
