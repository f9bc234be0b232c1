//! Kafka for tests: the broker `scripts/test` started (`TEST_KAFKA_BROKERS`),
//! per-test topic prefixes so tests sharing it never see each other's
//! records, and a reader that collects what a topic holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use uuid::Uuid;

use super::server::{LocalServer, free_port};
use super::tls::CertFiles;
use super::{HostOptions, ScratchDir, admin_database_url, copy_dir, required_env};
use sqlx::Connection;

pub fn kafka_brokers() -> String {
    required_env("TEST_KAFKA_BROKERS")
}

pub fn redis_url() -> String {
    required_env("TEST_REDIS_URL")
}

/// A topic prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("t{}.", Uuid::new_v4().simple())
}

impl HostOptions {
    /// Connects the host to the test Redis.
    pub fn redis(self) -> Self {
        // Plugin announcements stay within the test that made them.
        self.env("REDIS_URL", &redis_url()).env("PLUGIN_ANNOUNCE_CHANNEL", &format!("{}plugins", unique_prefix()))
    }

    /// Connects the host to the test broker (topics under `prefix`) and
    /// Redis. Runs no event handler unless `handlers` names some.
    pub fn kafka(self, prefix: &str, handlers: &[&str]) -> Self {
        self.kafka_on(&kafka_brokers(), prefix, handlers)
    }

    /// Like `kafka`, on another broker.
    pub fn kafka_on(self, brokers: &str, prefix: &str, handlers: &[&str]) -> Self {
        self.redis()
            .env("KAFKA_BROKERS", brokers)
            .env("KAFKA_TOPIC_PREFIX", prefix)
            .env("KAFKA_TOPIC_PARTITIONS", "3")
            .env("EVENT_HANDLERS", &handlers.join(","))
            .env("HANDLER_RETRY_BACKOFF_MS", "50")
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Record {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).expect("the record is JSON")
    }
}

/// Reads a topic from its beginning, in a consumer group of its own.
pub struct TopicReader {
    consumer: StreamConsumer,
    pub records: Vec<Record>,
}

impl TopicReader {
    pub fn new(topic: &str) -> Self {
        Self::on(&kafka_brokers(), topic)
    }

    pub fn on(brokers: &str, topic: &str) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("test-reader-{}", Uuid::new_v4().simple()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a test consumer");
        consumer.subscribe(&[topic]).expect("subscribing to the topic");
        Self { consumer, records: Vec::new() }
    }

    /// Reads until `done(records so far)` holds, failing after `timeout`.
    pub async fn read_until(&mut self, timeout: Duration, done: impl Fn(&[Record]) -> bool) -> &[Record] {
        let deadline = Instant::now() + timeout;
        while !done(&self.records) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out; read so far: {:#?}", self.summaries());
            if let Ok(Ok(message)) =
                tokio::time::timeout(left.min(Duration::from_millis(500)), self.consumer.recv()).await
            {
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .filter_map(|h| Some((h.key.to_string(), String::from_utf8(h.value?.to_vec()).ok()?)))
                            .collect()
                    })
                    .unwrap_or_default();
                self.records.push(Record {
                    key: message.key().map(|key| String::from_utf8_lossy(key).into_owned()),
                    payload: message.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
        }
        &self.records
    }

    /// Reads for `quiet` more and answers everything read.
    pub async fn read_for(&mut self, quiet: Duration) -> &[Record] {
        let deadline = Instant::now() + quiet;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Ok(Ok(message)) = tokio::time::timeout(left, self.consumer.recv()).await {
                self.records.push(Record {
                    key: message.key().map(|key| String::from_utf8_lossy(key).into_owned()),
                    payload: message.payload().unwrap_or_default().to_vec(),
                    headers: BTreeMap::new(),
                });
            }
        }
        &self.records
    }

    fn summaries(&self) -> Vec<String> {
        self.records.iter().map(|r| String::from_utf8_lossy(&r.payload).chars().take(200).collect()).collect()
    }
}

/// Task events of `records` about task `id`, as JSON, in topic order.
pub fn events_of(records: &[Record], id: &str) -> Vec<Value> {
    records.iter().filter(|r| r.key.as_deref() == Some(id)).map(Record::json).collect()
}

/// Produces `record` again to `topic` (a redelivery, as a broker would make it).
pub async fn produce_again(topic: &str, record: &Record) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", kafka_brokers()).create().expect("a test producer");
    let headers = record
        .headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (key, value)| all.insert(Header { key, value: Some(value.as_bytes()) }));
    let mut message = FutureRecord::to(topic).payload(&record.payload).headers(headers);
    if let Some(key) = &record.key {
        message = message.key(key);
    }
    producer.send(message, Duration::from_secs(10)).await.expect("the broker takes the record");
}

/// A plugin directory holding the test plugins (their migrations too) plus
/// `extra` ones: each a copy of an existing plugin's `.wasm` under a new
/// name with its own manifest (and no migrations).
pub fn plugin_dir_with(extra: &[(&str, &str, &str)]) -> ScratchDir {
    let source = PathBuf::from(required_env("TEST_PLUGIN_DIR"));
    let dir = ScratchDir::new("plugins");
    copy_dir(&source, &dir);
    for (name, copy_of, manifest) in extra {
        install_copy(&source, copy_of, &dir, name);
        std::fs::write(dir.join(format!("{name}.toml")), manifest).unwrap();
    }
    dir
}

/// A plugin directory holding only `names` of the tests' plugins.
pub fn plugin_dir_of(names: &[&str]) -> ScratchDir {
    let source = PathBuf::from(required_env("TEST_PLUGIN_DIR"));
    let dir = ScratchDir::new("plugins");
    for name in names {
        install_copy(&source, name, &dir, name);
        std::fs::copy(source.join(format!("{name}.toml")), dir.join(format!("{name}.toml"))).unwrap();
    }
    dir
}

/// Puts the module and migrations of plugin `copy_of` in `source` into
/// `dir` as plugin `name`.
fn install_copy(source: &Path, copy_of: &str, dir: &Path, name: &str) {
    std::fs::copy(source.join(format!("{copy_of}.wasm")), dir.join(format!("{name}.wasm"))).unwrap();
    let migrations = source.join(format!("{copy_of}.migrations"));
    if migrations.is_dir() {
        copy_dir(&migrations, &dir.join(format!("{name}.migrations")));
    }
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A broker of a test's own, for tests that stop and restart it: Tansu on
/// its PostgreSQL engine, in a database of its own on the test cluster —
/// the durable broker `scripts/run-local` runs, keeping what it
/// acknowledged across a crash.
pub struct TestBroker;

/// The schema Tansu's PostgreSQL engine needs (it creates none itself).
const TANSU_SCHEMA: &str = include_str!("../../../scripts/lib/tansu-postgres.sql");

impl TestBroker {
    pub async fn start() -> LocalServer {
        let storage = Self::new_database().await;
        Self::serve(move || storage.clone()).await
    }

    /// A broker that keeps nothing: each restart comes back empty, as a
    /// broker whose storage was lost.
    pub async fn forgetful() -> LocalServer {
        Self::serve(|| "memory://tansu/".to_string()).await
    }

    async fn new_database() -> String {
        let database = format!("tansu_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_database_url("postgres")).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE \"{database}\"")).execute(&mut admin).await.unwrap();
        let storage = admin_database_url(&database);
        let mut tansu = sqlx::PgConnection::connect(&storage).await.unwrap();
        sqlx::raw_sql(TANSU_SCHEMA).execute(&mut tansu).await.unwrap();
        storage
    }

    async fn serve(storage: impl Fn() -> String + Send + Sync + 'static) -> LocalServer {
        LocalServer::start(
            "tansu",
            |port| format!("127.0.0.1:{port}"),
            move |port, _| Self::command(port, &format!("tcp://127.0.0.1:{port}"), &storage()),
        )
        .await
    }

    /// A broker in memory reached over TLS only: Tansu, which speaks no TLS
    /// itself, behind stunnel, which ends TLS with `tls` (for `127.0.0.1`)
    /// and forwards; Tansu tells clients to come back through it. Answers
    /// both (the broker's address is the stunnel's).
    pub async fn behind_tls(tls: &CertFiles) -> (LocalServer, LocalServer) {
        let tls_port = free_port();
        let advertised = format!("tcp://127.0.0.1:{tls_port}");
        let broker = LocalServer::start(
            "tansu",
            |port| format!("127.0.0.1:{port}"),
            move |port, _| Self::command(port, &advertised, "memory://tansu/"),
        )
        .await;
        let (cert, key, forward) = (tls.cert.clone(), tls.key.clone(), broker.port());
        let stunnel = LocalServer::start_on(
            tls_port,
            "stunnel",
            |port| format!("127.0.0.1:{port}"),
            move |port, dir| {
                let config = format!(
                    "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{forward}\ncert = {}\nkey = {}\n",
                    cert.display(),
                    key.display()
                );
                std::fs::write(dir.join("stunnel.conf"), config).unwrap();
                let mut command = tokio::process::Command::new("stunnel4");
                command.arg(dir.join("stunnel.conf"));
                command
            },
        )
        .await;
        (broker, stunnel)
    }

    fn command(port: u16, advertised: &str, storage: &str) -> tokio::process::Command {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = tokio::process::Command::new(required_env("TEST_TANSU_BIN"));
        command
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", advertised])
            .args(["--storage-engine", storage]);
        command
    }
}
