//! A streaming replica for reads (`DATABASE_READ_URL`), and what makes
//! reading from it safe.
//!
//! Invariants:
//! - A read goes to the replica only when the replica has replayed the WAL
//!   up to the position the read asks for (`Freshness::Replayed`): the end
//!   of the last write that changed what the read covers, which the cache's
//!   stamps carry (see `tasks::cache`). So no reader — least of all the
//!   writer — reads older than a write it could have seen acknowledged. A
//!   read with nothing to go by (`Freshness::Latest`) goes to the primary.
//! - A replica that does not answer, is not in recovery, or lags further
//!   than `REPLICA_MAX_LAG_MS` behind the primary serves nothing until a
//!   poll finds it well again; a read that cannot get a replica connection
//!   takes the primary's instead.
//! - Writes, locks and the outbox never come here: only calls of
//!   `CallKind::Read` ask for a replica connection.
//!
//! The poll reads the primary's WAL position, then the replica's replay
//! position. The lag is how long ago the primary was at a position the
//! replica has not reached yet (from the samples kept for the lag bound):
//! a measure that stays 0 on an idle primary, unlike the age of the last
//! replayed transaction.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnectOptions;
use sqlx::{PgPool, Postgres};
use tokio_util::sync::CancellationToken;

use super::SessionSettings;
use crate::background::Ticks;
use crate::config::PoolMode;

/// A WAL position: bytes since `0/0`, increasing on one primary.
pub type Lsn = u64;

/// How recent a read's data must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The primary's: nothing says which writes the read must see.
    Latest,
    /// Any server that has replayed the WAL up to this position.
    Replayed(Lsn),
}

/// The primary's position, as SQL: a `bigint` (`pg_lsn` minus `0/0`). The
/// insert position, not the write position: with `synchronous_commit` off
/// a commit returns before its record is written, never before it is
/// inserted.
const PRIMARY_POSITION: &str = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint";

/// The replica's replay position; NULL on a server not in recovery (a
/// promoted standby keeps its last replay position, so that alone would not
/// tell).
const REPLAY_POSITION: &str =
    "SELECT CASE WHEN pg_is_in_recovery() THEN (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint END";

/// The primary's WAL insert position now: after a write committed, at or
/// past its commit record.
pub async fn wal_insert_position(primary: &PgPool) -> Result<Lsn, sqlx::Error> {
    let position: i64 = sqlx::query_scalar(PRIMARY_POSITION).fetch_one(primary).await?;
    Ok(position.max(0) as Lsn)
}

/// How long a read waits for a replica connection before it takes the
/// primary's.
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(250);

/// What the last poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaState {
    /// Not polled yet.
    Starting,
    Serving {
        lag: Duration,
    },
    Lagging {
        lag: Duration,
    },
    Down {
        reason: String,
    },
}

#[derive(Clone)]
pub struct ReadReplica {
    shared: Arc<Shared>,
}

struct Shared {
    /// The host's own connections to the primary (for its position).
    primary: PgPool,
    /// `DATABASE_READ_URL`'s server, database and TLS: what every
    /// connection to the replica starts from, the plugins' with their role.
    options: PgConnectOptions,
    /// The host's connection for the poll.
    watch: PgPool,
    max_lag: Duration,
    /// The replica's replay position while it serves; 0 while it does not.
    serving_up_to: AtomicU64,
    /// When a poll last found it serving, in milliseconds of `clock`.
    serving_polled_ms: AtomicU64,
    clock: Instant,
    state: Mutex<ReplicaState>,
}

impl ReadReplica {
    /// The replica at `url` (not connected yet: the poll connects), checked
    /// against `primary`'s positions; its sessions' settings travel as
    /// `mode` says.
    pub fn new(primary: PgPool, url: &str, max_lag: Duration, mode: PoolMode) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse().context("DATABASE_READ_URL is not a valid PostgreSQL URL")?;
        let max_lag_ms = u64::try_from(max_lag.as_millis()).unwrap_or(u64::MAX).max(1);
        let watch = super::pool_options()
            .max_connections(1)
            .acquire_timeout(max_lag.max(Duration::from_millis(500)))
            .connect_lazy_with(
                SessionSettings::new(mode, max_lag_ms)
                    .connect_options(options.clone().application_name("todo-host replica watch")),
            );
        let shared = Shared {
            primary,
            options,
            watch,
            max_lag,
            serving_up_to: AtomicU64::new(0),
            serving_polled_ms: AtomicU64::new(0),
            clock: Instant::now(),
            state: Mutex::new(ReplicaState::Starting),
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// What every connection to the replica starts from.
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.shared.options
    }

    /// Whether a read of `freshness` may go to the replica now: its last
    /// poll, no older than the lag bound, found it serving and replayed that
    /// far.
    pub fn serves(&self, freshness: Freshness) -> bool {
        let replayed = self.shared.serving_up_to.load(Ordering::Acquire);
        let polled_ms = self.shared.serving_polled_ms.load(Ordering::Acquire);
        let recent =
            self.shared.clock.elapsed().as_millis() as u64 <= polled_ms + self.shared.max_lag.as_millis() as u64;
        match freshness {
            Freshness::Latest => false,
            Freshness::Replayed(position) => recent && replayed != 0 && replayed >= position,
        }
    }

    /// What the last poll found.
    pub fn state(&self) -> ReplicaState {
        self.shared.state.lock().expect("poisoned").clone()
    }

    /// A pool of connections to the replica made from `options` (one of
    /// its roles', derived from `connect_options`).
    pub fn pool(&self, options: PgConnectOptions, connections: u32) -> ReplicaPool {
        // Short: a replica that gives no connection at once is skipped, not
        // waited for (the read then takes the primary's).
        let pool = super::pool_options()
            .max_connections(connections)
            .acquire_timeout(REPLICA_ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(options);
        ReplicaPool { replica: self.clone(), pool }
    }

    /// Polls every `every` until `shutdown`.
    pub async fn watch(self, every: Duration, shutdown: CancellationToken) {
        let mut samples = PrimarySamples::new(self.shared.max_lag);
        let mut ticks = Ticks::new(every, shutdown);
        while ticks.next().await {
            // A replica that does not answer within the lag bound is as
            // good as one lagging past it.
            let bound = self.shared.max_lag.max(Duration::from_millis(500));
            let (state, replayed) = tokio::time::timeout(bound, self.poll(&mut samples)).await.unwrap_or_else(|_| {
                let reason = format!("no answer within {} ms", bound.as_millis());
                (ReplicaState::Down { reason }, 0)
            });
            self.observe(state, replayed);
        }
    }

    async fn poll(&self, samples: &mut PrimarySamples) -> (ReplicaState, Lsn) {
        let shared = &self.shared;
        let primary = match wal_insert_position(&shared.primary).await {
            Ok(position) => position,
            Err(error) => return (ReplicaState::Down { reason: format!("the primary's position: {error}") }, 0),
        };
        samples.push(Instant::now(), primary);
        let replayed = match sqlx::query_scalar::<_, Option<i64>>(REPLAY_POSITION).fetch_one(&shared.watch).await {
            Ok(Some(position)) => position.max(0) as u64,
            Ok(None) => {
                return (ReplicaState::Down { reason: "the server is not a replica (not in recovery)".into() }, 0);
            }
            Err(error) => return (ReplicaState::Down { reason: error.to_string() }, 0),
        };
        match samples.lag(Instant::now(), replayed) {
            Some(lag) if lag <= shared.max_lag => (ReplicaState::Serving { lag }, replayed),
            lag => (ReplicaState::Lagging { lag: lag.unwrap_or(shared.max_lag) }, 0),
        }
    }

    /// Records a poll's (or a failed connection's) finding; logs changes.
    fn observe(&self, state: ReplicaState, replayed: Lsn) {
        self.shared.serving_up_to.store(replayed, Ordering::Release);
        if matches!(state, ReplicaState::Serving { .. }) {
            self.shared.serving_polled_ms.store(self.shared.clock.elapsed().as_millis() as u64, Ordering::Release);
        }
        let (serving, lag) = match &state {
            ReplicaState::Serving { lag } => (1.0, lag.as_secs_f64()),
            ReplicaState::Lagging { lag } => (0.0, lag.as_secs_f64()),
            ReplicaState::Starting | ReplicaState::Down { .. } => (0.0, 0.0),
        };
        metrics::gauge!("db_replica_serving").set(serving);
        metrics::gauge!("db_replica_lag_seconds").set(lag);
        let mut current = self.shared.state.lock().expect("poisoned");
        if std::mem::discriminant(&*current) != std::mem::discriminant(&state) {
            match &state {
                ReplicaState::Serving { .. } => tracing::info!("the read replica serves reads"),
                other => tracing::warn!(state = ?other, "the read replica serves no reads; they go to the primary"),
            }
        }
        *current = state;
    }
}

/// One role's connections to the replica.
#[derive(Clone)]
pub struct ReplicaPool {
    replica: ReadReplica,
    pool: PgPool,
}

impl ReplicaPool {
    /// A connection for a read of `freshness`, or `None`: the replica may
    /// not serve it, or gives no connection (then it serves nothing until
    /// the next poll finds it well).
    pub async fn connection(&self, freshness: Freshness) -> Option<PoolConnection<Postgres>> {
        if !self.replica.serves(freshness) {
            return None;
        }
        match self.pool.acquire().await {
            Ok(connection) => Some(connection),
            // Busy, not down: this read takes the primary's.
            Err(sqlx::Error::PoolTimedOut) => None,
            Err(error) => {
                self.replica.observe(ReplicaState::Down { reason: format!("no connection: {error}") }, 0);
                None
            }
        }
    }
}

/// The primary's recent positions, each with when it was read: enough to
/// tell how long ago the primary was where the replica is now.
struct PrimarySamples {
    samples: VecDeque<(Instant, Lsn)>,
    keep: Duration,
}

impl PrimarySamples {
    fn new(max_lag: Duration) -> Self {
        Self { samples: VecDeque::new(), keep: max_lag }
    }

    fn push(&mut self, at: Instant, position: Lsn) {
        self.samples.push_back((at, position));
        // Keep one sample older than the bound: the lag past it is known
        // to be past it.
        while self.samples.len() > 2 && self.samples[1].0 + self.keep < at {
            self.samples.pop_front();
        }
    }

    /// How far behind a replica that has replayed up to `replayed` is: 0 if
    /// it reached the latest sample, else the age of the newest sample it
    /// did reach; `None` if it reached none of them (further behind than
    /// anything kept).
    fn lag(&self, now: Instant, replayed: Lsn) -> Option<Duration> {
        let (_, latest) = *self.samples.back()?;
        if replayed >= latest {
            return Some(Duration::ZERO);
        }
        self.samples.iter().rev().find(|(_, position)| *position <= replayed).map(|(at, _)| now - *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_replica_at_the_primarys_latest_position_has_no_lag() {
        let start = Instant::now();
        let mut samples = PrimarySamples::new(5 * SECOND);
        samples.push(start, 100);
        samples.push(start + SECOND, 100);
        assert_eq!(samples.lag(start + 10 * SECOND, 100), Some(Duration::ZERO), "an idle primary: no lag");
    }

    #[test]
    fn the_lag_is_the_age_of_the_newest_position_the_replica_reached() {
        let start = Instant::now();
        let mut samples = PrimarySamples::new(5 * SECOND);
        for (second, position) in [(0, 100), (1, 200), (2, 300)] {
            samples.push(start + second * SECOND, position);
        }
        assert_eq!(samples.lag(start + 2 * SECOND, 250), Some(SECOND));
        assert_eq!(samples.lag(start + 2 * SECOND, 100), Some(2 * SECOND));
        assert_eq!(samples.lag(start + 2 * SECOND, 50), None, "behind everything kept");
    }

    #[test]
    fn samples_are_kept_for_the_bound_and_one_beyond() {
        let start = Instant::now();
        let mut samples = PrimarySamples::new(2 * SECOND);
        for second in 0..10 {
            samples.push(start + second * SECOND, 100 * (second as u64 + 1));
        }
        assert!(samples.samples.len() <= 4, "{}", samples.samples.len());
        let lag = samples.lag(start + 9 * SECOND, 100);
        assert!(lag.is_none_or(|lag| lag > 2 * SECOND), "past the bound: {lag:?}");
    }

    #[tokio::test]
    async fn only_a_read_with_a_position_may_go_to_a_serving_replica() {
        let primary = sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://nobody@127.0.0.1:9/none").unwrap();
        let replica =
            ReadReplica::new(primary, "postgres://nobody@127.0.0.1:9/none", 5 * SECOND, PoolMode::Session).unwrap();
        assert!(!replica.serves(Freshness::Replayed(0)), "not polled yet");
        replica.observe(ReplicaState::Serving { lag: Duration::ZERO }, 500);
        assert!(replica.serves(Freshness::Replayed(500)));
        assert!(replica.serves(Freshness::Replayed(0)), "no write recorded");
        assert!(!replica.serves(Freshness::Replayed(501)), "a write it has not replayed");
        assert!(!replica.serves(Freshness::Latest));
        replica.observe(ReplicaState::Down { reason: "gone".into() }, 0);
        assert!(!replica.serves(Freshness::Replayed(0)));
    }
}
