//! The Kafka clients (rdkafka): topic names, and producers and consumers
//! configured the one way this host uses them.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::{Partition, Statistics};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// How long a consumer at shutdown may take to commit and leave its group.
const CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a consumer's statistics, and so its lag, are refreshed.
const LAG_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Logical topic names; the broker's names carry `KAFKA_TOPIC_PREFIX`.
pub mod topics {
    pub const TASK_EVENTS: &str = "task-events";
    pub const DEAD_LETTERS: &str = "task-events.dlq";
    pub const TASK_COMMANDS: &str = "task-commands";
    pub const NOTIFICATIONS: &str = "notifications";

    pub const ALL: [&str; 4] = [TASK_EVENTS, DEAD_LETTERS, TASK_COMMANDS, NOTIFICATIONS];
}

#[derive(Debug, Clone)]
pub struct Kafka {
    config: KafkaConfig,
    brokers: String,
}

impl Kafka {
    /// `None` when no broker is configured.
    pub fn new(config: &KafkaConfig) -> Option<Self> {
        let brokers = config.kafka_brokers.clone()?;
        Some(Self { config: config.clone(), brokers })
    }

    /// The broker's name of a logical topic.
    pub fn topic(&self, logical: &str) -> String {
        format!("{}{logical}", self.config.kafka_topic_prefix)
    }

    /// A consumer group's id.
    pub fn group(&self, name: &str) -> String {
        format!("{}todo-host.{name}", self.config.kafka_topic_prefix)
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("client.id", "todo-host");
        config
    }

    /// An idempotent producer waiting for all in-sync replicas: no record is
    /// lost or duplicated by the producer's retries, and records of one key
    /// keep their order.
    pub fn producer(&self) -> anyhow::Result<FutureProducer> {
        self.client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", self.config.kafka_message_timeout_ms.to_string())
            .create()
            .context("cannot create the Kafka producer")
    }

    /// A consumer in `group` whose offsets are stored explicitly (after the
    /// record was processed) and committed in the background: at-least-once.
    /// It reports its lag as the `kafka_consumer_lag` gauge.
    pub fn consumer(&self, group: &str) -> anyhow::Result<GroupConsumer> {
        let consumer = self
            .client_config()
            .set("group.id", group)
            .set("statistics.interval.ms", LAG_REPORT_INTERVAL.as_millis().to_string())
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            // How long the broker may hold a fetch that found nothing new.
            // Kafka answers as soon as data arrives; Tansu waits the full
            // time, which would add it to every event's latency.
            .set("fetch.wait.max.ms", self.config.kafka_fetch_wait_max_ms.to_string())
            .create_with_context(LagReporter { group: group.to_string() })
            .with_context(|| format!("cannot create the Kafka consumer of group `{group}`"))?;
        Ok(GroupConsumer(Some(consumer)))
    }

    /// A consumer that reads topics for a person (`todo-host topic tail`):
    /// a group of its own, from the earliest record or from now on,
    /// committing nothing.
    pub fn reader(&self, from_beginning: bool) -> anyhow::Result<StreamConsumer> {
        self.client_config()
            .set("group.id", self.group(&format!("tail.{}", uuid::Uuid::new_v4().simple())))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", if from_beginning { "earliest" } else { "latest" })
            .create()
            .context("cannot create a Kafka consumer")
    }

    /// Creates these (logical) topics when they do not exist.
    pub async fn ensure_topics(&self, logical: &[&str]) -> anyhow::Result<()> {
        if logical.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().context("cannot create the Kafka admin client")?;
        let names: Vec<String> = logical.iter().map(|topic| self.topic(topic)).collect();
        let partitions = self.config.kafka_topic_partitions;
        let new_topics: Vec<NewTopic> =
            names.iter().map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1))).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin.create_topics(&new_topics, &options).await.context("cannot create the Kafka topics")?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!("cannot create the Kafka topic `{topic}`: {code}"),
            }
        }
        Ok(())
    }
}

/// Record headers from string pairs.
pub fn headers(headers: &BTreeMap<String, String>) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new_with_capacity(headers.len()), |all, (key, value)| {
        all.insert(Header { key, value: Some(value.as_bytes()) })
    })
}

/// Turns librdkafka's periodic statistics into the `kafka_consumer_lag`
/// gauge: records of each partition this consumer fetches that are not yet
/// processed (by group, topic and partition).
pub struct LagReporter {
    group: String,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for partition in stats.partitions.values() {
                if let Some(lag) = partition_lag(partition) {
                    metrics::gauge!("kafka_consumer_lag", "group" => self.group.clone(), "topic" => topic.clone(),
                        "partition" => partition.partition.to_string())
                    .set(lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for LagReporter {}

/// High watermark minus the processed position: the stored offset (what
/// this consumer finished), else the committed one, else — a group that
/// never committed starts at the earliest record — the low watermark.
/// `None` for librdkafka's internal partition and before the first fetch.
fn partition_lag(partition: &Partition) -> Option<i64> {
    if partition.partition < 0 || partition.hi_offset < 0 {
        return None;
    }
    let position = [partition.stored_offset, partition.committed_offset]
        .into_iter()
        .find(|offset| *offset >= 0)
        .unwrap_or(partition.lo_offset.max(0));
    Some((partition.hi_offset - position).max(0))
}

/// A consumer in a group whose close never runs on the thread that lets it
/// go: librdkafka's close waits for the broker — for as long as it takes —
/// so a consumer dropped on a tokio worker with the broker gone would block
/// that worker, and with it the process's exit, forever. Dropped, it closes
/// on a thread of its own, which the process's exit ends if it must.
pub struct GroupConsumer(Option<StreamConsumer<LagReporter>>);

impl std::ops::Deref for GroupConsumer {
    type Target = StreamConsumer<LagReporter>;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("present until dropped")
    }
}

impl GroupConsumer {
    /// Commits the offsets stored and leaves the group, waiting a few
    /// seconds at most.
    pub async fn close(mut self) {
        let consumer = self.0.take().expect("present until dropped");
        let group = consumer.context().group.clone();
        let (closed, done) = tokio::sync::oneshot::channel();
        close_elsewhere(consumer, move |consumer| {
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(group = %consumer.context().group, %error, "no offsets committed at shutdown");
            }
            let _ = closed.send(());
        });
        if tokio::time::timeout(CONSUMER_CLOSE_TIMEOUT, done).await.is_err() {
            tracing::warn!(%group, "a Kafka consumer did not close within {CONSUMER_CLOSE_TIMEOUT:?} (is the broker gone?); left behind");
        }
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            close_elsewhere(consumer, |_| {});
        }
    }
}

/// Runs `first` and then drops `consumer` on a new thread.
fn close_elsewhere(
    consumer: StreamConsumer<LagReporter>,
    first: impl FnOnce(&StreamConsumer<LagReporter>) + Send + 'static,
) {
    let spawned = std::thread::Builder::new().name("kafka-close".into()).spawn(move || {
        first(&consumer);
        drop(consumer);
    });
    if let Err(error) = spawned {
        // The consumer went with the closure: it was dropped here after all.
        tracing::warn!(%error, "cannot start a thread to close a Kafka consumer");
    }
}
