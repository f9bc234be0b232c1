//! The Kafka clients (rdkafka): topic names, and producers and consumers
//! configured the one way this host uses them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::{Partition, Statistics};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message};

use crate::config::KafkaConfig;

mod stalls;
pub use stalls::GroupWatch;

/// How long a consumer at shutdown may take to commit and leave its group.
const CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a consumer's statistics, and so its lag, are refreshed.
const LAG_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// How often failing sends may make sure the topics exist.
const TOPIC_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Logical topic names; the broker's names carry `KAFKA_TOPIC_PREFIX`.
pub mod topics {
    pub const TASK_EVENTS: &str = "task-events";
    pub const DEAD_LETTERS: &str = "task-events.dlq";
    pub const TASK_COMMANDS: &str = "task-commands";
    pub const COMMAND_DEAD_LETTERS: &str = "task-commands.dlq";
    pub const NOTIFICATIONS: &str = "notifications";

    pub const ALL: [&str; 5] = [TASK_EVENTS, DEAD_LETTERS, TASK_COMMANDS, COMMAND_DEAD_LETTERS, NOTIFICATIONS];
}

#[derive(Debug, Clone)]
pub struct Kafka {
    config: KafkaConfig,
    brokers: String,
    /// TLS, SASL and the properties passed through (`connection_properties`).
    connection: Arc<[(String, String)]>,
    /// The groups this process consumes in, watched for partitions nobody
    /// consumes.
    watch: Arc<GroupWatch>,
}

impl Kafka {
    /// `None` when no broker is configured.
    pub fn new(config: &KafkaConfig) -> anyhow::Result<Option<Self>> {
        let Some(brokers) = config.kafka_brokers.clone() else { return Ok(None) };
        // vars_os: a variable that is no UTF-8 is none of ours, and must not panic.
        let env =
            std::env::vars_os().filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)));
        let connection = connection_properties(config, env)?.into();
        Ok(Some(Self { config: config.clone(), brokers, connection, watch: Arc::default() }))
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
        for (name, value) in self.connection.iter() {
            config.set(name, value);
        }
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

    /// The groups this process consumes in and their stalled partitions.
    pub fn watch(&self) -> &Arc<GroupWatch> {
        &self.watch
    }

    /// A consumer in `group`, subscribed to the (logical) `topic`, whose
    /// offsets are stored explicitly (after the record was processed) and
    /// committed in the background: at-least-once. It reports its lag as the
    /// `kafka_consumer_lag` gauge, and its group is watched.
    pub fn consumer(&self, group: &str, topic: &str) -> anyhow::Result<GroupConsumer> {
        let consumer: StreamConsumer<LagReporter> = self
            .consumer_config(group)
            .set("statistics.interval.ms", LAG_REPORT_INTERVAL.as_millis().to_string())
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            // How long the broker may hold a fetch that found nothing new.
            // Kafka (and Tansu as scripts/lib/tansu-storage.patch makes it)
            // answers as soon as records arrive: a long wait costs no
            // latency, and an idle consumer asks rarely.
            .set("fetch.wait.max.ms", self.config.kafka_fetch_wait_max_ms.to_string())
            .create_with_context(LagReporter { group: group.to_string() })
            .with_context(|| format!("cannot create the Kafka consumer of group `{group}`"))?;
        let topic = self.topic(topic);
        consumer.subscribe(&[&topic]).with_context(|| format!("cannot subscribe to `{topic}`"))?;
        let consumer = Arc::new(consumer);
        self.watch.register(group, &topic, Arc::downgrade(&consumer));
        Ok(GroupConsumer(Some(consumer)))
    }

    /// A consumer that reads topics for a person (`todo-host topic tail`)
    /// or for the live streams: a group of its own, from the earliest
    /// record or from now on, committing nothing.
    pub fn reader(&self, from_beginning: bool) -> anyhow::Result<Reader> {
        let consumer = self
            .consumer_config(&self.group(&format!("tail.{}", uuid::Uuid::new_v4().simple())))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", if from_beginning { "earliest" } else { "latest" })
            .create()
            .context("cannot create a Kafka consumer")?;
        Ok(Reader(Some(Arc::new(consumer))))
    }

    /// What every consumer of `group` is configured with.
    fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.client_config();
        // No producer here is transactional, so both levels read the same
        // records; read_committed costs Tansu's PostgreSQL engine a query
        // PostgreSQL 15 refuses (in fetches and offset listings alike).
        config.set("group.id", group).set("isolation.level", "read_uncommitted");
        config
    }

    /// Creates these (logical) topics when they do not exist.
    pub async fn ensure_topics(&self, logical: &[&str]) -> anyhow::Result<()> {
        if logical.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().context("cannot create the Kafka admin client")?;
        let names: Vec<String> = logical.iter().map(|topic| self.topic(topic)).collect();
        let min_insync = self.config.kafka_min_insync_replicas.map(|replicas| replicas.to_string());
        let new_topics = new_topics(&names, &self.config, min_insync.as_deref());
        // A broker that cannot be reached (or trusted) fails the start in
        // seconds, not after librdkafka's minute.
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(15)));
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

impl Kafka {
    /// `error` of a failed start, with why the brokers cannot be reached
    /// when librdkafka knows: a timeout alone would not say whether the
    /// broker refused the connection, its certificate, the SASL login…
    pub async fn explained(&self, error: anyhow::Error) -> anyhow::Error {
        match self.why_unreachable().await {
            Some(reason) => error.context(format!("the Kafka brokers cannot be reached: {reason}")),
            None => error,
        }
    }

    /// Why the brokers cannot be reached, as librdkafka reports it (the
    /// admin client keeps its reports to itself): a probe asks for the
    /// cluster's metadata and collects what went wrong.
    async fn why_unreachable(&self) -> Option<String> {
        let config = self.client_config();
        tokio::task::spawn_blocking(move || {
            let probe: BaseProducer<LastError> = config.create_with_context(LastError::default()).ok()?;
            let _ = probe.client().fetch_metadata(None, Duration::from_secs(5));
            probe.poll(Duration::from_millis(500));
            probe.context().0.lock().expect("poisoned").clone()
        })
        .await
        .ok()
        .flatten()
    }
}

/// The librdkafka properties of the connection, later ones winning: TLS
/// and SASL from their settings, then every `name=value` line of
/// KAFKA_PROPERTIES_FILE, then every `KAFKA_PROPERTY_<NAME>` of `env`
/// (`NAME` upper-cased with `.` as `_`: `KAFKA_PROPERTY_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM`),
/// so a managed broker's own settings pass through as its documentation
/// gives them. librdkafka verifies a TLS broker's certificate and host name
/// unless told otherwise.
fn connection_properties(
    config: &KafkaConfig,
    env: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut properties = Vec::new();
    let mut set = |name: &str, value: &str| properties.push((name.to_string(), value.to_string()));
    if let Some(protocol) = config.kafka_security_protocol {
        set("security.protocol", protocol.as_str());
    }
    if let Some(mechanism) = &config.kafka_sasl_mechanism {
        set("sasl.mechanism", mechanism);
    }
    if let Some(username) = &config.kafka_sasl_username {
        set("sasl.username", username);
    }
    if let Some(password) = &config.kafka_sasl_password {
        set("sasl.password", password);
    }
    if let Some(ca) = &config.kafka_ssl_ca_file {
        set("ssl.ca.location", &ca.to_string_lossy());
    }
    if let Some(file) = &config.kafka_properties_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read KAFKA_PROPERTIES_FILE {}", file.display()))?;
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
            let (name, value) =
                line.split_once('=').with_context(|| format!("KAFKA_PROPERTIES_FILE: `{line}` is not `name=value`"))?;
            set(name.trim(), value.trim());
        }
    }
    let mut passed: Vec<(String, String)> = env
        .filter_map(|(name, value)| {
            let property = name.strip_prefix("KAFKA_PROPERTY_")?.to_ascii_lowercase().replace('_', ".");
            Some((property, value))
        })
        .collect();
    passed.sort();
    properties.extend(passed);
    refuse_half_secured(&properties)?;
    Ok(properties)
}

/// Refuses TLS or SASL settings the connection would not use: a CA file
/// with a plaintext protocol would let the host talk to the broker in the
/// clear while its operator believes otherwise.
fn refuse_half_secured(properties: &[(String, String)]) -> anyhow::Result<()> {
    let last = |name: &str| properties.iter().rev().find(|(property, _)| property == name).map(|(_, value)| value);
    let protocol = last("security.protocol").map_or("plaintext".into(), |value| value.to_ascii_lowercase());
    let tls = protocol.ends_with("ssl");
    let sasl = protocol.starts_with("sasl");
    let needs_tls = properties.iter().any(|(property, _)| property.starts_with("ssl."));
    let needs_sasl = properties.iter().any(|(property, _)| property.starts_with("sasl."));
    anyhow::ensure!(
        tls || !needs_tls,
        "TLS settings are given (KAFKA_SSL_CA_FILE or ssl.*) but the protocol is `{protocol}`: set KAFKA_SECURITY_PROTOCOL=ssl or sasl_ssl"
    );
    anyhow::ensure!(
        sasl || !needs_sasl,
        "SASL settings are given but the protocol is `{protocol}`: set KAFKA_SECURITY_PROTOCOL=sasl_ssl (or sasl_plaintext)"
    );
    Ok(())
}

/// What `ensure_topics` asks the broker for: each topic with the configured
/// partitions and replication factor, and `min_insync` (the configured
/// `min.insync.replicas` as text, which the topics borrow).
fn new_topics<'a>(names: &'a [String], config: &KafkaConfig, min_insync: Option<&'a str>) -> Vec<NewTopic<'a>> {
    let topic = |name: &'a String| {
        let replication = TopicReplication::Fixed(config.kafka_replication_factor);
        let topic = NewTopic::new(name, config.kafka_topic_partitions, replication);
        match min_insync {
            Some(replicas) => topic.set("min.insync.replicas", replicas),
            None => topic,
        }
    };
    names.iter().map(topic).collect()
}

/// Record headers from string pairs.
pub fn headers(headers: &BTreeMap<String, String>) -> OwnedHeaders {
    headers.iter().fold(OwnedHeaders::new_with_capacity(headers.len()), |all, (key, value)| {
        all.insert(Header { key, value: Some(value.as_bytes()) })
    })
}

/// A record's headers as string pairs (those whose value is UTF-8).
pub fn record_headers(message: &OwnedMessage) -> BTreeMap<String, String> {
    let Some(headers) = message.headers() else { return BTreeMap::new() };
    headers
        .iter()
        .filter_map(|header| Some((header.key.to_string(), String::from_utf8(header.value?.to_vec()).ok()?)))
        .collect()
}

/// The `dlq-original-*` headers of a dead letter: where `message` was
/// consumed from.
pub fn dead_letter_origin(message: &OwnedMessage, headers: &mut BTreeMap<String, String>) {
    headers.insert("dlq-original-topic".into(), message.topic().to_string());
    headers.insert("dlq-original-partition".into(), message.partition().to_string());
    headers.insert("dlq-original-offset".into(), message.offset().to_string());
}

/// Turns librdkafka's periodic statistics into the `kafka_consumer_lag`
/// gauge: records of each partition this consumer fetches that are not yet
/// processed (by group, topic and partition).
pub struct LagReporter {
    group: String,
}

/// A client context that keeps librdkafka's last error report (a failed
/// TLS handshake or SASL login says why there).
#[derive(Default)]
struct LastError(Mutex<Option<String>>);

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "Kafka client error");
        *self.0.lock().expect("poisoned") = Some(reason.to_string());
    }
}

impl rdkafka::producer::ProducerContext for LastError {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
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
pub struct GroupConsumer(Option<Arc<StreamConsumer<LagReporter>>>);

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

/// A consumer of `Kafka::reader`, closed off the runtime's threads when
/// dropped (closing may wait for a broker that is gone).
pub struct Reader(Option<Arc<StreamConsumer>>);

impl Reader {
    /// Runs `call`, which waits for the broker, on the blocking pool.
    pub async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&StreamConsumer) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let consumer = self.0.clone().expect("present until dropped");
        Ok(tokio::task::spawn_blocking(move || call(&consumer)).await?)
    }
}

impl std::ops::Deref for Reader {
    type Target = StreamConsumer;

    fn deref(&self) -> &StreamConsumer {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            close_elsewhere(consumer, |_| {});
        }
    }
}

/// Runs `first` and then drops `consumer` on a new thread.
fn close_elsewhere<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
    first: impl FnOnce(&StreamConsumer<C>) + Send + 'static,
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

/// The process's idempotent producer (relay, commands, dead letters),
/// replaced by a new one when it can no longer produce: an idempotent
/// producer whose epoch the broker does not accept any more (fenced — a
/// broker that lost its state, or came back another) stays refused forever,
/// and one that does not hear from the broker within its own delivery
/// timeout is stuck; only a new producer starts afresh.
///
/// A broker that came back empty has lost the topics too: while sends fail,
/// they are created again.
///
/// Invariant: every send waits at most `delivery_timeout` and reports its
/// outcome through `deliver`, where the one rule deciding on a replacement
/// is kept.
#[derive(Clone)]
pub struct SharedProducer {
    kafka: Kafka,
    current: Arc<ArcSwap<FutureProducer>>,
    /// The first failure since the last success, and when it happened.
    failing: Arc<Mutex<Option<(Instant, String)>>>,
    /// When failing sends last made sure the topics exist.
    topics_checked: Arc<Mutex<Option<Instant>>>,
}

/// Why records were not produced.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Refused(#[from] KafkaError),
    #[error("the broker did not acknowledge within {0:?}")]
    Stalled(Duration),
}

impl SharedProducer {
    pub fn new(kafka: &Kafka) -> anyhow::Result<Self> {
        Ok(Self {
            kafka: kafka.clone(),
            current: Arc::new(ArcSwap::from_pointee(kafka.producer()?)),
            failing: Arc::default(),
            topics_checked: Arc::default(),
        })
    }

    pub fn kafka(&self) -> &Kafka {
        &self.kafka
    }

    /// The producer to enqueue on; hand what it answers to `deliver`.
    pub fn current(&self) -> Arc<FutureProducer> {
        self.current.load_full()
    }

    /// Produces one record and waits for the broker's acknowledgement.
    pub async fn send<K, P>(&self, record: FutureRecord<'_, K, P>, queue_timeout: Duration) -> Result<(), ProduceError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let used = self.current();
        let delivery = async { used.send(record, queue_timeout).await.map(drop).map_err(|(error, _)| error) };
        self.deliver(&used, delivery).await
    }

    /// Waits for `delivery` — records enqueued on `used` — at most the
    /// delivery timeout, and replaces `used` when it failed for good.
    pub async fn deliver(
        &self,
        used: &Arc<FutureProducer>,
        delivery: impl Future<Output = Result<(), KafkaError>>,
    ) -> Result<(), ProduceError> {
        let timeout = self.delivery_timeout();
        let outcome = match tokio::time::timeout(timeout, delivery).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ProduceError::Refused(error)),
            Err(_) => Err(ProduceError::Stalled(timeout)),
        };
        self.record(used, outcome.as_ref());
        outcome
    }

    /// librdkafka's own message timeout, and a margin: past it, a delivery
    /// report that has not come will not come.
    fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.kafka.config.kafka_message_timeout_ms) + Duration::from_secs(5)
    }

    fn record(&self, used: &Arc<FutureProducer>, outcome: Result<&(), &ProduceError>) {
        let mut failing = self.failing.lock().expect("poisoned");
        let Err(error) = outcome else {
            *failing = None;
            return;
        };
        failing.get_or_insert_with(|| (Instant::now(), error.to_string()));
        drop(failing);
        self.ensure_topics_soon();
        let Some(reason) = beyond_repair(used, error) else { return };
        if !Arc::ptr_eq(&self.current.load(), used) {
            return; // Another caller replaced it already.
        }
        match self.kafka.producer() {
            Ok(fresh) => {
                self.current.store(Arc::new(fresh));
                metrics::counter!("kafka_producer_replaced_total").increment(1);
                tracing::warn!(%reason, "the Kafka producer can no longer produce; replaced by a new one");
            }
            Err(error) => tracing::error!(%reason, %error, "the Kafka producer failed and no new one can be made"),
        }
    }

    /// Creates the topics that are missing, in the background and at most
    /// every `TOPIC_CHECK_INTERVAL` (those that exist are left as they are).
    fn ensure_topics_soon(&self) {
        let mut checked = self.topics_checked.lock().expect("poisoned");
        if checked.is_some_and(|at| at.elapsed() < TOPIC_CHECK_INTERVAL) {
            return;
        }
        *checked = Some(Instant::now());
        let kafka = self.kafka.clone();
        tokio::spawn(async move {
            if let Err(error) = kafka.ensure_topics(&topics::ALL).await {
                tracing::debug!(error = format!("{error:#}"), "cannot make sure the Kafka topics exist");
            }
        });
    }

    /// How long sends have been failing, and the first failure's error.
    pub fn failing(&self) -> Option<(Duration, String)> {
        let failing = self.failing.lock().expect("poisoned");
        failing.as_ref().map(|(since, error)| (since.elapsed(), error.clone()))
    }
}

/// Why `used` will never produce again, if it will not: librdkafka says it
/// failed fatally, the broker refuses its epoch, or it stalled.
fn beyond_repair(used: &FutureProducer, error: &ProduceError) -> Option<String> {
    if let Some((code, reason)) = used.client().fatal_error() {
        return Some(format!("{code:?}: {reason}"));
    }
    match error {
        ProduceError::Refused(refused) => {
            refused.rdkafka_error_code().filter(|code| is_stuck(*code)).map(|_| error.to_string())
        }
        ProduceError::Stalled(_) => Some(error.to_string()),
    }
}

/// Errors after which an idempotent producer does not recover: its epoch is
/// refused for good, or a record was not delivered within the message
/// timeout — which a broker that lost the producer's state answers the same
/// way forever, while a new producer works at once (one that replaces a
/// producer while the broker is down costs nothing).
fn is_stuck(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::OutOfOrderSequenceNumber
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::Fatal
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_timed_out_or_stalled_producer_is_beyond_repair_a_passing_failure_is_not() {
        // Never connects: nothing listens on port 9.
        let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", "127.0.0.1:9").create().unwrap();
        let refused = |code| ProduceError::Refused(KafkaError::MessageProduction(code));
        assert!(beyond_repair(&producer, &refused(RDKafkaErrorCode::InvalidProducerEpoch)).is_some());
        assert!(beyond_repair(&producer, &refused(RDKafkaErrorCode::ProducerFenced)).is_some());
        assert!(beyond_repair(&producer, &ProduceError::Stalled(Duration::from_secs(15))).is_some());
        assert!(beyond_repair(&producer, &refused(RDKafkaErrorCode::MessageTimedOut)).is_some());
        assert!(beyond_repair(&producer, &refused(RDKafkaErrorCode::MessageSizeTooLarge)).is_none());
        assert!(beyond_repair(&producer, &refused(RDKafkaErrorCode::BrokerTransportFailure)).is_none());
    }

    fn cluster_config(replicas: i32) -> KafkaConfig {
        KafkaConfig {
            kafka_brokers: Some("kafka-0:9092".into()),
            kafka_topic_prefix: String::new(),
            kafka_topic_partitions: 12,
            kafka_replication_factor: replicas,
            kafka_min_insync_replicas: None,
            kafka_message_timeout_ms: 10_000,
            kafka_fetch_wait_max_ms: 500,
            kafka_security_protocol: None,
            kafka_sasl_mechanism: None,
            kafka_sasl_username: None,
            kafka_sasl_password: None,
            kafka_ssl_ca_file: None,
            kafka_properties_file: None,
        }
    }

    #[test]
    fn connection_properties_come_from_the_settings_then_the_file_then_the_variables() {
        let file = std::env::temp_dir().join(format!("todo-host-kafka-{}.properties", std::process::id()));
        std::fs::write(
            &file,
            "# a managed broker's\nssl.endpoint.identification.algorithm = https\nsasl.mechanism=SCRAM-SHA-512\n",
        )
        .unwrap();
        let config = KafkaConfig {
            kafka_security_protocol: Some(crate::config::KafkaSecurityProtocol::SaslSsl),
            kafka_sasl_mechanism: Some("PLAIN".into()),
            kafka_sasl_username: Some("todo".into()),
            kafka_sasl_password: Some("secret".into()),
            kafka_ssl_ca_file: Some("/etc/kafka/ca.pem".into()),
            kafka_properties_file: Some(file.clone()),
            ..cluster_config(1)
        };
        let env = [
            ("KAFKA_PROPERTY_SSL_KEY_LOCATION".to_string(), "/etc/kafka/client.key".to_string()),
            ("KAFKA_BROKERS".to_string(), "ignored".to_string()),
        ];
        let properties = connection_properties(&config, env.into_iter()).unwrap();
        std::fs::remove_file(file).unwrap();
        let last = |name: &str| properties.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        assert_eq!(last("security.protocol"), Some("sasl_ssl"));
        assert_eq!(last("sasl.mechanism"), Some("SCRAM-SHA-512"), "the file after the settings");
        assert_eq!(last("sasl.password"), Some("secret"));
        assert_eq!(last("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
        assert_eq!(last("ssl.endpoint.identification.algorithm"), Some("https"));
        assert_eq!(last("ssl.key.location"), Some("/etc/kafka/client.key"));
        assert_eq!(last("brokers"), None);
    }

    #[test]
    fn tls_or_sasl_settings_the_protocol_would_not_use_are_refused() {
        let none = std::iter::empty();
        let ca_only = KafkaConfig { kafka_ssl_ca_file: Some("/etc/kafka/ca.pem".into()), ..cluster_config(1) };
        let error = connection_properties(&ca_only, none).unwrap_err().to_string();
        assert!(error.contains("KAFKA_SECURITY_PROTOCOL=ssl"), "{error}");
        let sasl_over_tls = KafkaConfig {
            kafka_security_protocol: Some(crate::config::KafkaSecurityProtocol::Ssl),
            kafka_sasl_username: Some("todo".into()),
            ..cluster_config(1)
        };
        assert!(connection_properties(&sasl_over_tls, std::iter::empty()).is_err());
        let protocol_from_env = [("KAFKA_PROPERTY_SECURITY_PROTOCOL".to_string(), "SSL".to_string())];
        assert!(connection_properties(&ca_only, protocol_from_env.into_iter()).is_ok());
    }

    #[test]
    fn topics_are_created_with_the_configured_replication() {
        let names = vec!["task-events".to_string(), "task-commands".to_string()];
        let topics = new_topics(&names, &cluster_config(3), Some("2"));
        assert_eq!(topics.len(), 2);
        for topic in &topics {
            assert_eq!(topic.num_partitions, 12);
            assert!(matches!(topic.replication, TopicReplication::Fixed(3)));
            assert_eq!(topic.config, [("min.insync.replicas", "2")]);
        }
        let development = new_topics(&names, &cluster_config(1), None);
        assert!(matches!(development[0].replication, TopicReplication::Fixed(1)));
        assert!(development[0].config.is_empty(), "the broker's own min.insync.replicas applies");
    }
}
