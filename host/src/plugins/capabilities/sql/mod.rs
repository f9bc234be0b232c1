//! `sql`: parameterised statements against PostgreSQL, inside the one
//! transaction the host owns for the call, on a connection logged in as
//! the plugin's own role (`plugins::database`): the role is the boundary.
//! `statement` refuses, before they reach the server, the statements that
//! would break the host's transaction or session.
//!
//! The connection is taken lazily, at the plugin's first statement. A write
//! call (`CallKind::Write`) opens a transaction there and the host commits or
//! rolls it back when the export returns (see `call`). A read call runs its
//! statements on one pooled connection without BEGIN/COMMIT: under READ
//! COMMITTED each statement sees its own snapshot either way, so a read
//! transaction would only cost two round trips. That connection is the
//! read replica's when the replica has replayed as far as the read's
//! `Freshness` asks (`db::replica`), else the primary's.
//!
//! The session also keeps what the call saw of the database itself failing
//! (`Outage`): a call that failed because no connection could be had, or
//! its connection was lost, failed because of the infrastructure, whatever
//! the plugin made of the error it was handed. And whether a statement ran
//! into the call's deadline on the server (`statement_timeout` and
//! `lock_timeout` are the deadline): such a call ran out of its deadline,
//! whichever of the server and the host noticed first.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Column, PgConnection, PgPool, Postgres, Row, Transaction, TypeInfo, ValueRef};
use uuid::Uuid;
use wasmtime::component::{HasSelf, Linker};

mod statement;

pub use statement::{check as check_statement, split as split_statements};

use super::{CallKind, NotGranted};
use crate::db::replica::{Freshness, ReplicaPool};
use crate::db::{HostConnection, HostKey};
use crate::plugins::bindings::todo::plugin::sql::{self, Rows, SqlError, Value};

/// SQLSTATE of a refused statement (insufficient_privilege): a plugin
/// telling permanent from passing errors by class sees a permanent one.
const REFUSED: &str = "42501";

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut SqlSession,
) -> anyhow::Result<()> {
    sql::add_to_linker::<T, HasSelf<SqlSession>>(linker, get).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `sql` for a plugin not granted it.
pub fn add_denied_to_linker<T: Send + 'static>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    sql::add_to_linker::<T, NotGranted>(linker, |_| NotGranted).map_err(|e| anyhow::anyhow!("{e}"))
}

impl sql::Host for NotGranted {
    async fn query(&mut self, _: String, _: Vec<Value>) -> Result<Rows, SqlError> {
        Err(not_granted())
    }

    async fn execute(&mut self, _: String, _: Vec<Value>) -> Result<u64, SqlError> {
        Err(not_granted())
    }
}

fn not_granted() -> SqlError {
    SqlError {
        code: Some(REFUSED.into()),
        message: "`sql` is not granted to this plugin (its manifest needs `sql = true` under [grants])".into(),
    }
}

/// Per-call state: the pools (of the plugin's role, on the primary and the
/// replica; the host's for a plugin without the grant), the host's key for
/// its own statements, and the connection or transaction the call's
/// statements run on once the first one has been issued.
pub struct SqlSession {
    pool: PgPool,
    replica: Option<ReplicaPool>,
    key: HostKey,
    kind: CallKind,
    held: Option<Held>,
    outage: Outage,
    /// A statement was cancelled by `statement_timeout` or `lock_timeout`.
    timed_out: bool,
}

/// What a call saw of the database failing rather than its statements.
#[derive(Default)]
struct Outage {
    /// Set while a connection is being taken: still set when the call's
    /// deadline cut the wait short.
    waiting_since: Option<Instant>,
    waited: Duration,
    failure: Option<String>,
}

enum Held {
    Transaction(Transaction<'static, Postgres>),
    Connection(PoolConnection<Postgres>),
}

impl SqlSession {
    pub fn new(pool: PgPool, key: HostKey, kind: CallKind) -> Self {
        Self { pool, replica: None, key, kind, held: None, outage: Outage::default(), timed_out: false }
    }

    /// Lets its reads go to the read replica's `pool`.
    pub fn reading_from(mut self, pool: Option<ReplicaPool>) -> Self {
        self.replica = pool;
        self
    }

    /// Why the database, not the plugin, made the call fail, if it did: a
    /// connection not had in time or lost, a server shutting down. `None`
    /// when every failure the call saw was its statements' own.
    pub fn outage(&self) -> Option<String> {
        let outage = &self.outage;
        match (&outage.failure, outage.waiting_since) {
            (Some(failure), _) => Some(failure.clone()),
            (None, Some(since)) => {
                Some(format!("no database connection within {} ms (the call's deadline)", since.elapsed().as_millis()))
            }
            (None, None) => None,
        }
    }

    /// Whether a statement of the call ran into its deadline on the server.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// How long the call waited for its connection.
    pub fn waited_for_connection(&self) -> Duration {
        self.outage.waited
    }

    /// Remembers `error` when it is the database failing, and hands it on.
    fn observe(&mut self, error: sqlx::Error) -> sqlx::Error {
        if is_outage(&error) && self.outage.failure.is_none() {
            self.outage.failure = Some(error.to_string());
        }
        self.timed_out |= is_timeout(&error);
        error
    }

    /// Ends the call's transaction, if it opened one: commit when the export
    /// succeeded, roll back otherwise.
    pub async fn finish(self, commit: bool) -> Result<(), sqlx::Error> {
        match self.held {
            Some(Held::Transaction(transaction)) if commit => transaction.commit().await,
            Some(Held::Transaction(transaction)) => transaction.rollback().await,
            Some(Held::Connection(_)) | None => Ok(()),
        }
    }

    /// The call's transaction as the host writes on it, for its own
    /// statements that must commit with the plugin's (outbox records,
    /// ledgers). Opens it when the plugin issued no statement (e.g. it has
    /// no `sql` grant).
    pub async fn host_connection(&mut self) -> Result<HostConnection<'_>, sqlx::Error> {
        self.take_connection().await?;
        Ok(HostConnection { connection: held_connection(&mut self.held), key: &self.key })
    }

    /// Takes the connection of the call's statements — inside the call's
    /// transaction for a write — at the first use.
    async fn take_connection(&mut self) -> Result<(), sqlx::Error> {
        if self.held.is_some() {
            return Ok(());
        }
        let since = Instant::now();
        self.outage.waiting_since = Some(since);
        let taken = match self.kind {
            CallKind::Write => self.pool.begin().await.map(Held::Transaction),
            CallKind::Read(freshness) => self.read_connection(freshness).await.map(Held::Connection),
        };
        self.outage.waiting_since = None;
        self.outage.waited += since.elapsed();
        self.held = Some(taken.map_err(|error| self.observe(error))?);
        Ok(())
    }

    /// The replica's connection when it may serve a read of `freshness`,
    /// else the primary's.
    async fn read_connection(&self, freshness: Freshness) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        if let Some(replica) = &self.replica
            && let Some(connection) = replica.connection(freshness).await
        {
            metrics::counter!("db_reads_total", "server" => "replica").increment(1);
            return Ok(connection);
        }
        metrics::counter!("db_reads_total", "server" => "primary").increment(1);
        self.pool.acquire().await
    }

    /// Runs a plugin statement on the call's connection, once the host
    /// accepts it.
    async fn run<T>(
        &mut self,
        statement: &str,
        run: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, SqlError> {
        statement::check(statement).map_err(|message| SqlError { code: Some(REFUSED.into()), message })?;
        self.take_connection().await.map_err(sql_error)?;
        let outcome = run(held_connection(&mut self.held)).await;
        outcome.map_err(|error| sql_error(self.observe(error)))
    }
}

impl sql::Host for SqlSession {
    async fn query(&mut self, statement: String, params: Vec<Value>) -> Result<Rows, SqlError> {
        let params = params.into_iter().enumerate().map(Param::try_from_value).collect::<Result<Vec<_>, _>>()?;
        let rows = self
            .run(&statement, async |connection| bind(sqlx::query(&statement), params).fetch_all(connection).await)
            .await?;
        decode_rows(&rows)
    }

    async fn execute(&mut self, statement: String, params: Vec<Value>) -> Result<u64, SqlError> {
        let params = params.into_iter().enumerate().map(Param::try_from_value).collect::<Result<Vec<_>, _>>()?;
        let done = self
            .run(&statement, async |connection| bind(sqlx::query(&statement), params).execute(connection).await)
            .await?;
        Ok(done.rows_affected())
    }
}

/// The connection `take_connection` took.
fn held_connection(held: &mut Option<Held>) -> &mut PgConnection {
    match held.as_mut().expect("taken first") {
        Held::Transaction(transaction) => transaction,
        Held::Connection(connection) => connection,
    }
}

/// A parameter, checked and converted before anything reaches the server.
enum Param {
    Bool(Option<bool>),
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
    Timestamp(Option<DateTime<Utc>>),
    Uuid(Option<Uuid>),
    Json(Option<serde_json::Value>),
    Bytes(Option<Vec<u8>>),
}

impl Param {
    fn try_from_value((index, value): (usize, Value)) -> Result<Self, SqlError> {
        let invalid = |what: &str| SqlError {
            code: Some(INVALID_PARAMETER.into()),
            message: format!("parameter ${} is not {what}", index + 1),
        };
        Ok(match value {
            Value::Bool(v) => Param::Bool(v),
            Value::Int(v) => Param::Int(v),
            Value::Float(v) => Param::Float(v),
            Value::Text(v) => Param::Text(v),
            Value::Timestamp(v) => Param::Timestamp(
                v.map(|micros| {
                    DateTime::from_timestamp_micros(micros).ok_or_else(|| invalid("a representable timestamp"))
                })
                .transpose()?,
            ),
            Value::Uuid(v) => {
                Param::Uuid(v.map(|text| Uuid::parse_str(&text).map_err(|_| invalid("a UUID"))).transpose()?)
            }
            Value::Json(v) => {
                Param::Json(v.map(|text| serde_json::from_str(&text).map_err(|_| invalid("valid JSON"))).transpose()?)
            }
            Value::Bytes(v) => Param::Bytes(v),
        })
    }
}

fn bind<'q>(mut query: Query<'q, Postgres, PgArguments>, params: Vec<Param>) -> Query<'q, Postgres, PgArguments> {
    for param in params {
        query = match param {
            Param::Bool(v) => query.bind(v),
            Param::Int(v) => query.bind(v),
            Param::Float(v) => query.bind(v),
            Param::Text(v) => query.bind(v),
            Param::Timestamp(v) => query.bind(v),
            Param::Uuid(v) => query.bind(v),
            Param::Json(v) => query.bind(v.map(sqlx::types::Json)),
            Param::Bytes(v) => query.bind(v),
        };
    }
    query
}

fn decode_rows(rows: &[PgRow]) -> Result<Rows, SqlError> {
    let columns =
        rows.first().map(|row| row.columns().iter().map(|c| c.name().to_string()).collect()).unwrap_or_default();
    let rows = rows
        .iter()
        .map(|row| (0..row.len()).map(|index| decode_value(row, index)).collect())
        .collect::<Result<_, _>>()?;
    Ok(Rows { columns, rows })
}

fn decode_value(row: &PgRow, index: usize) -> Result<Value, SqlError> {
    let raw = row.try_get_raw(index).map_err(sql_error)?;
    let value = match raw.type_info().name() {
        "BOOL" => Value::Bool(row.try_get(index).map_err(sql_error)?),
        "INT2" => Value::Int(row.try_get::<Option<i16>, _>(index).map_err(sql_error)?.map(i64::from)),
        "INT4" => Value::Int(row.try_get::<Option<i32>, _>(index).map_err(sql_error)?.map(i64::from)),
        "INT8" => Value::Int(row.try_get(index).map_err(sql_error)?),
        "FLOAT4" => Value::Float(row.try_get::<Option<f32>, _>(index).map_err(sql_error)?.map(f64::from)),
        "FLOAT8" => Value::Float(row.try_get(index).map_err(sql_error)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => Value::Text(row.try_get(index).map_err(sql_error)?),
        "TIMESTAMPTZ" => Value::Timestamp(
            row.try_get::<Option<DateTime<Utc>>, _>(index)
                .map_err(sql_error)?
                .map(|instant| instant.timestamp_micros()),
        ),
        "UUID" => Value::Uuid(row.try_get::<Option<Uuid>, _>(index).map_err(sql_error)?.map(|id| id.to_string())),
        "JSON" | "JSONB" => Value::Json(
            row.try_get::<Option<serde_json::Value>, _>(index).map_err(sql_error)?.map(|json| json.to_string()),
        ),
        "BYTEA" => Value::Bytes(row.try_get(index).map_err(sql_error)?),
        other => {
            return Err(SqlError {
                code: Some(NOT_SUPPORTED.into()),
                message: format!(
                    "column `{}` has type {other}, which the sql interface does not carry; cast it in the statement (e.g. `::text`)",
                    row.column(index).name()
                ),
            });
        }
    };
    Ok(value)
}

/// SQLSTATE `invalid_parameter_value`: a parameter the host refused to
/// send is the caller's bad input, as the server's own refusal would be.
const INVALID_PARAMETER: &str = "22023";

/// SQLSTATE `feature_not_supported`: a column of a type `sql` does not carry.
const NOT_SUPPORTED: &str = "0A000";

/// SQLSTATE `internal_error`: anything else the host met running it.
const INTERNAL_ERROR: &str = "XX000";

/// SQLSTATE `connection_failure`: what a plugin is told when the host could
/// not reach the server, so that it sees a passing failure (class 08).
const CONNECTION_FAILURE: &str = "08006";

fn sql_error(error: sqlx::Error) -> SqlError {
    match error {
        sqlx::Error::Database(error) => {
            SqlError { code: error.code().map(|code| code.into_owned()), message: error.message().to_string() }
        }
        sqlx::Error::PoolTimedOut => SqlError {
            code: Some(CONNECTION_FAILURE.into()),
            message: "no database connection became free in time".into(),
        },
        other if is_outage(&other) => SqlError { code: Some(CONNECTION_FAILURE.into()), message: other.to_string() },
        other => SqlError { code: Some(INTERNAL_ERROR.into()), message: other.to_string() },
    }
}

/// Whether `error` is the database failing rather than a statement: no
/// connection in time, a connection lost or refused, a server shutting
/// down or out of connections (SQLSTATE classes 08, 53 and 57P). A
/// statement cancelled by its timeout (57014) is the statement's own.
fn is_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => {
            error.code().is_some_and(|code| code.starts_with("08") || code.starts_with("53") || code.starts_with("57P"))
        }
        _ => false,
    }
}

/// `statement_timeout` (57014) or `lock_timeout` (55P03) ended the statement.
fn is_timeout(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(error) if matches!(error.code().as_deref(), Some("57014" | "55P03")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_failing_is_told_from_a_statement_failing() {
        assert!(is_outage(&sqlx::Error::PoolTimedOut));
        assert!(is_outage(&sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset))));
        assert!(!is_outage(&sqlx::Error::RowNotFound));
        assert!(!is_outage(&sqlx::Error::ColumnNotFound("title".into())));
        let told = sql_error(sqlx::Error::PoolTimedOut);
        assert_eq!(told.code.as_deref(), Some(CONNECTION_FAILURE), "a plugin sees a passing failure");
    }

    #[tokio::test]
    async fn a_call_cut_short_while_waiting_for_a_connection_saw_an_outage() {
        // Nothing listens on port 9: the pool keeps trying until cut short.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy("postgres://nobody@127.0.0.1:9/none")
            .unwrap();
        let mut session = SqlSession::new(pool, HostKey::unknown(), CallKind::Write);
        let cut = tokio::time::timeout(Duration::from_millis(100), session.take_connection()).await;
        assert!(cut.is_err(), "still waiting");
        let outage = session.outage().expect("an outage");
        assert!(outage.contains("no database connection"), "{outage}");
    }
}
