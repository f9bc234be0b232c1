//! The outbox relay: publishes outbox records to Kafka in id order and
//! marks them published.
//!
//! Safe on many replicas: each batch runs in a transaction that first locks
//! the one row of `outbox_relay_lock`, so one relay publishes at a time and
//! batches never overlap (plain `FOR UPDATE SKIP LOCKED` batches could let
//! a later event of a task overtake an earlier one). A row of a host table,
//! not an advisory lock: any plugin may take advisory locks, none may lock
//! this row. The lock is released at commit, so a relay that dies
//! mid-batch releases it with its connection and another takes over; its
//! unmarked records are published again (at-least-once; handlers
//! deduplicate by event id).
//!
//! Per-task order: a task's writes hold its row lock until they commit and
//! append their outbox records after taking it, so a task's records get ids
//! in commit order, and ids are published in order.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::kafka::{self, Kafka, SharedProducer};
use crate::outbox::OutboxWaker;

const MAX_BACKOFF: Duration = Duration::from_secs(5);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub struct OutboxRelay {
    pool: PgPool,
    kafka: Kafka,
    producer: SharedProducer,
    waker: OutboxWaker,
    batch_size: i64,
    poll_interval: Duration,
    retention: Duration,
}

impl OutboxRelay {
    pub fn new(
        pool: PgPool,
        kafka: Kafka,
        producer: SharedProducer,
        waker: OutboxWaker,
        settings: &crate::config::EventConfig,
    ) -> Self {
        Self {
            pool,
            kafka,
            producer,
            waker,
            batch_size: i64::from(settings.outbox_batch_size),
            poll_interval: Duration::from_millis(settings.outbox_poll_ms),
            retention: Duration::from_secs(settings.outbox_retention_secs),
        }
    }

    /// Publishes until `shutdown`: whenever a write of this process
    /// committed records, and every `poll_interval` for records committed
    /// elsewhere (another replica that died before publishing them).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut last_prune = tokio::time::Instant::now();
        loop {
            match self.drain().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), retry_in_ms = backoff.as_millis(), "outbox relay failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                self.prune().await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.poll_interval) => {}
                _ = self.waker.woken() => {}
            }
        }
    }

    /// Publishes batches until the outbox holds no unpublished record.
    async fn drain(&self) -> anyhow::Result<()> {
        while self.publish_batch().await? == self.batch_size as usize {}
        Ok(())
    }

    /// Publishes the oldest unpublished records and marks them, all in one
    /// transaction holding the relay lock. Answers how many it published.
    async fn publish_batch(&self) -> anyhow::Result<usize> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("SELECT id FROM outbox_relay_lock FOR UPDATE").execute(&mut *transaction).await?;
        let rows = sqlx::query(
            "SELECT id, topic, record_key, payload, headers FROM outbox \
             WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *transaction)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }

        let producer = self.producer.current();
        let mut ids = Vec::with_capacity(rows.len());
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            let topic = self.kafka.topic(row.try_get::<&str, _>("topic")?);
            let key: Option<&str> = row.try_get("record_key")?;
            let payload: &[u8] = row.try_get("payload")?;
            let Json(headers): Json<BTreeMap<String, String>> = row.try_get("headers")?;
            let mut record = FutureRecord::to(&topic).payload(payload).headers(kafka::headers(&headers));
            if let Some(key) = key {
                record = record.key(key);
            }
            // Enqueued in id order; the idempotent producer keeps that order
            // per partition even when it retries.
            let delivery = producer.send_result(record).map_err(|(error, _)| error)?;
            deliveries.push(delivery);
            ids.push(row.try_get::<i64, _>("id")?);
        }
        let delivered = async {
            for outcome in join_all(deliveries).await {
                match outcome {
                    Ok(Ok(_)) => {}
                    Ok(Err((error, _))) => return Err(error),
                    Err(_) => return Err(KafkaError::Canceled),
                }
            }
            Ok(())
        };
        self.producer.deliver(&producer, delivered).await.context("Kafka did not take the outbox records")?;
        for row in &rows {
            let topic: String = row.try_get("topic")?;
            metrics::counter!("kafka_produced_total", "topic" => topic).increment(1);
        }
        sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        tracing::debug!(records = ids.len(), "outbox records published");
        Ok(ids.len())
    }

    /// Forgets published records older than the retention.
    async fn prune(&self) {
        let retention = self.retention.as_secs_f64();
        let pruned = sqlx::query("DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)")
            .bind(retention)
            .execute(&self.pool)
            .await;
        if let Err(error) = pruned {
            tracing::warn!(%error, "cannot prune the outbox");
        }
    }
}
