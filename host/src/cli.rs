//! The command line: `serve`, `migrate`, `user create`, `topic tail`.

use std::io::BufRead;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::auth::{Accounts, AuthError, Registration, Role, UserRepository};
use crate::config::{DatabaseConfig, KafkaConfig, ServeConfig};
use crate::db;
use crate::kafka::Kafka;
use crate::startup::Application;
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "todo-host", version, about = "Task REST API with WebAssembly storage and event plugins")]
pub struct Cli {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json", global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (applies pending migrations first).
    Serve(Box<ServeConfig>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseConfig),
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Look at what goes through Kafka.
    Topic {
        #[command(subcommand)]
        command: TopicCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Print a topic's records, one JSON object per line: partition,
    /// offset, key, headers and value (as JSON when it is).
    Tail(TopicTail),
}

#[derive(Debug, Args)]
pub struct TopicTail {
    /// The logical topic (`task-events`, `task-events.dlq`,
    /// `notifications`, …): KAFKA_TOPIC_PREFIX is added.
    pub topic: String,
    /// From the earliest record kept, not only those to come.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<usize>,
    /// Stop after this many seconds without a record.
    #[arg(long)]
    pub idle_secs: Option<u64>,
    #[command(flatten)]
    pub kafka: KafkaConfig,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account of any role (e.g. the first admin).
    Create(UserCreate),
}

#[derive(Debug, Args)]
pub struct UserCreate {
    #[arg(long)]
    pub email: String,
    #[arg(long, value_enum, default_value = "user")]
    pub role: Role,
    #[arg(long)]
    pub display_name: Option<String>,
    /// Read the password from the first line of standard input (otherwise a
    /// random one is generated and printed).
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub database: DatabaseConfig,
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(config) => Application::build(*config).await?.run().await,
            Command::Migrate(database) => {
                db::migrate(&database).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Command::User { command: UserCommand::Create(args) } => create_user(args).await,
            Command::Topic { command: TopicCommand::Tail(args) } => tail(args).await,
        }
    }
}

async fn create_user(args: UserCreate) -> anyhow::Result<()> {
    let (password, generated) = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
        (line.trim_end_matches(['\r', '\n']).to_string(), false)
    } else {
        (generate_password(), true)
    };
    db::migrate(&args.database).await?;
    let pool = db::connect(&args.database).await?;
    let accounts = Accounts::new(UserRepository::new(pool));
    let registration = Registration { email: args.email, password: password.clone(), display_name: args.display_name };
    let user = match accounts.create_user(registration, args.role).await {
        Ok(user) => user,
        Err(AuthError::Invalid(errors)) => {
            let rules: Vec<String> = errors.into_iter().map(|e| format!("{}: {}", e.pointer, e.detail)).collect();
            anyhow::bail!("the account breaks these rules: {}", rules.join("; "));
        }
        Err(other) => return Err(other.into()),
    };
    println!("created {} account {} ({})", user.role.as_str(), user.email, user.id);
    if generated {
        println!("password: {password}");
    }
    Ok(())
}

async fn tail(args: TopicTail) -> anyhow::Result<()> {
    use rdkafka::Message;
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Headers;

    let kafka = Kafka::new(&args.kafka)?.context("KAFKA_BROKERS is not set")?;
    let topic = kafka.topic(&args.topic);
    let consumer = kafka.reader(args.from_beginning)?;
    consumer.subscribe(&[&topic]).with_context(|| format!("cannot read {topic}"))?;
    let idle = args.idle_secs.map(std::time::Duration::from_secs);
    let mut printed = 0;
    while args.count.is_none_or(|count| printed < count) {
        let received = match idle {
            Some(idle) => match tokio::time::timeout(idle, consumer.recv()).await {
                Ok(received) => received,
                Err(_) => break,
            },
            None => consumer.recv().await,
        };
        let message = received.with_context(|| format!("cannot read {topic}"))?;
        let headers: serde_json::Map<String, serde_json::Value> = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into()))
                    .collect()
            })
            .unwrap_or_default();
        let payload = message.payload().unwrap_or_default();
        let value = serde_json::from_slice(payload)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(payload).into_owned()));
        let record = serde_json::json!({
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().map(String::from_utf8_lossy),
            "headers": headers,
            "value": value,
        });
        println!("{record}");
        printed += 1;
    }
    Ok(())
}

fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    // Always at least one digit, so the policy holds.
    let mut password: String = (0..19).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    password.push(char::from(b'2' + rng.random_range(0..8)));
    password
}
