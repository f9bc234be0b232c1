//! Building the application from its configuration, and serving it until a
//! shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use rand::RngCore;
use tokio::net::TcpListener;

use rdkafka::producer::Producer;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::auth::{
    AccountManager, Accounts, ExternalTokens, LoginLockout, OidcProvider, PasswordResets, Sessions, TokenKeys,
    UserRepository,
};
use crate::background::Background;
use crate::client_addr::TrustedProxies;
use crate::commands::{CommandBus, CommandConsumer, CommandStatus};
use crate::config::{AuthConfig, ProcessRole, ServeConfig};
use crate::db::replica::ReadReplica;
use crate::db::{self, HostKey};
use crate::events::handlers::{DeadLetterRecorder, DeadLetters, HandlerSupervisor};
use crate::events::live::LiveEvents;
use crate::events::relay::OutboxRelay;
use crate::http::tls::Https;
use crate::http::{self, HttpLimits, Services};
use crate::idempotency::IdempotencyStore;
use crate::jobs::Scheduler;
use crate::jobs::overdue::OverdueJob;
use crate::jobs::retention::RetentionJob;
use crate::kafka::{Kafka, SharedProducer, topics};
use crate::outbox::OutboxWaker;
use crate::plugins::{
    ArtifactCache, BundleStore, PluginBroadcast, PluginDatabases, PluginDelivery, PluginEngine, PluginRegistry,
    PluginRuntime, Roster, StorageChanged,
};
use crate::ratelimit::Quota;
use crate::redis_client::RedisClient;
use crate::tasks::{CursorSeal, GroupCommit, TaskCache, TaskService, TaskStore};

/// Shortest JWT secret accepted: 256 bits for HS256.
const MIN_SECRET_BYTES: usize = 32;

/// How long background work gets to stop at least, whatever the requests
/// left of the shutdown budget.
const WORKER_STOP_MINIMUM: Duration = Duration::from_secs(1);

pub struct Application {
    listener: TcpListener,
    /// `None`: plain HTTP.
    https: Option<Https>,
    router: Router,
    role: ProcessRole,
    workers: Workers,
    shutdown_timeout: Duration,
    /// Ends the live event streams, which would otherwise hold the
    /// graceful shutdown for as long as their tokens live.
    closing_streams: CancellationToken,
}

/// The background work of a process — outbox relay, event handlers,
/// command consumer, jobs, group commit — and what stops it.
struct Workers {
    background: Background,
    producer: Option<SharedProducer>,
    /// Wakes the relay after writes commit.
    outbox: OutboxWaker,
    /// Signs what the workers write into the outbox themselves.
    key: HostKey,
}

impl Application {
    /// Connects, migrates, loads the plugins, starts the background work
    /// and binds the listener.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        // First: whatever the background work records from its start on counts.
        let metrics = http::metrics::install_recorder()?;
        // A certificate that does not load fails the start before anything else.
        let https = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some(Https::load(cert, key).await?),
            _ => None,
        };
        let secret = signing_secret(&config.auth)?;
        let keys = TokenKeys::new(&secret, Duration::from_secs(config.auth.access_token_ttl_secs));
        db::migrate(&config.database).await?;
        let pool = db::connect(&config.database).await?;
        if db::is_superuser(&pool).await? {
            tracing::warn!(
                "THE DATABASE ROLE OF DATABASE_URL IS A SUPERUSER: a superuser's sessions can read the server's files \
                 and run its programs, and connect as any role. Connect as a role that owns the host's tables, with \
                 CREATEROLE and CREATE on the database, and nothing more (docs/operations.md)"
            );
        }
        let key = HostKey::load(&pool).await?;
        let redis = RedisClient::connect(&config.redis).await?;

        let cache = TaskCache::new(
            redis.clone().filter(|_| config.redis.cache_enabled),
            Duration::from_secs(config.redis.cache_ttl_secs),
            &key,
        );
        let replica = read_replica(&config, &pool, &cache)?;

        let outbox = OutboxWaker::default();
        let bundles = BundleStore::new(pool.clone());
        // Before loading: what was uploaded while this process was not
        // running serves from its start.
        if let Err(error) = PluginDelivery::install_deployed(&bundles, &config.plugins.plugin_dir).await {
            tracing::error!(
                error = %format!("{error:#}"),
                "cannot install the uploaded plugins: serving the plugin directory as it is"
            );
        }
        let plugins =
            load_plugins(&config, &pool, &key, &secret, redis.clone(), outbox.clone(), replica.clone()).await?;
        let broadcast =
            redis.clone().map(|redis| PluginBroadcast::new(redis, config.plugins.plugin_announce_channel.clone()));
        let store = TaskStore::new(plugins.clone(), cache.clone(), pool.clone(), config.plugins.history_plugin.clone());
        let sync_every = Duration::from_secs(config.plugins.plugin_sync_secs.max(1));
        let storage_changed: StorageChanged = {
            let store = store.clone();
            Arc::new(move || {
                let store = store.clone();
                Box::pin(async move { store.storage_changed().await })
            })
        };
        let delivery = Arc::new(PluginDelivery::new(
            plugins.clone(),
            bundles,
            config.plugins.plugin_dir.clone(),
            broadcast.clone(),
            Roster::new(pool.clone(), config.role.as_str(), sync_every),
            storage_changed,
        ));
        let command_status = CommandStatus::new(pool.clone(), redis.clone());

        let mut workers = Workers { background: Background::default(), producer: None, outbox, key: key.clone() };
        workers.background.spawn_until_shutdown(http::metrics::upkeep(metrics.clone()));
        if let Some(replica) = &replica {
            let every = Duration::from_millis(config.database.replica_poll_ms.max(1));
            workers.background.spawn(replica.clone().watch(every, workers.background.shutdown()));
        }
        if let Some(broadcast) = broadcast {
            let delivery = delivery.clone();
            let follow = broadcast.follow(workers.background.shutdown(), move |action| {
                let delivery = delivery.clone();
                async move { delivery.follow(action).await }
            });
            workers.background.spawn(follow);
        }
        workers.background.spawn(delivery.clone().poll(sync_every, workers.background.shutdown()));
        if let Some(https) = &https {
            let every = Duration::from_secs(config.tls_reload_secs.max(1));
            workers.background.spawn(https.clone().follow_renewals(every, workers.background.shutdown()));
        }
        workers.carry_outbox_wakes(&config, redis.as_ref());
        if config.role.runs_workers() {
            match &redis {
                Some(redis) => workers.schedule(&config, redis, &store, &pool),
                None => tracing::warn!("REDIS_URL is not set: the scheduled jobs (which need their lock) do not run"),
            }
        }
        let kafka = Kafka::new(&config.kafka)?;
        let commands = match kafka.clone() {
            Some(kafka) => Some(workers.start(&config, kafka, &plugins, &store, &pool, &command_status).await?),
            None => {
                tracing::warn!("KAFKA_BROKERS is not set: task events stay in the outbox, no event handler runs");
                None
            }
        };
        // After `start`, which makes sure the topics exist.
        let live_events = match (kafka, config.role.serves_api()) {
            (Some(kafka), true) => {
                let live = LiveEvents::new(config.events.live_streams_per_user as usize);
                workers.background.spawn(live.clone().follow(kafka, workers.background.shutdown()));
                Some(live)
            }
            _ => None,
        };

        let refresh_ttl = Duration::from_secs(config.auth.refresh_token_ttl_secs);
        let sessions = Sessions::new(keys, UserRepository::new(pool.clone()), redis.clone(), refresh_ttl);
        let login_lockout = LoginLockout::new(
            redis.clone(),
            config.auth.login_failure_limit,
            Duration::from_secs(config.auth.login_failure_window_secs),
        );
        let accounts = Accounts::new(UserRepository::new(pool.clone()));
        let account_manager = AccountManager::new(
            accounts.clone(),
            UserRepository::new(pool.clone()),
            sessions.clone(),
            login_lockout.clone(),
        );
        let state = Arc::new(Services {
            role: config.role,
            tasks: TaskService::new(
                store.clone(),
                GroupCommit::new(store, config.database.write_transactions, &workers.background),
                cache,
                UserRepository::new(pool.clone()),
                CursorSeal::new(&key),
            ),
            commands,
            command_status,
            idempotency: IdempotencyStore::new(redis.clone(), Duration::from_secs(config.redis.idempotency_ttl_secs)),
            redis,
            accounts: accounts.clone(),
            account_manager: account_manager.clone(),
            password_resets: PasswordResets::new(
                pool.clone(),
                key.clone(),
                Duration::from_secs(config.auth.password_reset_ttl_secs),
                accounts,
                account_manager,
                workers.outbox.clone(),
            ),
            external_tokens: OidcProvider::new(&config.oidc)?
                .map(|provider| Arc::new(ExternalTokens::new(provider, UserRepository::new(pool.clone())))),
            login_lockout,
            sessions,
            dead_letters: DeadLetters::new(pool.clone(), plugins.clone()),
            live_events: live_events.clone(),
            plugins,
            delivery,
            pool,
            replica,
            kafka: workers.producer.clone(),
            metrics,
        });
        if let Some(external) = &state.external_tokens {
            external.prefetch_keys();
        }
        let limits = HttpLimits {
            api_quota: Quota::per_second(config.rate_limit.rate_limit_per_second, config.rate_limit.rate_limit_burst),
            auth_quota: Quota::per_minute(
                config.rate_limit.auth_rate_limit_per_minute,
                config.rate_limit.auth_rate_limit_burst,
            ),
            max_body_bytes: config.max_body_bytes,
            plugin_upload_max_bytes: config.plugins.plugin_upload_max_bytes,
            cors: http::cors::layer(&config.cors)?,
            trusted_proxies: TrustedProxies::parse(&config.trusted_proxies, config.trusted_proxy_header)?,
            background: workers.background.clone(),
            web_dir: config.web_dir.clone(),
        };
        let listener =
            TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let shutdown_timeout = Duration::from_secs(config.shutdown_timeout_secs);
        let router = http::router(state, limits)?;
        let closing_streams = live_events.as_ref().map_or_else(CancellationToken::new, LiveEvents::closing);
        Ok(Self { listener, https, router, role: config.role, workers, shutdown_timeout, closing_streams })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGINT or SIGTERM; then stops accepting, lets in-flight
    /// requests finish (for up to `SHUTDOWN_TIMEOUT_SECS`) and stops the
    /// background work: consumers commit their offsets, the producer
    /// flushes, locks are released and the pools close.
    pub async fn run(self) -> anyhow::Result<()> {
        let address = self.local_addr()?;
        let scheme = if self.https.is_some() { "https" } else { "http" };
        tracing::info!(%address, role = self.role.as_str(), "listening on {scheme}://{address}");
        let service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        let (served, deadline) = match self.https {
            None => {
                let stopping = CancellationToken::new();
                let signalled = stopping.clone();
                let server = axum::serve(self.listener, service).with_graceful_shutdown(async move {
                    shutdown_signal().await;
                    signalled.cancel();
                });
                let closing_streams = self.closing_streams;
                serve_until_stopped(server.into_future(), stopping, self.shutdown_timeout, || closing_streams.cancel())
                    .await
            }
            Some(https) => {
                let handle = axum_server::Handle::new();
                let listener = self.listener.into_std().context("cannot hand the listener over")?;
                let server = axum_server::from_tcp_rustls(listener, https.config)
                    .context("cannot serve HTTPS on the listener")?
                    .handle(handle.clone())
                    .serve(service);
                let stopping = CancellationToken::new();
                let signalled = stopping.clone();
                tokio::spawn(async move {
                    shutdown_signal().await;
                    signalled.cancel();
                });
                let timeout = self.shutdown_timeout;
                let closing_streams = self.closing_streams;
                let stopped = serve_until_stopped(server, stopping, timeout, || {
                    closing_streams.cancel();
                    handle.graceful_shutdown(Some(timeout))
                })
                .await;
                // Connections that outlived the timeout are cut, not left behind.
                handle.shutdown();
                stopped
            }
        };
        self.workers.stop(deadline).await;
        tracing::info!("stopped");
        served.context("the HTTP server failed")
    }
}

/// Runs `server` until it ends or `stopping` fires; then `drain` (stop
/// accepting, finish what is in flight) gets `timeout`. Answers how it
/// ended and the deadline the background work must meet: one budget from
/// the signal on, requests first.
async fn serve_until_stopped<E>(
    server: impl Future<Output = Result<(), E>>,
    stopping: CancellationToken,
    timeout: Duration,
    drain: impl FnOnce(),
) -> (Result<(), E>, tokio::time::Instant) {
    let mut server = std::pin::pin!(server);
    let finished = tokio::select! {
        served = &mut server => Some(served),
        _ = stopping.cancelled() => None,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let served = match finished {
        Some(served) => served,
        None => {
            drain();
            tokio::time::timeout_at(deadline, server).await.unwrap_or_else(|_| {
                tracing::warn!(timeout_secs = timeout.as_secs(), "in-flight requests outlived the shutdown timeout");
                Ok(())
            })
        }
    };
    (served, deadline)
}

impl Workers {
    /// Carries the outbox's wake between processes: an API process
    /// announces its commits to the workers' relays, a process with a relay
    /// follows the announcements. Without Redis, a relay's poll publishes
    /// what other processes committed.
    fn carry_outbox_wakes(&mut self, config: &ServeConfig, redis: Option<&RedisClient>) {
        let Some(redis) = redis else { return };
        let channel = config.events.outbox_wake_channel.clone();
        let shutdown = self.background.shutdown();
        match config.role.runs_workers() {
            true => self.background.spawn(self.outbox.clone().follow(redis.clone(), channel, shutdown)),
            false => self.background.spawn(self.outbox.clone().announce(redis.clone(), channel, shutdown)),
        }
    }

    /// Starts the scheduled jobs (each once per slot across replicas).
    fn schedule(&mut self, config: &ServeConfig, redis: &RedisClient, store: &TaskStore, pool: &PgPool) {
        let settings = &config.redis;
        let lock_ttl = Duration::from_millis(settings.job_lock_ttl_ms);
        if settings.overdue_job_enabled {
            let job = OverdueJob::new(store.clone(), pool.clone(), self.key.clone(), self.outbox.clone());
            let interval = Duration::from_secs(settings.overdue_interval_secs);
            self.background
                .spawn(Scheduler::new(job, redis.clone(), interval, lock_ttl).run(self.background.shutdown()));
        }
        let retention = RetentionJob::new(
            pool.clone(),
            Duration::from_secs(settings.command_result_retention_secs),
            Duration::from_secs(settings.ledger_retention_secs),
        );
        let interval = Duration::from_secs(settings.retention_interval_secs);
        self.background
            .spawn(Scheduler::new(retention, redis.clone(), interval, lock_ttl).run(self.background.shutdown()));
    }

    /// Starts what runs against the broker (in an API process: only the
    /// producer) and answers the command bus.
    async fn start(
        &mut self,
        config: &ServeConfig,
        kafka: Kafka,
        plugins: &PluginRegistry,
        store: &TaskStore,
        pool: &PgPool,
        command_status: &CommandStatus,
    ) -> anyhow::Result<CommandBus> {
        if let Err(error) = kafka.ensure_topics(&topics::ALL).await {
            return Err(kafka.explained(error).await);
        }
        self.background.spawn(kafka.watch().clone().run(kafka.clone(), self.background.shutdown()));
        let producer = SharedProducer::new(&kafka)?;
        self.producer = Some(producer.clone());
        let timeout = Duration::from_millis(config.kafka.kafka_message_timeout_ms);
        let bus = CommandBus::new(&kafka, producer.clone(), command_status.clone(), timeout);
        if !config.role.runs_workers() {
            return Ok(bus);
        }
        if config.events.outbox_relay_enabled {
            let relay =
                OutboxRelay::new(pool.clone(), kafka.clone(), producer.clone(), self.outbox.clone(), &config.events);
            self.background.spawn(relay.run(self.background.shutdown()));
        }
        plugins
            .run_handlers(Arc::new(HandlerSupervisor::new(
                kafka.clone(),
                DeadLetterRecorder::new(pool.clone(), self.key.clone(), self.outbox.clone()),
                pool.clone(),
                config.events.clone(),
                self.background.clone(),
            )))
            .await?;
        if config.commands.command_consumer_enabled {
            let consumer = CommandConsumer::new(
                &kafka,
                store.clone(),
                pool.clone(),
                self.key.clone(),
                self.outbox.clone(),
                &config.commands,
            )?;
            self.background.spawn(consumer.run(self.background.shutdown()));
        }
        Ok(bus)
    }

    /// Stops the background work and flushes the producer by `deadline`,
    /// giving the work at least `WORKER_STOP_MINIMUM` when requests took the
    /// rest of the shutdown budget.
    async fn stop(self, deadline: tokio::time::Instant) {
        let deadline = deadline.max(tokio::time::Instant::now() + WORKER_STOP_MINIMUM);
        if !self.background.stop(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            tracing::warn!("background work did not stop in time");
        }
        if let Some(producer) = self.producer {
            // Commands already acknowledged are on the broker; this only
            // waits for records still in flight.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now()).min(Duration::from_secs(5));
            let producer = producer.current();
            let _ = tokio::time::timeout(left, tokio::task::spawn_blocking(move || producer.flush(left))).await;
        }
    }
}

/// The plugins of `config`, loaded: the engine, each plugin's role and pool
/// (passwords derived from PLUGIN_DB_SECRET, else from the token `secret`),
/// the storage plugin and the event handlers.
pub async fn load_plugins(
    config: &ServeConfig,
    pool: &PgPool,
    key: &HostKey,
    secret: &[u8],
    redis: Option<RedisClient>,
    outbox: OutboxWaker,
    replica: Option<ReadReplica>,
) -> anyhow::Result<Arc<PluginRegistry>> {
    let artifacts = ArtifactCache::open(&config.plugins.cache_dir(), config.plugins.plugin_cache_max_bytes);
    let engine = PluginEngine::new(config.plugins.plugin_max_instances, artifacts)?;
    let plugin_secret = config.plugins.plugin_db_secret.as_ref().map_or(secret, |secret| secret.as_bytes());
    let databases = PluginDatabases::new(
        pool.clone(),
        key.clone(),
        db::connect_options(&config.database)?,
        plugin_secret.to_vec(),
        config.plugins.plugin_db_connections,
        replica,
        config.database.database_pool_mode,
    );
    let runtime = Arc::new(PluginRuntime::new(engine, databases, redis, outbox, config.plugins.plugin_max_instances));
    let registry = PluginRegistry::load(
        runtime,
        config.plugins.plugin_dir.clone(),
        config.plugins.storage_plugin.clone(),
        config.events.handler_names(),
    )
    .await?;
    Ok(Arc::new(registry))
}

/// The read replica of DATABASE_READ_URL, if set. It answers only reads
/// whose cache stamps say how far it must have replayed, so the cache is
/// what lets it serve; a stamp must outlive what a replica may lag (the lag
/// bound, plus as long again since the poll that measured it: see
/// `ReadReplica::serves`), and the poll must come more often than that.
fn read_replica(config: &ServeConfig, pool: &PgPool, cache: &TaskCache) -> anyhow::Result<Option<ReadReplica>> {
    let Some(url) = &config.database.database_read_url else { return Ok(None) };
    let (max_lag_ms, poll_ms) = (config.database.replica_max_lag_ms, config.database.replica_poll_ms);
    let max_lag = Duration::from_millis(max_lag_ms);
    if 2 * max_lag >= cache.generation_lifetime() {
        bail!(
            "REPLICA_MAX_LAG_MS ({max_lag_ms} ms) must be less than CACHE_TTL_SECS ({} s): the cache keeps the position \
             of a write for twice CACHE_TTL_SECS, and a replica may be twice its lag bound behind",
            config.redis.cache_ttl_secs
        );
    }
    if poll_ms >= max_lag_ms {
        bail!("REPLICA_POLL_MS ({poll_ms}) must be less than REPLICA_MAX_LAG_MS ({max_lag_ms})");
    }
    if !cache.is_enabled() {
        tracing::warn!(
            "DATABASE_READ_URL is set but the cache is off (REDIS_URL or CACHE_ENABLED): the replica answers no reads, \
             since only the cache's stamps tell how far it must have replayed"
        );
    }
    Ok(Some(ReadReplica::new(pool.clone(), url, max_lag, config.database.database_pool_mode)?))
}

/// The HS256 key of the access tokens: JWT_SECRET, or a random one in
/// development mode.
pub fn signing_secret(config: &AuthConfig) -> anyhow::Result<Vec<u8>> {
    match &config.jwt_secret {
        Some(secret) if secret.len() >= MIN_SECRET_BYTES => Ok(secret.as_bytes().to_vec()),
        Some(_) => bail!("JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes"),
        None if config.dev_mode => {
            tracing::warn!("TODO_DEV_MODE: signing tokens with a random secret; they die with this process");
            let mut secret = vec![0u8; MIN_SECRET_BYTES];
            rand::rng().fill_bytes(&mut secret);
            Ok(secret)
        }
        None => {
            bail!("JWT_SECRET is not set (set it, or run with TODO_DEV_MODE=true for development)")
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
