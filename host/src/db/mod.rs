//! The PostgreSQL pool and the schema migrations.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DatabaseConfig;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Connects the pool. Every connection runs READ COMMITTED with server-side
/// statement and lock timeouts, so a stuck query cannot hold a request (or
/// a plugin call) forever.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let timeout = config.sql_statement_timeout_ms.to_string();
    let options: PgConnectOptions = config
        .database_url
        .parse::<PgConnectOptions>()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .application_name("todo-host")
        .options([
            // libpq `options` syntax: a space inside a value is escaped.
            ("default_transaction_isolation", "read\\ committed"),
            ("statement_timeout", timeout.as_str()),
            ("lock_timeout", timeout.as_str()),
            ("idle_in_transaction_session_timeout", "60000"),
        ]);
    PgPoolOptions::new()
        .max_connections(config.db_max_connections)
        .acquire_timeout(config.acquire_timeout())
        .idle_timeout(Duration::from_secs(300))
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL")
}

/// Applies every pending migration of `migrations/`.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("applying database migrations failed")
}
