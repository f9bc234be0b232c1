//! The PostgreSQL pool, the schema migrations, and the host's key: what
//! lets the host's own statements run with its rights on a connection it
//! shares with a plugin.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::config::DatabaseConfig;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The server, database, user and TLS of `DATABASE_URL`, READ COMMITTED:
/// what every connection of the host, and of its plugins, starts from.
pub fn connect_options(config: &DatabaseConfig) -> anyhow::Result<PgConnectOptions> {
    Ok(config
        .database_url
        .parse::<PgConnectOptions>()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        // libpq `options` syntax: a space inside a value is escaped.
        .options([("default_transaction_isolation", "read\\ committed")]))
}

/// Connects the host's pool. Every connection runs READ COMMITTED with
/// server-side statement and lock timeouts, so a stuck query cannot hold a
/// request forever.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let timeout = config.sql_statement_timeout_ms.to_string();
    let options = connect_options(config)?.application_name("todo-host").options([
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

/// Applies every pending migration of `migrations/`, on a connection of its
/// own without the statement timeout of requests: a migration may rewrite a
/// large table. (The lock timeout stays: a migration waiting behind a long
/// transaction fails rather than queue every request behind it.)
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    // Connected without it, rather than a `SET` that would itself run under
    // the request timeout (and lose to it on a busy server). The later
    // `options` entry wins.
    let options = (*pool.connect_options()).clone().options([("statement_timeout", "0")]);
    let mut connection =
        PgConnection::connect_with(&options).await.context("cannot connect to PostgreSQL to migrate")?;
    let applied = MIGRATOR.run(&mut connection).await.context("applying database migrations failed");
    let _ = connection.close().await;
    applied
}

/// The secret the host's SECURITY DEFINER functions ask for (see the
/// migration `plugin_sandbox`): in a call's transaction, which runs on a
/// connection logged in as the plugin's role, the host's own statements
/// are calls of these functions with this key. No plugin can read it.
#[derive(Clone)]
pub struct HostKey(Arc<[u8]>);

impl HostKey {
    pub async fn load(pool: &PgPool) -> anyhow::Result<Self> {
        let key: Vec<u8> = sqlx::query_scalar("SELECT key FROM host_keys ORDER BY created_at DESC LIMIT 1")
            .fetch_one(pool)
            .await
            .context("cannot read the host's key (table host_keys)")?;
        Ok(Self(key.into()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A key no database knows, for tests that never reach one.
    #[cfg(test)]
    pub fn unknown() -> Self {
        Self(Arc::from(&b"not a key"[..]))
    }
}

/// A connection as the host writes on it: a call's transaction (shared with
/// a plugin) or one of its own, and its key.
pub struct HostConnection<'c> {
    pub connection: &'c mut PgConnection,
    pub key: &'c HostKey,
}

/// Whether the host connected as a superuser: it must not, since a
/// superuser's sessions can reach the database server's files and programs.
pub async fn is_superuser(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetch_one(pool).await
}
