//! A plugin's place in the database, for a plugin granted `sql`: a role of
//! its own, a schema it owns, the pool of its connections, the migrations
//! its bundle ships, and what it may read of other plugins.
//!
//! Invariants:
//! - A plugin's connections log in as its role (`todo_plugin_<name>`), so
//!   nothing it sends can make it anyone else: `SET ROLE` and
//!   `set_config('role', …)` only reach roles the session user is a member
//!   of, and a plugin role is a member of none. (On a shared host
//!   connection, `SET LOCAL ROLE` could be undone by any statement that
//!   calls `set_config`, e.g. through `query_to_xml`.)
//! - The role owns its schema (`plugin_<name>`, its `search_path`) and
//!   holds no privilege on the host's tables or another plugin's schema,
//!   but for the relations another plugin shares and it asks to read.
//! - The host's own statements on a plugin's connection go through the
//!   SECURITY DEFINER functions that ask for the host's key (`db::HostKey`).
//! - A plugin's migrations run in its schema, as its role, each in a
//!   transaction with its row in the schema's `todo_plugin_migrations`,
//!   before a loaded version serves; an applied migration never changes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use super::capabilities::sql::{check_statement, split_statements};
use super::manifest::Manifest;
use crate::config::PoolMode;
use crate::db::replica::{ReadReplica, ReplicaPool};
use crate::db::{self, HostKey, SessionSettings};

/// Tables the host's own migrations created for the built-in plugins, by
/// the first releases (which kept every table in `public`): handed over to
/// the plugin's schema when its role is first provisioned, rows and all.
const HANDED_OVER: [(&str, &str); 2] = [("postgres-store", "tasks"), ("audit-log", "task_audit")];

/// How often provisioning is tried again when another process provisions
/// the same role at the same moment.
const PROVISION_ATTEMPTS: u32 = 8;

/// Longest a migration's statement may run (a plugin's calls are bounded by
/// their deadline; an index build is not a call).
const MIGRATION_STATEMENT_TIMEOUT: &str = "10min";

/// Where a plugin's role and schema are made: the host's pool (its role
/// has CREATEROLE) and what derives the plugins' connections and passwords.
pub struct PluginDatabases {
    host: PgPool,
    key: HostKey,
    /// The host's connection settings: plugins' connections take the same
    /// server, database and TLS, with their own user and options.
    options: PgConnectOptions,
    /// Derives each role's password (HMAC-SHA256 of the role name): every
    /// replica with the same secret logs in with the same one.
    secret: Vec<u8>,
    /// Pool size of a plugin whose manifest sets none.
    default_connections: u32,
    /// Where its reads may go too (`DATABASE_READ_URL`).
    replica: Option<ReadReplica>,
    /// How the roles' settings reach their sessions.
    mode: PoolMode,
    /// One pair of pools (primary, replica) per plugin and shape, shared by
    /// the versions of a plugin across reloads.
    pools: Mutex<HashMap<String, (PoolShape, RolePools)>>,
    /// Roles whose password this process set or saw log in: a reload does
    /// not pay a login (a connection and a SCRAM exchange) to check again.
    logs_in: Mutex<HashSet<String>>,
}

/// A plugin's database identity, as a loaded version holds it.
#[derive(Clone)]
pub struct PluginDatabase {
    pub role: String,
    pub schema: String,
    pub pool: PgPool,
    /// Its role's connections to the read replica, if there is one.
    pub replica: Option<ReplicaPool>,
}

#[derive(Clone)]
struct RolePools {
    primary: PgPool,
    replica: Option<ReplicaPool>,
}

/// A migration of a plugin bundle (`NAME.migrations/NNNN_description.sql`).
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub description: String,
    pub sql: String,
}

impl Migration {
    /// Parses `NNNN_description.sql`; `None` for a file that is not one.
    pub fn from_file(file_name: &str, sql: String) -> anyhow::Result<Option<Self>> {
        let Some(stem) = file_name.strip_suffix(".sql") else { return Ok(None) };
        let Some((version, description)) = stem.split_once('_') else {
            bail!("migration `{file_name}` is not named NNNN_description.sql");
        };
        let version: i64 = version.parse().with_context(|| format!("migration `{file_name}` has no version number"))?;
        Ok(Some(Self { version, description: description.replace('_', " "), sql }))
    }

    fn checksum(&self) -> Vec<u8> {
        Sha256::digest(self.sql.as_bytes()).to_vec()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct PoolShape {
    connections: u32,
    deadline_ms: u64,
}

impl PluginDatabases {
    pub fn new(
        host: PgPool,
        key: HostKey,
        options: PgConnectOptions,
        secret: Vec<u8>,
        default_connections: u32,
        replica: Option<ReadReplica>,
        mode: PoolMode,
    ) -> Self {
        Self {
            host,
            key,
            options,
            secret,
            default_connections,
            replica,
            mode,
            pools: Mutex::default(),
            logs_in: Mutex::default(),
        }
    }

    /// The pool a call of a plugin runs its statements on — its own when it
    /// has one, else the host's (for the host's statements alone) — its
    /// replica pool, and the host's key.
    pub fn of(&self, plugin: Option<&PluginDatabase>) -> (PgPool, Option<ReplicaPool>, HostKey) {
        match plugin {
            Some(database) => (database.pool.clone(), database.replica.clone(), self.key.clone()),
            None => (self.host.clone(), None, self.key.clone()),
        }
    }

    /// The role and schema of `manifest`'s plugin `name`, created when
    /// missing, its shares and reads granted, its migrations applied.
    pub async fn provision(
        &self,
        name: &str,
        manifest: &Manifest,
        migrations: &[Migration],
    ) -> anyhow::Result<PluginDatabase> {
        let (role, schema) = names(name)?;
        let password = self.password(&role);
        let shape = PoolShape {
            connections: manifest.limits.db_connections.unwrap_or(self.default_connections).max(1),
            deadline_ms: manifest.limits.deadline_ms,
        };
        // The role's sessions run in its schema, with its deadline.
        let settings = SessionSettings::new(self.mode, shape.deadline_ms).with("search_path", schema.as_str());
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.create_identity(name, &role, &schema, &password, &settings).await {
                Ok(()) => break,
                Err(error) if attempt < PROVISION_ATTEMPTS && is_concurrent_update(&error) => {
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Err(error) => {
                    return Err(anyhow::Error::new(error))
                        .with_context(|| format!("cannot create the database role `{role}` and schema `{schema}` (the host's role needs CREATEROLE and CREATE on the database)"));
                }
            }
        }
        self.hand_over(name, &role, &schema).await?;
        let RolePools { primary: pool, replica } = self.pools(name, &role, &password, shape, &settings);
        let database = PluginDatabase { role, schema, pool, replica };
        self.share(name, &manifest.database.shares).await?;
        self.grant_reads(&database, &manifest.grants.read).await?;
        migrate(&database, migrations).await.with_context(|| format!("a migration of `{name}` failed"))?;
        Ok(database)
    }

    fn password(&self, role: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(b"todo-host plugin role ");
        mac.update(role.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The role (logging in with its password, a member of nothing, its
    /// `settings` kept as role defaults when they travel that way) and its
    /// schema; idempotent.
    async fn create_identity(
        &self,
        name: &str,
        role: &str,
        schema: &str,
        password: &str,
        settings: &SessionSettings,
    ) -> Result<(), sqlx::Error> {
        let mut host = self.host.acquire().await?;
        let exists: Option<Option<String>> =
            sqlx::query_scalar("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_optional(&mut *host)
                .await?;
        let comment = format!("todo-host plugin {name}");
        match exists {
            Some(Some(existing)) if existing != comment => {
                return Err(sqlx::Error::Protocol(format!(
                    "the role `{role}` belongs to another plugin ({existing}); rename one of them"
                )));
            }
            Some(Some(_)) => {}
            unnamed => {
                if unnamed.is_none() {
                    let attributes = "LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";
                    sqlx::raw_sql(&format!("CREATE ROLE \"{role}\" {attributes} PASSWORD '{password}'"))
                        .execute(&mut *host)
                        .await?;
                }
                sqlx::raw_sql(&format!("COMMENT ON ROLE \"{role}\" IS '{comment}'")).execute(&mut *host).await?;
            }
        }
        // Membership lets the host create the schema for the role and hand
        // tables over to it; it gives the plugin nothing.
        let member: bool = sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'MEMBER')")
            .bind(role)
            .fetch_one(&mut *host)
            .await?;
        if !member {
            sqlx::raw_sql(&format!("GRANT \"{role}\" TO CURRENT_USER")).execute(&mut *host).await?;
        }
        sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\" AUTHORIZATION \"{role}\""))
            .execute(&mut *host)
            .await?;
        // Before its first login: a pooler keeps the server connections it
        // opens, with the defaults they started with.
        settings.keep_as_role_defaults(&self.host, Some(role)).await?;
        if !self.logs_in(role, password).await {
            sqlx::raw_sql(&format!("ALTER ROLE \"{role}\" PASSWORD '{password}'")).execute(&mut *host).await?;
        }
        self.logs_in.lock().expect("poisoned").insert(role.to_string());
        Ok(())
    }

    /// Whether `role` logs in with `password` (a replica with another
    /// secret, or a restored database, may have set another); checked once
    /// per process.
    async fn logs_in(&self, role: &str, password: &str) -> bool {
        if self.logs_in.lock().expect("poisoned").contains(role) {
            return true;
        }
        let options = self.options.clone().username(role).password(password);
        match PgConnection::connect_with(&options).await {
            Ok(connection) => {
                let _ = connection.close().await;
                true
            }
            Err(_) => false,
        }
    }

    /// Moves the plugin's tables of `HANDED_OVER` from `public` into its
    /// schema, owned by its role (once: when the schema has none yet).
    async fn hand_over(&self, name: &str, role: &str, schema: &str) -> anyhow::Result<()> {
        for (_, table) in HANDED_OVER.iter().filter(|(plugin, _)| *plugin == name) {
            let legacy = format!("public.\"{table}\"");
            let waiting = sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = $1 \
                 AND tableowner = current_user) AND to_regclass($2) IS NULL",
            )
            .bind(table)
            .bind(format!("\"{schema}\".\"{table}\""));
            if !waiting.fetch_one(&self.host).await? {
                continue;
            }
            let mut transaction = self.host.begin().await?;
            // Another replica handing it over at the same time: after its
            // lock, the table is no longer in `public`.
            let lock = format!("LOCK TABLE {legacy} IN ACCESS EXCLUSIVE MODE");
            if sqlx::raw_sql(&lock).execute(&mut *transaction).await.is_err() {
                continue;
            }
            let still_there: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(&legacy)
                .fetch_one(&mut *transaction)
                .await?;
            if !still_there {
                continue;
            }
            // A plugin may not reference the host's tables (`tasks.owner_id`
            // referenced `users`): the host checks owners itself.
            let foreign_keys: Vec<String> = sqlx::query_scalar(
                "SELECT conname::text FROM pg_constraint WHERE conrelid = ('public.' || $1)::regclass AND contype = 'f'",
            )
            .bind(table)
            .fetch_all(&mut *transaction)
            .await?;
            for constraint in foreign_keys {
                sqlx::raw_sql(&format!("ALTER TABLE public.\"{table}\" DROP CONSTRAINT \"{constraint}\""))
                    .execute(&mut *transaction)
                    .await?;
            }
            sqlx::raw_sql(&format!(
                "ALTER TABLE public.\"{table}\" SET SCHEMA \"{schema}\"; ALTER TABLE \"{schema}\".\"{table}\" OWNER TO \"{role}\""
            ))
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
            tracing::info!(plugin = name, table, %schema, "table handed over to the plugin's schema");
        }
        Ok(())
    }

    /// The role's pools on the primary and the replica: the same login,
    /// settings and size on both.
    fn pools(&self, name: &str, role: &str, password: &str, shape: PoolShape, settings: &SessionSettings) -> RolePools {
        let mut pools = self.pools.lock().expect("poisoned");
        if let Some((existing, pools)) = pools.get(name)
            && *existing == shape
        {
            return pools.clone();
        }
        // A statement outliving the call's deadline is cancelled by the
        // server (the settings' statement_timeout), not left running after
        // the call gave up on it.
        let session = |base: &PgConnectOptions| {
            settings.connect_options(
                base.clone().username(role).password(password).application_name(&format!("todo-host plugin {name}")),
            )
        };
        let primary = db::pool_options()
            .max_connections(shape.connections)
            .acquire_timeout(Duration::from_millis(shape.deadline_ms))
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(session(&self.options));
        let replica =
            self.replica.as_ref().map(|replica| replica.pool(session(replica.connect_options()), shape.connections));
        let role_pools = RolePools { primary, replica };
        pools.insert(name.to_string(), (shape, role_pools.clone()));
        role_pools
    }

    /// Records what `name` shares with other plugins (`[database] shares`).
    async fn share(&self, name: &str, shares: &[String]) -> anyhow::Result<()> {
        let recorded: BTreeSet<String> = sqlx::query_scalar("SELECT relation FROM plugin_shares WHERE plugin = $1")
            .bind(name)
            .fetch_all(&self.host)
            .await?
            .into_iter()
            .collect();
        if recorded == shares.iter().cloned().collect() {
            return Ok(());
        }
        let mut transaction = self.host.begin().await?;
        sqlx::query("DELETE FROM plugin_shares WHERE plugin = $1").bind(name).execute(&mut *transaction).await?;
        sqlx::query("INSERT INTO plugin_shares (plugin, relation) SELECT $1, unnest($2::text[])")
            .bind(name)
            .bind(shares)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Grants the reads the manifest asks for (`[grants] read`, each
    /// `plugin.relation` another plugin shares) and revokes the others.
    async fn grant_reads(&self, database: &PluginDatabase, reads: &[String]) -> anyhow::Result<()> {
        let mut wanted = Vec::new();
        for read in reads {
            let Some((publisher, relation)) = read.split_once('.') else {
                bail!("[grants] read names `plugin.relation`, not `{read}`");
            };
            let shared: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM plugin_shares WHERE plugin = $1 AND relation = $2)")
                    .bind(publisher)
                    .bind(relation)
                    .fetch_one(&self.host)
                    .await?;
            if !shared {
                bail!(
                    "`{publisher}` does not share `{relation}` (its manifest's [database] shares), or is not provisioned yet"
                );
            }
            let (_, schema) = names(publisher)?;
            wanted.push((schema, relation.to_string()));
        }
        let role = &database.role;
        // The catalog itself, not information_schema.role_table_grants
        // (a view slow enough to be most of a cached reload).
        let granted: Vec<(String, String)> = sqlx::query_as(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, \
             aclexplode(c.relacl) acl WHERE acl.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1) \
             AND acl.privilege_type = 'SELECT' AND n.nspname <> $2",
        )
        .bind(role)
        .bind(&database.schema)
        .fetch_all(&self.host)
        .await?;
        for (schema, relation) in granted.iter().filter(|grant| !wanted.contains(grant)) {
            sqlx::raw_sql(&format!("REVOKE SELECT ON \"{schema}\".\"{relation}\" FROM \"{role}\""))
                .execute(&self.host)
                .await?;
        }
        for (schema, relation) in wanted.iter().filter(|grant| !granted.contains(grant)) {
            sqlx::raw_sql(&format!(
                "GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\"; GRANT SELECT ON \"{schema}\".\"{relation}\" TO \"{role}\""
            ))
            .execute(&self.host)
            .await
            .with_context(|| format!("cannot grant `{role}` a read of {schema}.{relation}"))?;
        }
        Ok(())
    }
}

/// The role and schema names of plugin `name` (`-` becomes `_`).
pub fn names(name: &str) -> anyhow::Result<(String, String)> {
    let base = name.replace('-', "_");
    if base.len() > 48 {
        bail!("a plugin granted `sql` has a name of at most 48 characters (`{name}`)");
    }
    Ok((format!("todo_plugin_{base}"), format!("plugin_{base}")))
}

/// Another process provisioning the same role or schema at this moment.
fn is_concurrent_update(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => {
            matches!(error.code().as_deref(), Some("42710" | "23505" | "XX000" | "40001" | "40P01"))
        }
        _ => false,
    }
}

/// Applies the migrations not applied yet, in version order, each in a
/// transaction with its row; refuses a changed applied one.
async fn migrate(database: &PluginDatabase, migrations: &[Migration]) -> anyhow::Result<()> {
    let mut sorted: Vec<&Migration> = migrations.iter().collect();
    sorted.sort_by_key(|migration| migration.version);
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0].version == pair[1].version) {
        bail!("two migrations have version {}", pair[0].version);
    }
    let mut connection = database.pool.acquire().await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS todo_plugin_migrations (version bigint PRIMARY KEY, description text NOT NULL, \
         checksum bytea NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *connection)
    .await?;
    // Most loads find every migration applied: one read says so.
    let applied: HashMap<i64, Vec<u8>> =
        sqlx::query_as::<_, (i64, Vec<u8>)>("SELECT version, checksum FROM todo_plugin_migrations")
            .fetch_all(&mut *connection)
            .await?
            .into_iter()
            .collect();
    if sorted.iter().all(|migration| applied.get(&migration.version) == Some(&migration.checksum())) {
        return Ok(());
    }
    for migration in sorted {
        let mut transaction = connection.begin().await?;
        // One process migrates at a time; the others find it applied.
        sqlx::raw_sql(&format!(
            "LOCK TABLE todo_plugin_migrations IN EXCLUSIVE MODE; SET LOCAL statement_timeout = '{MIGRATION_STATEMENT_TIMEOUT}'"
        ))
        .execute(&mut *transaction)
        .await?;
        let applied: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT checksum FROM todo_plugin_migrations WHERE version = $1")
                .bind(migration.version)
                .fetch_optional(&mut *transaction)
                .await?;
        match applied {
            Some(checksum) if checksum == migration.checksum() => continue,
            Some(_) => bail!(
                "migration {} ({}) was applied with other content; an applied migration never changes (add a new one)",
                migration.version,
                migration.description
            ),
            None => {}
        }
        for statement in split_statements(&migration.sql).map_err(anyhow::Error::msg)? {
            if let Err(why) = check_statement(statement) {
                bail!("migration {} ({}): {why}", migration.version, migration.description);
            }
            sqlx::raw_sql(statement)
                .execute(&mut *transaction)
                .await
                .with_context(|| format!("migration {} ({}) failed", migration.version, migration.description))?;
        }
        sqlx::query("INSERT INTO todo_plugin_migrations (version, description, checksum) VALUES ($1, $2, $3)")
            .bind(migration.version)
            .bind(&migration.description)
            .bind(migration.checksum())
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        tracing::info!(role = %database.role, version = migration.version, description = %migration.description, "plugin migration applied");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_are_named_by_version() {
        let migration = Migration::from_file("0002_add_notes.sql", "ALTER TABLE t ADD notes text".into()).unwrap();
        let migration = migration.unwrap();
        assert_eq!((migration.version, migration.description.as_str()), (2, "add notes"));
        assert!(Migration::from_file("README.md", String::new()).unwrap().is_none());
        assert!(Migration::from_file("first.sql", String::new()).is_err());
        assert!(Migration::from_file("x_first.sql", String::new()).is_err());
    }

    #[test]
    fn role_and_schema_names_follow_the_plugin_name() {
        assert_eq!(
            names("postgres-store").unwrap(),
            ("todo_plugin_postgres_store".to_string(), "plugin_postgres_store".to_string())
        );
        assert!(names(&"x".repeat(49)).is_err());
    }
}
