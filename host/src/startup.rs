//! Building the application from its configuration, and serving it until a
//! shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use rand::RngCore;
use tokio::net::TcpListener;

use crate::auth::{Accounts, TokenKeys, UserRepository};
use crate::config::{AuthConfig, ServeConfig};
use crate::db;
use crate::http::{self, AppState, HttpLimits};
use crate::plugins::{PluginEngine, PluginRegistry, PluginRuntime};
use crate::ratelimit::Quota;
use crate::tasks::{TaskService, TaskStore};

/// Shortest JWT secret accepted: 256 bits for HS256.
const MIN_SECRET_BYTES: usize = 32;

pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Connects, migrates, loads the storage plugin and binds the listener.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        let keys =
            TokenKeys::new(&signing_secret(&config.auth)?, Duration::from_secs(config.auth.access_token_ttl_secs));
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool).await?;

        let engine = PluginEngine::new(config.plugins.plugin_max_instances, &config.plugins.cache_dir())?;
        let runtime = Arc::new(PluginRuntime::new(engine, pool.clone(), config.plugins.plugin_max_instances));
        let plugins = Arc::new(
            PluginRegistry::load(runtime, config.plugins.plugin_dir.clone(), config.plugins.storage_plugin.clone())
                .await
                .with_context(|| format!("cannot load the storage plugin `{}`", config.plugins.storage_plugin))?,
        );

        let state = AppState {
            tasks: TaskService::new(TaskStore::new(plugins.clone())),
            accounts: Accounts::new(UserRepository::new(pool.clone())),
            keys,
            plugins,
            pool,
        };
        let limits = HttpLimits {
            api_quota: Quota::per_second(config.rate_limit.rate_limit_per_second, config.rate_limit.rate_limit_burst),
            auth_quota: Quota::per_minute(
                config.rate_limit.auth_rate_limit_per_minute,
                config.rate_limit.auth_rate_limit_burst,
            ),
            max_body_bytes: config.max_body_bytes,
        };
        let listener =
            TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Self { listener, router: http::router(state, limits) })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGINT or SIGTERM, then lets in-flight requests finish.
    pub async fn run(self) -> anyhow::Result<()> {
        let address = self.local_addr()?;
        tracing::info!(%address, "listening on http://{address}");
        axum::serve(self.listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("the HTTP server failed")
    }
}

fn signing_secret(config: &AuthConfig) -> anyhow::Result<Vec<u8>> {
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
