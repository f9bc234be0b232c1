//! The PostgreSQL pool, the schema migrations, and the host's key: what
//! lets the host's own statements run with its rights on a connection it
//! shares with a plugin; `replica`, the read replica.

pub mod replica;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::config::{DatabaseConfig, PoolMode};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pooled connection idle longer than this is checked (one round trip)
/// before it is handed out.
const CHECK_IDLE_FOR: Duration = Duration::from_secs(1);

/// The options every pool of the host starts from. sqlx checks each
/// connection as it goes back to the pool, and by default again as it is
/// handed out: two round trips besides the statement's own, for a
/// connection released microseconds earlier. Only the time since its return
/// can have broken it, so only a connection idle for `CHECK_IDLE_FOR` is
/// checked again (a server that restarted meanwhile was down longer than
/// that); one that fails the check is closed and another taken.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new().test_before_acquire(false).before_acquire(|connection, meta| {
        Box::pin(async move { Ok(meta.idle_for < CHECK_IDLE_FOR || connection.ping().await.is_ok()) })
    })
}

/// The server, database, user and TLS of `DATABASE_URL`: what every
/// connection of the host, and of its plugins, starts from.
pub fn connect_options(config: &DatabaseConfig) -> anyhow::Result<PgConnectOptions> {
    config.database_url.parse::<PgConnectOptions>().context("DATABASE_URL is not a valid PostgreSQL URL")
}

/// The settings every session of a role must run with, and where they come
/// from: startup options when the connection is the session
/// (`PoolMode::Session`); the role's defaults in the database behind a
/// transaction pooler, which refuses those options and hands each
/// transaction whichever server connection is free.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    mode: PoolMode,
    settings: Vec<(&'static str, String)>,
}

impl SessionSettings {
    /// READ COMMITTED, and no statement, lock wait or idle transaction
    /// holding a connection past its limit.
    pub fn new(mode: PoolMode, statement_timeout_ms: u64) -> Self {
        let timeout = statement_timeout_ms.to_string();
        let settings = vec![
            ("default_transaction_isolation", "read committed".to_string()),
            ("statement_timeout", timeout.clone()),
            ("lock_timeout", timeout),
            ("idle_in_transaction_session_timeout", "60000".to_string()),
        ];
        Self { mode, settings }
    }

    /// The host's own sessions.
    pub fn host(config: &DatabaseConfig) -> Self {
        Self::new(config.database_pool_mode, config.sql_statement_timeout_ms)
    }

    /// Sets `name` (or adds it).
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.settings.retain(|(existing, _)| *existing != name);
        self.settings.push((name, value.into()));
        self
    }

    /// `base` with the settings as startup options, when they travel that
    /// way in this mode.
    pub fn connect_options(&self, base: PgConnectOptions) -> PgConnectOptions {
        match self.mode {
            PoolMode::Session => self.as_startup_options(base),
            PoolMode::Transaction => base,
        }
    }

    /// `base` with the settings as startup options, whatever the mode (a
    /// direct connection).
    fn as_startup_options(&self, base: PgConnectOptions) -> PgConnectOptions {
        // libpq `options` syntax: a space inside a value is escaped.
        let escaped: Vec<(&str, String)> =
            self.settings.iter().map(|(name, value)| (*name, value.replace(' ', "\\ "))).collect();
        base.options(escaped.iter().map(|(name, value)| (*name, value.as_str())))
    }

    /// Makes the settings `role`'s defaults (`None`: the connected role's)
    /// in the current database, when they travel that way in this mode:
    /// every server connection the pooler opens for the role from now on
    /// starts with them. Writes the catalog only when they differ.
    pub async fn keep_as_role_defaults(&self, pool: &PgPool, role: Option<&str>) -> Result<(), sqlx::Error> {
        if self.mode == PoolMode::Session {
            return Ok(());
        }
        let mut transaction = pool.begin().await?;
        // Processes starting together would race on the same catalog row.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('todo-host role defaults'))")
            .execute(&mut *transaction)
            .await?;
        let (role, database, current): (String, String, Option<Vec<String>>) = sqlx::query_as(
            "SELECT r.rolname::text, current_database()::text, s.setconfig FROM pg_roles r \
             LEFT JOIN pg_db_role_setting s ON s.setrole = r.oid \
             AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             WHERE r.rolname = coalesce($1, current_user)",
        )
        .bind(role)
        .fetch_one(&mut *transaction)
        .await?;
        let current = current.unwrap_or_default();
        for (name, value) in &self.settings {
            if current.contains(&format!("{name}={value}")) {
                continue;
            }
            let (role, database, value) =
                (quote_identifier(&role), quote_identifier(&database), value.replace('\'', "''"));
            sqlx::raw_sql(&format!("ALTER ROLE {role} IN DATABASE {database} SET {name} = '{value}'"))
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await
    }
}

/// `name` as a quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Connects the host's pool. Every connection runs READ COMMITTED with
/// server-side statement and lock timeouts, so a stuck query cannot hold a
/// request forever.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let settings = SessionSettings::host(config);
    let options = settings.connect_options(connect_options(config)?.application_name("todo-host"));
    let pool = pool_options()
        .max_connections(config.db_max_connections)
        .acquire_timeout(config.acquire_timeout())
        .idle_timeout(Duration::from_secs(300))
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL")?;
    settings.keep_as_role_defaults(&pool, None).await.context("cannot set the host role's defaults")?;
    Ok(pool)
}

/// Applies every pending migration of `migrations/`, on a connection of its
/// own to the server itself (the migrator holds a session lock), without
/// the statement timeout of requests: a migration may rewrite a large
/// table. (The lock timeout stays: a migration waiting behind a long
/// transaction fails rather than queue every request behind it.)
pub async fn migrate(config: &DatabaseConfig) -> anyhow::Result<()> {
    let url = match (config.database_pool_mode, &config.database_direct_url) {
        (_, Some(direct)) => direct,
        (PoolMode::Session, None) => &config.database_url,
        (PoolMode::Transaction, None) => bail!(
            "DATABASE_POOL_MODE=transaction: set DATABASE_DIRECT_URL to the PostgreSQL server itself, for the migrations"
        ),
    };
    let base = url.parse::<PgConnectOptions>().context("DATABASE_DIRECT_URL is not a valid PostgreSQL URL")?;
    // Connected without it, rather than a `SET` that would itself run under
    // the request timeout (and lose to it on a busy server).
    let options = SessionSettings::host(config).with("statement_timeout", "0").as_startup_options(base);
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
