//! Dead letters: an event a handler cannot process is recorded in the
//! `dead_letters` table — where admins list and replay it — and, in the
//! same transaction through the outbox, put on `task-events.dlq` as it was,
//! with headers saying who gave up on it and why (docs/events.md).
//!
//! Invariants:
//! - A record is dead-lettered once per handler, however often its offset
//!   is redelivered (its position is unique in the table; the topic record
//!   is written only with a new row).
//! - Nothing is lost on the way: the row and the topic record commit
//!   together, and the caller stores the event's offset only after.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::types::Json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::{HostConnection, HostKey};
use crate::kafka::{self, topics};
use crate::outbox::{self, OutboxRecord, OutboxWaker};
use crate::plugins::event_handler::Event;

/// How long a failed recording waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why an event went to the dead letters.
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
        &self,
        handler: &str,
        message: &OwnedMessage,
        mut headers: BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        headers.insert("dlq-handler".into(), handler.to_string());
        headers.insert("dlq-error".into(), self.error.clone());
        headers.insert("dlq-error-kind".into(), self.kind.into());
        headers.insert("dlq-attempts".into(), self.attempts.to_string());
        kafka::dead_letter_origin(message, &mut headers);
        headers
    }
}

/// Records dead letters (see the module's doc).
#[derive(Clone)]
pub struct DeadLetterRecorder {
    pool: PgPool,
    key: HostKey,
    outbox: OutboxWaker,
}

impl DeadLetterRecorder {
    pub fn new(pool: PgPool, key: HostKey, outbox: OutboxWaker) -> Self {
        Self { pool, key, outbox }
    }

    /// Records `message` as dead-lettered by `handler`, retrying until the
    /// database takes it; `false` when shutdown interrupted that.
    pub async fn record(
        &self,
        handler: &str,
        message: &OwnedMessage,
        headers: BTreeMap<String, String>,
        event: Option<&Event>,
        dead: DeadLetter,
        shutdown: &CancellationToken,
    ) -> bool {
        tracing::warn!(kind = dead.kind, attempts = dead.attempts, error = %dead.error, "event dead-lettered");
        loop {
            match self.insert(handler, message, &headers, event, &dead).await {
                Ok(inserted) => {
                    if inserted {
                        self.outbox.wake();
                        metrics::counter!("kafka_dead_lettered_total", "handler" => handler.to_string()).increment(1);
                    }
                    return true;
                }
                Err(error) => tracing::warn!(%error, "cannot record a dead letter; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(RETRY_AFTER) => {}
            }
        }
    }

    /// The row and, when it is new, the topic record, in one transaction.
    async fn insert(
        &self,
        handler: &str,
        message: &OwnedMessage,
        headers: &BTreeMap<String, String>,
        event: Option<&Event>,
        dead: &DeadLetter,
    ) -> Result<bool, sqlx::Error> {
        let payload = message.payload().unwrap_or_default();
        let mut transaction = self.pool.begin().await?;
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO dead_letters (id, handler, event_id, event_type, subject, record_key, payload, headers, \
                                       error, error_kind, attempts, original_topic, original_partition, original_offset) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (handler, original_topic, original_partition, original_offset) DO NOTHING RETURNING id",
        )
        .bind(Uuid::now_v7())
        .bind(handler)
        .bind(event.map(|event| &event.id))
        .bind(event.map(|event| &event.type_))
        .bind(event.and_then(|event| event.subject.as_ref()))
        .bind(message.key())
        .bind(payload)
        .bind(Json(headers))
        .bind(&dead.error)
        .bind(dead.kind)
        .bind(dead.attempts as i32)
        .bind(message.topic())
        .bind(message.partition())
        .bind(message.offset())
        .fetch_optional(&mut *transaction)
        .await?;
        if inserted.is_none() {
            return Ok(false);
        }
        let record = OutboxRecord {
            topic: topics::DEAD_LETTERS.to_string(),
            key: message.key().map(|key| String::from_utf8_lossy(key).into_owned()),
            payload: payload.to_vec(),
            headers: dead.headers(handler, message, headers.clone()),
        };
        outbox::append(&mut HostConnection { connection: &mut transaction, key: &self.key }, &[record]).await?;
        transaction.commit().await?;
        Ok(true)
    }
}

/// A dead letter as `GET /admin/dead-letters` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    pub id: Uuid,
    pub handler: String,
    /// `null` when the record was no event (`malformed`).
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    /// The task the event is about.
    pub subject: Option<String>,
    pub error: String,
    /// `retryable` (attempts used up), `permanent` or `malformed`.
    pub error_kind: String,
    pub attempts: i32,
    pub dead_lettered_at: DateTime<Utc>,
    /// `pending` until a replay handled it (or found it handled), then `replayed`.
    pub status: &'static str,
    pub replayed_at: Option<DateTime<Utc>>,
    /// `handled` or `already-handled`.
    pub replay_outcome: Option<String>,
    /// Why the last replay failed, if it did.
    pub last_replay_error: Option<String>,
    /// The record as received, when it is JSON (a CloudEvent).
    #[schema(value_type = Option<Object>)]
    pub event: Option<serde_json::Value>,
    pub original: OriginalPosition,
}

/// Where the record was consumed from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OriginalPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A row of `dead_letters` as read back.
#[derive(sqlx::FromRow)]
pub(super) struct DeadLetterRow {
    pub id: Uuid,
    pub handler: String,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub subject: Option<String>,
    pub payload: Vec<u8>,
    pub error: String,
    pub error_kind: String,
    pub attempts: i32,
    pub dead_lettered_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
    pub replay_outcome: Option<String>,
    pub last_replay_error: Option<String>,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
}

/// The columns `DeadLetterRow` reads.
pub(super) const ROW_COLUMNS: &str = "id, handler, event_id, event_type, subject, payload, error, error_kind, \
     attempts, dead_lettered_at, replayed_at, replay_outcome, last_replay_error, original_topic, \
     original_partition, original_offset";

impl From<DeadLetterRow> for DeadLetterView {
    fn from(row: DeadLetterRow) -> Self {
        Self {
            id: row.id,
            handler: row.handler,
            event_id: row.event_id,
            event_type: row.event_type,
            subject: row.subject,
            error: row.error,
            error_kind: row.error_kind,
            attempts: row.attempts,
            dead_lettered_at: row.dead_lettered_at,
            status: if row.replayed_at.is_some() { "replayed" } else { "pending" },
            replayed_at: row.replayed_at,
            replay_outcome: row.replay_outcome,
            last_replay_error: row.last_replay_error,
            event: serde_json::from_slice(&row.payload).ok(),
            original: OriginalPosition {
                topic: row.original_topic,
                partition: row.original_partition,
                offset: row.original_offset,
            },
        }
    }
}
