//! Applying commands in batches: up to `COMMAND_BATCH_MAX` commands, or
//! what arrived within `COMMAND_BATCH_LINGER_MS` of the first, in ONE
//! transaction through the storage plugin's `apply-batch`. So the busier
//! the API, the fewer transactions per write.
//!
//! Invariants:
//! - Exactly once per command: its outcome row (`command_results`) commits
//!   with its changes, offsets are stored only after that commit, and a
//!   command that already has an outcome (redelivered after a crash) is
//!   skipped.
//! - One failing command does not sink the others: when the batch fails on
//!   anything but an outage, each command is applied again on its own, and
//!   one that fails on its own merits gets a `failed` outcome.
//! - An outage (database unreachable, the plugin's circuit open) retries
//!   the batch with backoff, as long as it lasts — never counted against a
//!   command, never dropping one.
//! - A command that fails alone for a reason that is neither its own nor
//!   an outage (a deadline, a refused commit) is retried up to
//!   `COMMAND_MAX_ATTEMPTS` times, then failed with a problem and put on
//!   `task-commands.dlq` — both in one transaction — so it cannot hold up
//!   the commands behind it forever.

use std::collections::HashMap;
use std::sync::Mutex;
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
use crate::db::{HostConnection, HostKey};
use crate::kafka::{self, GroupConsumer, Kafka, topics};
use crate::outbox::{self, OutboxRecord, OutboxWaker};
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
    /// Dead-lettered commands leave through the outbox.
    key: HostKey,
    outbox: OutboxWaker,
    batch_max: usize,
    linger: Duration,
    max_attempts: u32,
}

impl CommandConsumer {
    pub fn new(
        kafka: &Kafka,
        store: TaskStore,
        pool: PgPool,
        key: HostKey,
        outbox: OutboxWaker,
        settings: &CommandConfig,
    ) -> anyhow::Result<Self> {
        let consumer = kafka.consumer(&kafka.group("commands"), topics::TASK_COMMANDS)?;
        Ok(Self {
            consumer,
            store,
            pool,
            key,
            outbox,
            batch_max: settings.command_batch_max.max(1),
            linger: Duration::from_millis(settings.command_batch_linger_ms),
            max_attempts: settings.command_max_attempts.max(1),
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
            let mut commands: Vec<(Command, &OwnedMessage)> =
                batch.iter().filter_map(|message| Some((parse_command(message)?, message))).collect();
            // A record produced twice must not collide with itself on its
            // result row and stall the batch forever.
            let mut seen = std::collections::HashSet::new();
            commands.retain(|(command, _)| seen.insert(command.id));
            let received = Received { consumer: &self, records: commands, attempts: Mutex::default() };
            let mut backoff = Duration::from_millis(100);
            loop {
                match received.apply().await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, commands = received.records.len(), retry_in_ms = backoff.as_millis(), "cannot apply commands; retrying");
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

    /// Records that `command` failed with `error`, as the problem the
    /// synchronous request would have answered.
    async fn record_failure(&self, command: &Command, error: TaskError) -> Result<(), TaskError> {
        tracing::info!(command_id = %command.id, %error, "command failed");
        let problem = Problem::from(own_error(command, error));
        let mut connection = self.pool.acquire().await.map_err(unavailable)?;
        insert_failure(&mut connection, command, problem).await.map_err(unavailable)?;
        Ok(())
    }

    /// Fails `command` for good after `attempts` failures that were not its
    /// own, and puts its record on `task-commands.dlq`: in one transaction.
    async fn dead_letter(
        &self,
        command: &Command,
        message: &OwnedMessage,
        error: TaskError,
        attempts: u32,
    ) -> Result<(), TaskError> {
        tracing::warn!(command_id = %command.id, %error, attempts, "command dead-lettered");
        let why = error.to_string();
        let problem = Problem::from(error)
            .detail(format!(
                "the command could not be applied in {attempts} attempts, the last failing so: {why}; \
                 it was set aside (task-commands.dlq) and nothing of it was changed"
            ))
            .with("attempts", attempts);
        let mut transaction = self.pool.begin().await.map_err(unavailable)?;
        if !insert_failure(&mut transaction, command, problem).await.map_err(unavailable)? {
            // It has an outcome already (applied by another consumer, or
            // by a commit that did succeed): nothing to set aside.
            return Ok(());
        }
        let record = dead_letter_record(message, &why, attempts);
        outbox::append(&mut HostConnection { connection: &mut transaction, key: &self.key }, &[record])
            .await
            .map_err(unavailable)?;
        transaction.commit().await.map_err(unavailable)?;
        self.outbox.wake();
        metrics::counter!("kafka_dead_lettered_total", "handler" => "commands").increment(1);
        Ok(())
    }
}

/// The commands of one batch received, with their records, and how often
/// each failed alone for reasons not its own (`COMMAND_MAX_ATTEMPTS`).
struct Received<'a> {
    consumer: &'a CommandConsumer,
    records: Vec<(Command, &'a OwnedMessage)>,
    attempts: Mutex<HashMap<Uuid, u32>>,
}

impl Received<'_> {
    /// Applies the commands without an outcome yet. `Err` only for
    /// failures worth retrying the batch for.
    async fn apply(&self) -> Result<(), TaskError> {
        let ids: Vec<Uuid> = self.records.iter().map(|(command, _)| command.id).collect();
        let finished: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM command_results WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&self.consumer.pool)
            .await
            .map_err(unavailable)?;
        let pending: Vec<&(Command, &OwnedMessage)> =
            self.records.iter().filter(|(command, _)| !finished.contains(&command.id)).collect();
        if !pending.iter().any(|(command, _)| self.failed_before(command)) {
            return together_else_each_alone(self, pending).await;
        }
        // Together they would run into the same failure again, and each
        // deadline counts towards the plugin's circuit: alone, in order.
        for member in pending {
            self.alone(member).await?;
        }
        Ok(())
    }

    fn failed_before(&self, command: &Command) -> bool {
        self.attempts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains_key(&command.id)
    }

    /// Counts one more failure of `command` that was not its own.
    fn attempts(&self, command: &Command) -> u32 {
        let mut attempts = self.attempts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = attempts.entry(command.id).or_default();
        *count += 1;
        *count
    }
}

impl<'a> Group for Received<'a> {
    type Member = &'a (Command, &'a OwnedMessage);
    type Error = TaskError;

    async fn together(
        &self,
        members: Vec<&'a (Command, &'a OwnedMessage)>,
    ) -> Result<(), (Vec<&'a (Command, &'a OwnedMessage)>, TaskError)> {
        let commands: Vec<&Command> = members.iter().map(|(command, _)| command).collect();
        self.consumer.apply_together(&commands).await.map_err(|error| (members, error))
    }

    /// Applies the command in a transaction of its own; a failure not its
    /// own is retried with the batch until its attempts are used up.
    async fn alone(&self, (command, message): &'a (Command, &'a OwnedMessage)) -> Result<(), TaskError> {
        let error = match self.consumer.apply_together(&[command]).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        match failure_of(&error) {
            Failure::Outage => Err(error),
            Failure::NotItsOwn => match self.attempts(command) {
                attempts if attempts < self.consumer.max_attempts => Err(error),
                attempts => self.consumer.dead_letter(command, message, error, attempts).await,
            },
            Failure::ItsOwn => self.consumer.record_failure(command, error).await,
        }
    }

    /// Only an outage says nothing about which command failed.
    fn splits(&self, error: &TaskError) -> bool {
        failure_of(error) != Failure::Outage
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The database is unreachable, or the plugin's circuit is open: wait.
    Outage,
    /// A deadline or a refused commit: maybe passing, maybe the command.
    NotItsOwn,
    /// The command's own: its outcome is this failure.
    ItsOwn,
}

/// Whose failure `error` is. A database that is down says nothing about
/// the command; one that is slow (a call can outlast its deadline waiting
/// for a row lock) or refuses a commit may be passing or may be the
/// command's doing, so it is retried a bounded number of times.
fn failure_of(error: &TaskError) -> Failure {
    match error {
        TaskError::Unavailable(_)
        | TaskError::Plugin(PluginFailure::Unavailable { .. } | PluginFailure::CircuitOpen { .. }) => Failure::Outage,
        TaskError::Plugin(PluginFailure::CommitFailed { .. } | PluginFailure::DeadlineExceeded { .. }) => {
            Failure::NotItsOwn
        }
        _ => Failure::ItsOwn,
    }
}

/// A single write ran as a batch of one: its own error is the one the
/// synchronous request would have answered.
fn own_error(command: &Command, error: TaskError) -> TaskError {
    match (&command.write, error) {
        (PreparedWrite::Single { .. }, TaskError::BatchFailed(mut failures)) if failures.len() == 1 => {
            failures.remove(0).error
        }
        (_, error) => error,
    }
}

fn unavailable(error: sqlx::Error) -> TaskError {
    TaskError::Unavailable(error.to_string())
}

/// The `failed` outcome of `command`, unless it has one; whether it is new.
async fn insert_failure(
    connection: &mut sqlx::PgConnection,
    command: &Command,
    problem: Problem,
) -> Result<bool, sqlx::Error> {
    let problem = serde_json::to_value(problem).unwrap_or(Value::Null);
    let inserted = sqlx::query(
        "INSERT INTO command_results (id, issuer_id, status, result, request_id) \
         VALUES ($1, $2, 'failed', $3, $4) ON CONFLICT (id) DO NOTHING",
    )
    .bind(command.id)
    .bind(command.issuer.user_id)
    .bind(Json(problem))
    .bind(&command.trace.request_id)
    .execute(connection)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// `message` as it was, with headers saying why it was set aside.
fn dead_letter_record(message: &OwnedMessage, error: &str, attempts: u32) -> OutboxRecord {
    let mut headers = kafka::record_headers(message);
    headers.insert("dlq-error".into(), error.to_string());
    headers.insert("dlq-attempts".into(), attempts.to_string());
    kafka::dead_letter_origin(message, &mut headers);
    OutboxRecord {
        topic: topics::COMMAND_DEAD_LETTERS.to_string(),
        key: message.key().map(|key| String::from_utf8_lossy(key).into_owned()),
        payload: message.payload().unwrap_or_default().to_vec(),
        headers,
    }
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
