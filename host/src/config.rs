//! Configuration: every setting is a command-line flag and an environment
//! variable, with its default declared once, here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Settings of the `serve` command.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address the HTTP server listens on.
    #[arg(long, env = "TODO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// What this process runs: `api`, `worker` or `all`.
    #[arg(long, env = "TODO_ROLE", value_enum, default_value = "all")]
    pub role: ProcessRole,

    /// Certificate chain (PEM) to serve HTTPS with, HTTP/1.1 and HTTP/2;
    /// with TLS_KEY_FILE. Unset: plain HTTP.
    #[arg(long, env = "TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// The private key (PEM) of TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// How often the certificate files are checked for a renewal, in
    /// seconds; a renewed pair serves from the next handshake on.
    #[arg(long, env = "TLS_RELOAD_SECS", default_value_t = 60)]
    pub tls_reload_secs: u64,

    /// Proxies and load balancers whose forwarding header is believed
    /// (comma-separated CIDRs or addresses, e.g. `10.0.0.0/8`): behind
    /// them, the client's address (for rate limits and logs) comes from
    /// TRUSTED_PROXY_HEADER. Unset: the TCP peer is the client.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,

    /// The forwarding header the trusted proxies write:
    /// `x-forwarded-for`, or `forwarded` (RFC 7239). Only that one is
    /// read; the other may come from the client.
    #[arg(long, env = "TRUSTED_PROXY_HEADER", value_enum, default_value_t = ForwardedHeader::XForwardedFor)]
    pub trusted_proxy_header: ForwardedHeader,

    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub plugins: PluginConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub oidc: OidcConfig,

    #[command(flatten)]
    pub rate_limit: RateLimitConfig,

    #[command(flatten)]
    pub kafka: KafkaConfig,

    #[command(flatten)]
    pub events: EventConfig,

    #[command(flatten)]
    pub commands: CommandConfig,

    #[command(flatten)]
    pub redis: RedisConfig,

    /// How long a shutdown (SIGTERM/SIGINT) waits for in-flight requests
    /// before it stops serving anyway, in seconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    #[command(flatten)]
    pub cors: CorsConfig,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// The built browser app (`web/dist`, made by `npm run build` in web/)
    /// to serve at `/`: the task app and the operator console. Unset: no app.
    #[arg(long, env = "WEB_DIR")]
    pub web_dir: Option<PathBuf>,
}

/// A forwarding header (`TRUSTED_PROXY_HEADER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
}

impl ForwardedHeader {
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// What a `serve` process runs; API and worker processes scale apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProcessRole {
    /// The HTTP API: it runs the requests' writes and produces their async
    /// commands; no background work but following plugin reloads.
    Api,
    /// The background work: outbox relay, command consumer, event handlers
    /// and scheduled jobs; its listener serves only health and metrics.
    Worker,
    /// Both, in one process.
    All,
}

impl ProcessRole {
    pub fn serves_api(self) -> bool {
        self != Self::Worker
    }

    pub fn runs_workers(self) -> bool {
        self != Self::Api
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Worker => "worker",
            Self::All => "all",
        }
    }
}

/// What the database URLs reach (`DATABASE_POOL_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolMode {
    Session,
    Transaction,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// What DATABASE_URL (and DATABASE_READ_URL) reach: `session`, a
    /// PostgreSQL server or a pooler in session mode; `transaction`, a
    /// pooler in transaction mode (PgBouncer 1.21+ with
    /// `max_prepared_statements`), which carries no session: the host then
    /// sends no startup options and keeps its roles' settings as role
    /// defaults, and migrates through DATABASE_DIRECT_URL.
    #[arg(long, env = "DATABASE_POOL_MODE", value_enum, default_value_t = PoolMode::Session)]
    pub database_pool_mode: PoolMode,

    /// The PostgreSQL server itself, when DATABASE_URL is a pooler in
    /// transaction mode: migrations connect to it (they hold a session
    /// lock). Default: DATABASE_URL.
    #[arg(long, env = "DATABASE_DIRECT_URL", hide_env_values = true)]
    pub database_direct_url: Option<String>,

    /// Largest number of pooled PostgreSQL connections.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,

    /// Write transactions this process runs at once; single writes arriving
    /// while all are busy queue and share the next one (group commit).
    #[arg(long, env = "WRITE_TRANSACTIONS", default_value_t = 2)]
    pub write_transactions: u32,

    /// How long a request waits for a pooled connection, in milliseconds.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub db_acquire_timeout_ms: u64,

    /// Server-side limit on one SQL statement (statement_timeout and
    /// lock_timeout), in milliseconds; the host-call timeout of the `sql` import.
    #[arg(long, env = "SQL_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub sql_statement_timeout_ms: u64,

    /// PostgreSQL streaming replica for the reads that miss the cache (its
    /// server, database and TLS; the host's and the plugins' roles log in
    /// as they do on the primary). Unset: every read goes to the primary.
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true)]
    pub database_read_url: Option<String>,

    /// How far the replica may fall behind the primary before reads skip
    /// it, in milliseconds.
    #[arg(long, env = "REPLICA_MAX_LAG_MS", default_value_t = 5000)]
    pub replica_max_lag_ms: u64,

    /// How often the replica's replay position (and the primary's) is
    /// read, in milliseconds.
    #[arg(long, env = "REPLICA_POLL_MS", default_value_t = 100)]
    pub replica_poll_ms: u64,
}

impl DatabaseConfig {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }
}

#[derive(Debug, Clone, Args)]
pub struct PluginConfig {
    /// Directory holding NAME.wasm + NAME.toml plugins.
    #[arg(long, env = "PLUGIN_DIR", default_value = "/var/lib/todo-host/plugins")]
    pub plugin_dir: PathBuf,

    /// Directory for compiled plugins, keyed by content hash (default: a
    /// directory under the system's temporary directory).
    #[arg(long, env = "PLUGIN_CACHE_DIR")]
    pub plugin_cache_dir: Option<PathBuf>,

    /// Most bytes of compiled plugins PLUGIN_CACHE_DIR keeps: past it, the
    /// start and each compilation remove those loaded the longest ago first.
    #[arg(long, env = "PLUGIN_CACHE_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub plugin_cache_max_bytes: u64,

    /// The storage plugin serving tasks (a name in PLUGIN_DIR).
    #[arg(long, env = "STORAGE_PLUGIN", default_value = "postgres-store")]
    pub storage_plugin: String,

    /// Plugin instances alive at once; further calls wait for a free slot.
    #[arg(long, env = "PLUGIN_MAX_INSTANCES", default_value_t = 128)]
    pub plugin_max_instances: u32,

    /// Redis pub/sub channel on which replicas announce plugin reloads and
    /// rollbacks to each other (one per deployment).
    #[arg(long, env = "PLUGIN_ANNOUNCE_CHANNEL", default_value = "todo-host:plugin-announcements")]
    pub plugin_announce_channel: String,

    /// Secret the database passwords of the plugins' roles are derived
    /// from; every replica needs the same one (default: derived from
    /// JWT_SECRET).
    #[arg(long, env = "PLUGIN_DB_SECRET", hide_env_values = true)]
    pub plugin_db_secret: Option<String>,

    /// Connections of each `sql` plugin's own pool, unless its manifest
    /// sets `limits.db_connections`.
    #[arg(long, env = "PLUGIN_DB_CONNECTIONS", default_value_t = 20)]
    pub plugin_db_connections: u32,

    /// Largest plugin bundle `PUT /admin/plugins/{name}` accepts, in bytes
    /// (a Python component is ~20 MB).
    #[arg(long, env = "PLUGIN_UPLOAD_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub plugin_upload_max_bytes: usize,

    /// How often each process checks for uploaded plugins it has not
    /// installed yet (an announcement it missed) and records what it
    /// serves, in seconds.
    #[arg(long, env = "PLUGIN_SYNC_SECS", default_value_t = 10)]
    pub plugin_sync_secs: u64,

    /// The event handler whose `history` export answers
    /// GET /tasks/{id}/history.
    #[arg(long, env = "HISTORY_PLUGIN", default_value = "audit-log")]
    pub history_plugin: String,
}

impl PluginConfig {
    pub fn cache_dir(&self) -> PathBuf {
        self.plugin_cache_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("todo-host-plugin-cache"))
    }
}

#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// HS256 signing secret for access tokens, at least 32 bytes. Required
    /// unless TODO_DEV_MODE is set.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Development mode: without JWT_SECRET, sign tokens with a random
    /// per-process secret (tokens die with the process).
    #[arg(long, env = "TODO_DEV_MODE", default_value_t = false)]
    pub dev_mode: bool,

    /// Lifetime of an access token, in seconds.
    #[arg(long, env = "ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,

    /// Lifetime of a refresh token, in seconds (30 days); each refresh
    /// hands out a new one with a full lifetime. Needs REDIS_URL.
    #[arg(long, env = "REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 60 * 60)]
    pub refresh_token_ttl_secs: u64,

    /// Login attempts one account may fail within the window, from any
    /// number of addresses (counted in Redis); the next are refused (429).
    #[arg(long, env = "LOGIN_FAILURE_LIMIT", default_value_t = 10)]
    pub login_failure_limit: u32,

    /// The window of `LOGIN_FAILURE_LIMIT`, from an account's first
    /// failed attempt, in seconds.
    #[arg(long, env = "LOGIN_FAILURE_WINDOW_SECS", default_value_t = 900)]
    pub login_failure_window_secs: u64,

    /// How long a password reset token (`POST /auth/password-reset`, sent
    /// as a `notifications` record) may be used, in seconds.
    #[arg(long, env = "PASSWORD_RESET_TTL_SECS", default_value_t = 900)]
    pub password_reset_ttl_secs: u64,
}

/// Access tokens of an external OpenID Connect provider, accepted beside
/// the host's own.
#[derive(Debug, Clone, Args)]
pub struct OidcConfig {
    /// The provider's issuer (`iss`), e.g.
    /// `https://id.example.com/realms/todo`. Unset: only the host's own
    /// tokens are accepted.
    #[arg(long, env = "OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// Audiences (`aud`) a token must name one of (comma-separated), e.g.
    /// the client id the provider issues the tokens for.
    #[arg(long, env = "OIDC_AUDIENCE", value_delimiter = ',')]
    pub oidc_audience: Vec<String>,

    /// The provider's key set. Unset: the `jwks_uri` of
    /// `OIDC_ISSUER/.well-known/openid-configuration`.
    #[arg(long, env = "OIDC_JWKS_URL")]
    pub oidc_jwks_url: Option<String>,

    /// How soon a token naming a key the provider's set lacks may fetch the
    /// set again, in seconds (keys rotate; made-up ones must not make the
    /// host hammer the provider).
    #[arg(long, env = "OIDC_JWKS_REFRESH_SECS", default_value_t = 30)]
    pub oidc_jwks_refresh_secs: u64,

    /// Signature algorithms accepted (asymmetric only).
    #[arg(long, env = "OIDC_ALGORITHMS", value_delimiter = ',', default_value = "RS256,ES256")]
    pub oidc_algorithms: Vec<String>,

    /// Where a token lists the user's roles, as a path of claims
    /// (Keycloak: `realm_access.roles`); an array of strings, or a string
    /// of space-separated ones.
    #[arg(long, env = "OIDC_ROLE_CLAIM", default_value = "realm_access.roles")]
    pub oidc_role_claim: String,

    /// Provider roles that make a host role (`provider-role=role`,
    /// comma-separated, the first one the token holds wins); a user with
    /// none of them is a `user`.
    #[arg(long, env = "OIDC_ROLE_MAP", value_delimiter = ',', default_value = "todo-admin=admin,todo-viewer=viewer")]
    pub oidc_role_map: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RateLimitConfig {
    /// Sustained requests per second per user (or per client IP when
    /// anonymous) on every route but /auth/*.
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = 50)]
    pub rate_limit_per_second: u32,

    /// Requests allowed in a burst above the sustained rate.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 100)]
    pub rate_limit_burst: u32,

    /// Sustained requests per minute per client IP on /auth/*.
    #[arg(long, env = "AUTH_RATE_LIMIT_PER_MINUTE", default_value_t = 20)]
    pub auth_rate_limit_per_minute: u32,

    /// Burst allowance on /auth/*.
    #[arg(long, env = "AUTH_RATE_LIMIT_BURST", default_value_t = 10)]
    pub auth_rate_limit_burst: u32,
}

#[derive(Debug, Clone, Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers (host:port,...). Unset: no relay, no event
    /// handlers and no async commands; task events wait in the outbox.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Prepended to every topic and consumer group name (e.g. `staging.`).
    #[arg(long, env = "KAFKA_TOPIC_PREFIX", default_value = "")]
    pub kafka_topic_prefix: String,

    /// Partitions of the topics the host creates when they are missing.
    #[arg(long, env = "KAFKA_TOPIC_PARTITIONS", default_value_t = 6)]
    pub kafka_topic_partitions: i32,

    /// Replicas of each partition of the topics the host creates (1 for a
    /// single development broker; 3 on a cluster).
    #[arg(long, env = "KAFKA_REPLICATION_FACTOR", default_value_t = 1)]
    pub kafka_replication_factor: i32,

    /// `min.insync.replicas` of the topics the host creates: with acks=all,
    /// a write is acknowledged once this many replicas have it (unset: the
    /// broker's default).
    #[arg(long, env = "KAFKA_MIN_INSYNC_REPLICAS")]
    pub kafka_min_insync_replicas: Option<u32>,

    /// How long the producer keeps trying to deliver a record, in milliseconds.
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 10_000)]
    pub kafka_message_timeout_ms: u64,

    /// Longest a consumer's fetch waits at the broker for new records, in
    /// milliseconds (an idle consumer asks the broker once per wait).
    #[arg(long, env = "KAFKA_FETCH_WAIT_MAX_MS", default_value_t = 500)]
    pub kafka_fetch_wait_max_ms: u64,

    /// How the brokers are reached: `plaintext` (librdkafka's default),
    /// `ssl`, `sasl_plaintext` or `sasl_ssl`. Over TLS the broker's
    /// certificate and host name are verified.
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", value_enum)]
    pub kafka_security_protocol: Option<KafkaSecurityProtocol>,

    /// The SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,

    /// The SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// The SASL password.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,

    /// CA certificate (PEM) the brokers' certificates must chain to
    /// (default: the system's roots).
    #[arg(long, env = "KAFKA_SSL_CA_FILE")]
    pub kafka_ssl_ca_file: Option<PathBuf>,

    /// A file of librdkafka properties (`name=value` lines) for every
    /// client, after the settings above; `KAFKA_PROPERTY_<NAME>` variables
    /// come after it (`KAFKA_PROPERTY_SSL_KEY_LOCATION` sets
    /// `ssl.key.location`).
    #[arg(long, env = "KAFKA_PROPERTIES_FILE")]
    pub kafka_properties_file: Option<PathBuf>,
}

/// `security.protocol` of librdkafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaSecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl KafkaSecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct EventConfig {
    /// Run the outbox relay (publishing task events) in this process.
    #[arg(long, env = "OUTBOX_RELAY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox_relay_enabled: bool,

    /// Outbox records published per relay transaction.
    #[arg(long, env = "OUTBOX_BATCH_SIZE", default_value_t = 500)]
    pub outbox_batch_size: u32,

    /// Fallback poll of the outbox when no commit notification arrives, in milliseconds.
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 1000)]
    pub outbox_poll_ms: u64,

    /// Redis pub/sub channel on which API processes (`TODO_ROLE=api`) wake
    /// the workers' outbox relays after their commits (one per deployment).
    #[arg(long, env = "OUTBOX_WAKE_CHANNEL", default_value = "todo-host:outbox-wake")]
    pub outbox_wake_channel: String,

    /// How long published outbox records are kept, in seconds.
    #[arg(long, env = "OUTBOX_RETENTION_SECS", default_value_t = 3600)]
    pub outbox_retention_secs: u64,

    /// Event-handler plugins to run (comma-separated names in PLUGIN_DIR).
    /// Unset: every event-handler plugin there, and a full reload starts
    /// those added and stops those removed; empty: none.
    #[arg(long, env = "EVENT_HANDLERS")]
    pub event_handlers: Option<String>,

    /// Calls of a handler for one event before it is dead-lettered.
    #[arg(long, env = "HANDLER_MAX_ATTEMPTS", default_value_t = 3)]
    pub handler_max_attempts: u32,

    /// Delay before the first retry of a handler, in milliseconds; doubled on each further retry.
    #[arg(long, env = "HANDLER_RETRY_BACKOFF_MS", default_value_t = 200)]
    pub handler_retry_backoff_ms: u64,

    /// Most events of a partition a handler takes in one transaction.
    #[arg(long, env = "HANDLER_BATCH_MAX", default_value_t = 64)]
    pub handler_batch_max: usize,

    /// How long a handler's batch waits for more events once it has one, in milliseconds.
    #[arg(long, env = "HANDLER_BATCH_LINGER_MS", default_value_t = 5)]
    pub handler_batch_linger_ms: u64,

    /// Live event streams (`GET /tasks/events`) one user may hold open on
    /// one API process at once; more are refused with a 429.
    #[arg(long, env = "LIVE_STREAMS_PER_USER", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub live_streams_per_user: u32,
}

impl EventConfig {
    /// The handlers asked for by name, or `None` for all of PLUGIN_DIR.
    pub fn handler_names(&self) -> Option<Vec<String>> {
        self.event_handlers
            .as_ref()
            .map(|names| names.split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_string).collect())
    }
}

#[derive(Debug, Clone, Args)]
pub struct CommandConfig {
    /// Apply async commands (`Prefer: respond-async`) in this process.
    #[arg(long, env = "COMMAND_CONSUMER_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub command_consumer_enabled: bool,

    /// Most commands applied in one transaction.
    #[arg(long, env = "COMMAND_BATCH_MAX", default_value_t = 500)]
    pub command_batch_max: usize,

    /// How long a batch waits for more commands once it has one, in milliseconds.
    #[arg(long, env = "COMMAND_BATCH_LINGER_MS", default_value_t = 5)]
    pub command_batch_linger_ms: u64,

    /// How often a command may fail for a reason that is neither its own
    /// nor an outage (a deadline, a refused commit) before it is failed and
    /// moved to `task-commands.dlq`. Keep it below the storage plugin's
    /// `circuit_traps`: each deadline counts towards its circuit.
    #[arg(long, env = "COMMAND_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub command_max_attempts: u32,
}

#[derive(Debug, Clone, Args)]
pub struct RedisConfig {
    /// Redis URL (redis://host:port/db). Unset: pending async commands are
    /// not tracked (GET /commands/{id} answers once they are applied).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// CA certificate (PEM) a `rediss://` server's certificate must chain
    /// to (default: the system's roots).
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) presented to a `rediss://` server that asks
    /// for one; with REDIS_CLIENT_KEY_FILE.
    #[arg(long, env = "REDIS_CLIENT_CERT_FILE")]
    pub redis_client_cert_file: Option<PathBuf>,

    /// The private key (PEM) of REDIS_CLIENT_CERT_FILE.
    #[arg(long, env = "REDIS_CLIENT_KEY_FILE")]
    pub redis_client_key_file: Option<PathBuf>,

    /// Timeout of one Redis command, in milliseconds; a slower Redis counts as down.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,

    /// How long an `Idempotency-Key` and the response it replays are kept, in seconds.
    #[arg(long, env = "IDEMPOTENCY_TTL_SECS", default_value_t = 24 * 60 * 60)]
    pub idempotency_ttl_secs: u64,

    /// Run the overdue job (announces tasks past due as `task.overdue`);
    /// needs Redis for its lock.
    #[arg(long, env = "OVERDUE_JOB_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub overdue_job_enabled: bool,

    /// How often the overdue job runs (once per interval across all replicas), in seconds.
    #[arg(long, env = "OVERDUE_INTERVAL_SECS", default_value_t = 60)]
    pub overdue_interval_secs: u64,

    /// How often the retention job prunes old bookkeeping rows, in seconds.
    #[arg(long, env = "RETENTION_INTERVAL_SECS", default_value_t = 3600)]
    pub retention_interval_secs: u64,

    /// How long an async command's outcome is kept (GET /commands/{id}), in seconds.
    #[arg(long, env = "COMMAND_RESULT_RETENTION_SECS", default_value_t = 86_400)]
    pub command_result_retention_secs: u64,

    /// How long processed-event ledger rows, job runs and overdue notices are
    /// kept, in seconds (keep above the Kafka topics' retention).
    #[arg(long, env = "LEDGER_RETENTION_SECS", default_value_t = 14 * 86_400)]
    pub ledger_retention_secs: u64,

    /// Lease of a scheduled job's lock, in milliseconds: a crashed holder is
    /// replaced within this time.
    #[arg(long, env = "JOB_LOCK_TTL_MS", default_value_t = 30_000)]
    pub job_lock_ttl_ms: u64,

    /// Serve task reads from Redis (cache-aside).
    #[arg(long, env = "CACHE_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub cache_enabled: bool,

    /// How long a cached task or listing page lives, in seconds.
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 300)]
    pub cache_ttl_secs: u64,
}

impl RedisConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

#[derive(Debug, Clone, Args)]
pub struct CorsConfig {
    /// Origins browsers may call the API from (comma-separated, e.g.
    /// `https://app.example.com`; `*` for any). Unset: no CORS headers.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,

    /// Methods allowed cross-origin.
    #[arg(long, env = "CORS_ALLOWED_METHODS", value_delimiter = ',', default_value = "GET,POST,PATCH,DELETE")]
    pub cors_allowed_methods: Vec<String>,

    /// Request headers allowed cross-origin.
    #[arg(
        long,
        env = "CORS_ALLOWED_HEADERS",
        value_delimiter = ',',
        default_value = "authorization,content-type,if-match,if-none-match,idempotency-key,prefer,x-request-id,traceparent"
    )]
    pub cors_allowed_headers: Vec<String>,
}
