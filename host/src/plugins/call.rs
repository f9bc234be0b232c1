//! One plugin call: a fresh store and instance with its limits, and how the
//! call ends — commit on `ok`, roll back on `err`, a trap or a deadline,
//! and a precise account of why a call failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::{Store, Trap};
use wasmtime_wasi::I32Exit;

use super::PluginIdentity;
use super::breaker::CircuitBreaker;
use super::capabilities::CallKind;
use super::capabilities::config::PluginSettings;
use super::capabilities::kv::KvWriters;
use super::capabilities::sql::SqlSession;
use super::database::{PluginDatabase, PluginDatabases};
use super::engine::{EPOCH_TICK, PluginEngine};
use super::manifest::Limits;
use super::state::{BeforeCommit, CallState, CommitError, MemoryLimit};
use super::stats::{CallOutcome, PluginStats};
use crate::outbox::OutboxWaker;
use crate::redis_client::RedisClient;
use crate::trace::RequestTrace;

/// What every plugin call shares: the engine, the database and the instance
/// slots of the pooling allocator.
pub struct PluginRuntime {
    pub(super) engine: PluginEngine,
    /// The host's pool and key, and the plugins' roles and pools.
    pub(super) databases: PluginDatabases,
    /// For the `kv` import; `None` when the server has no Redis.
    pub(super) redis: Option<RedisClient>,
    /// Serialises the `kv` write calls of each plugin in this process.
    pub(super) kv_writers: Arc<KvWriters>,
    /// Told when a write call committed (and with it, outbox records).
    pub(super) outbox: OutboxWaker,
    slots: Arc<Semaphore>,
}

impl PluginRuntime {
    pub fn new(
        engine: PluginEngine,
        databases: PluginDatabases,
        redis: Option<RedisClient>,
        outbox: OutboxWaker,
        max_instances: u32,
    ) -> Self {
        Self {
            engine,
            databases,
            redis,
            kv_writers: Arc::default(),
            outbox,
            slots: Arc::new(Semaphore::new(max_instances as usize)),
        }
    }
}

/// Why a plugin call produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum PluginFailure {
    #[error("plugin `{plugin}` did not finish within its {deadline_ms} ms deadline")]
    DeadlineExceeded { plugin: String, deadline_ms: u64 },
    #[error("plugin `{plugin}` exceeded its memory limit of {limit_mib} MiB")]
    MemoryExhausted { plugin: String, limit_mib: u64 },
    #[error("plugin `{plugin}` trapped: {reason}")]
    Trapped { plugin: String, reason: String },
    #[error("plugin `{plugin}` failed: {reason}")]
    Failed { plugin: String, reason: String },
    #[error("the database did not commit the call of plugin `{plugin}`: {reason}")]
    CommitFailed { plugin: String, reason: String },
    /// The database failed the call, not the plugin: never counted against
    /// the plugin's circuit.
    #[error("the database was unavailable to plugin `{plugin}`: {reason}")]
    Unavailable { plugin: String, reason: String },
    #[error(
        "plugin `{plugin}` is switched off after trapping repeatedly; it is tried again in {retry_after_secs} s or when reloaded"
    )]
    CircuitOpen { plugin: String, retry_after_secs: u64 },
}

impl PluginFailure {
    pub fn plugin(&self) -> &str {
        match self {
            Self::DeadlineExceeded { plugin, .. }
            | Self::MemoryExhausted { plugin, .. }
            | Self::Trapped { plugin, .. }
            | Self::Failed { plugin, .. }
            | Self::CommitFailed { plugin, .. }
            | Self::Unavailable { plugin, .. }
            | Self::CircuitOpen { plugin, .. } => plugin,
        }
    }
}

/// A loaded plugin, whatever its world: who it is, what it may touch, its
/// limits and settings, and the runtime its calls run on.
pub struct LoadedPlugin {
    pub(super) identity: PluginIdentity,
    /// Of the manifest and the `.wasm` (see `PluginSource`).
    pub(super) digest: String,
    /// The topics `publish` may write to (the manifest's grant).
    pub(super) granted_topics: Arc<[String]>,
    /// Whether it is granted `kv`.
    pub(super) kv_granted: bool,
    /// Its role, schema and pool, when it is granted `sql`.
    pub(super) database: Option<PluginDatabase>,
    pub(super) limits: Limits,
    pub(super) settings: PluginSettings,
    pub(super) stats: PluginStats,
    pub(super) breaker: CircuitBreaker,
    pub(super) runtime: Arc<PluginRuntime>,
}

impl LoadedPlugin {
    /// A fresh SQL session on its role's pool (the host's when it has no
    /// `sql` grant), with the host's key for the host's own statements.
    pub(super) fn sql_session(&self, kind: CallKind) -> SqlSession {
        let (pool, replica, key) = self.runtime.databases.of(self.database.as_ref());
        SqlSession::new(pool, key, kind).reading_from(replica)
    }

    /// Whether calls are refused now, after repeated traps.
    pub(super) fn circuit_open(&self) -> bool {
        self.breaker.is_open(Instant::now())
    }
}

/// How a call's sessions end once its export has answered.
pub(super) trait CallEnd<R> {
    /// Hands the call the sessions it continues, if any (a batch's
    /// transaction), before its export runs.
    fn begin(&mut self, _state: &mut CallState) {}

    /// The export answered `ok`.
    async fn succeeded(self, state: CallState, answer: &R) -> Result<(), CommitError>;

    /// It answered its own error, trapped or ran out of time: nothing it did
    /// takes effect.
    async fn failed(self, state: CallState);
}

/// A call in a transaction of its own: a write commits (after
/// `before_commit`) and wakes the relay; a read rolls back.
struct OwnTransaction<B> {
    kind: CallKind,
    before_commit: B,
    outbox: OutboxWaker,
}

impl<R, B: BeforeCommit<R>> CallEnd<R> for OwnTransaction<B> {
    async fn succeeded(self, state: CallState, answer: &R) -> Result<(), CommitError> {
        match self.kind {
            CallKind::Write => {
                state.into_settlement().commit(answer, self.before_commit).await?;
                self.outbox.wake();
            }
            CallKind::Read(_) => state.into_settlement().rollback().await,
        }
        Ok(())
    }

    async fn failed(self, state: CallState) {
        state.into_settlement().rollback().await;
    }
}

/// Runs `body` (instantiate + call an export) in a fresh store, in a
/// transaction of its own that ends by its outcome (see `run_ending`).
pub(super) async fn run<R, E>(
    plugin: &LoadedPlugin,
    trace: &RequestTrace,
    kind: CallKind,
    body: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<Result<R, E>>,
    before_commit: impl BeforeCommit<R>,
) -> Result<Result<R, E>, PluginFailure> {
    let end = OwnTransaction { kind, before_commit, outbox: plugin.runtime.outbox.clone() };
    run_ending(plugin, trace, kind, body, end).await
}

/// Runs `body` (instantiate + call an export) in a fresh store and ends the
/// call's sessions by its outcome through `end` (see `execute`), counting
/// the call by plugin and outcome, timing it, and refusing it while the
/// plugin's circuit is open. The call runs in a `plugin_call` tracing span.
pub(super) async fn run_ending<R, E>(
    plugin: &LoadedPlugin,
    trace: &RequestTrace,
    kind: CallKind,
    body: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<Result<R, E>>,
    end: impl CallEnd<R>,
) -> Result<Result<R, E>, PluginFailure> {
    let identity = &plugin.identity;
    let name = identity.name.clone();
    let started = Instant::now();
    if let Err(open) = plugin.breaker.admit(started) {
        metrics::counter!("plugin_calls_total", "plugin" => name.clone(), "outcome" => "circuit_open").increment(1);
        return Err(PluginFailure::CircuitOpen { plugin: name, retry_after_secs: open.retry_after.as_secs() });
    }
    let span = tracing::info_span!(
        "plugin_call",
        plugin = %identity.name,
        plugin_version = %identity.version,
        request_id = %trace.request_id,
        ?kind,
    );
    let (result, memory_peak) = execute(plugin, trace, kind, body, end).instrument(span).await;
    let (outcome, counted_as) = match &result {
        Ok(Ok(_)) => ("ok", CallOutcome::Ok),
        Ok(Err(_)) => ("error", CallOutcome::Error),
        Err(PluginFailure::Trapped { .. }) => ("trap", CallOutcome::Trap),
        Err(PluginFailure::DeadlineExceeded { .. }) => ("deadline", CallOutcome::Deadline),
        Err(PluginFailure::MemoryExhausted { .. }) => ("memory", CallOutcome::Trap),
        Err(PluginFailure::CommitFailed { .. }) => ("commit_failed", CallOutcome::Error),
        Err(PluginFailure::Unavailable { .. }) => ("unavailable", CallOutcome::Error),
        Err(PluginFailure::Failed { .. } | PluginFailure::CircuitOpen { .. }) => ("failed", CallOutcome::Error),
    };
    let took = started.elapsed();
    plugin.stats.record(counted_as, took);
    let trapped = matches!(counted_as, CallOutcome::Trap | CallOutcome::Deadline);
    if let Some(open) = plugin.breaker.record(trapped, Instant::now()) {
        metrics::gauge!("plugin_circuit_open", "plugin" => name.clone()).set(if open { 1.0 } else { 0.0 });
    }
    metrics::counter!("plugin_calls_total", "plugin" => name.clone(), "outcome" => outcome).increment(1);
    metrics::histogram!("plugin_call_duration_seconds", "plugin" => name.clone()).record(took.as_secs_f64());
    metrics::histogram!("plugin_memory_peak_bytes", "plugin" => name).record(memory_peak as f64);
    result
}

/// Runs `body` (instantiate + call an export) in a fresh store, in a slot
/// of the instance pool, and ends the call's sessions by its outcome: on
/// `Ok(Ok(_))` through `end.succeeded`, which may fail (the commit); on
/// anything else through `end.failed`. `Ok(Err(_))` is the export's own
/// error, handed on. Answers the largest linear memory the call grew to.
async fn execute<R, E>(
    plugin: &LoadedPlugin,
    trace: &RequestTrace,
    kind: CallKind,
    body: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<Result<R, E>>,
    mut end: impl CallEnd<R>,
) -> (Result<Result<R, E>, PluginFailure>, usize) {
    let LoadedPlugin { identity, limits, runtime, .. } = plugin;
    let name = || identity.name.clone();
    let Ok(_slot) = runtime.slots.acquire().await else {
        return (Err(PluginFailure::Failed { plugin: name(), reason: "the runtime is shutting down".into() }), 0);
    };
    let deadline = limits.deadline();
    let mut state = CallState::new(plugin, trace, kind);
    end.begin(&mut state);
    let mut store = Store::new(runtime.engine.engine(), state);
    store.limiter(|state| &mut state.memory);
    store.set_epoch_deadline(deadline.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1) as u64);

    // The epoch deadline fires only while guest code runs; this bounds a
    // call whose host calls (e.g. a statement) outlast it.
    let outcome = tokio::time::timeout(deadline + Duration::from_millis(250), body(&mut store)).await;
    let state = store.into_data();
    let memory_peak = state.memory.peak;
    let failure = match outcome {
        Ok(Ok(Ok(value))) => {
            let result = match end.succeeded(state, &value).await {
                Ok(()) => Ok(Ok(value)),
                Err(error) => Err(PluginFailure::CommitFailed { plugin: name(), reason: error.to_string() }),
            };
            return (result, memory_peak);
        }
        Ok(Ok(Err(error))) => match (state.sql.outage(), state.sql.timed_out()) {
            (Some(reason), _) => PluginFailure::Unavailable { plugin: name(), reason },
            // Whatever the plugin made of it: the server noticed the deadline first.
            (None, true) => PluginFailure::DeadlineExceeded { plugin: name(), deadline_ms: limits.deadline_ms },
            (None, false) => {
                end.failed(state).await;
                return (Ok(Err(error)), memory_peak);
            }
        },
        Ok(Err(error)) => classify(error, identity, limits, &state.memory),
        Err(_) => PluginFailure::DeadlineExceeded { plugin: name(), deadline_ms: limits.deadline_ms },
    };
    let failure = blame_the_database(failure, &state.sql, deadline);
    end.failed(state).await;
    tracing::warn!(plugin = %identity.name, plugin_version = %identity.version, %failure, "plugin call failed");
    (Err(failure), memory_peak)
}

/// A call the database failed — no connection in time, a connection lost —
/// failed because of it, whatever the plugin then did (trapped on the
/// error, or ran out of its deadline): as does a call that spent more than
/// half its deadline waiting for a connection.
fn blame_the_database(failure: PluginFailure, sql: &SqlSession, deadline: Duration) -> PluginFailure {
    let plugin = failure.plugin().to_string();
    if let Some(reason) = sql.outage() {
        return PluginFailure::Unavailable { plugin, reason };
    }
    let waited = sql.waited_for_connection();
    if matches!(failure, PluginFailure::DeadlineExceeded { .. }) && waited * 2 >= deadline {
        let reason = format!(
            "{} ms of its {} ms deadline went waiting for a database connection",
            waited.as_millis(),
            deadline.as_millis()
        );
        return PluginFailure::Unavailable { plugin, reason };
    }
    failure
}

fn classify(error: wasmtime::Error, identity: &PluginIdentity, limits: &Limits, memory: &MemoryLimit) -> PluginFailure {
    let plugin = identity.name.clone();
    if memory.denied {
        return PluginFailure::MemoryExhausted { plugin, limit_mib: limits.memory_mib };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginFailure::DeadlineExceeded { plugin, deadline_ms: limits.deadline_ms },
        Some(Trap::StackOverflow) => PluginFailure::Trapped { plugin, reason: "stack overflow".into() },
        // A Rust guest keeps its frames' locals on a stack in linear memory,
        // below its data: overflowing that stack ends here, not above.
        Some(Trap::MemoryOutOfBounds) => PluginFailure::Trapped {
            plugin,
            reason: "out of bounds memory access (in a Rust guest, most often its stack overflowing)".into(),
        },
        Some(Trap::UnreachableCodeReached) => PluginFailure::Trapped {
            plugin,
            reason: "unreachable code reached (a Rust guest panicked or aborted: its message is in the log)".into(),
        },
        Some(trap) => PluginFailure::Trapped { plugin, reason: trap.to_string() },
        // `wasi:cli/exit` ends the call, not the host.
        None if error.downcast_ref::<I32Exit>().is_some() => {
            let code = error.downcast_ref::<I32Exit>().map_or(0, |exit| exit.0);
            PluginFailure::Trapped { plugin, reason: format!("it called exit({code})") }
        }
        None => PluginFailure::Failed { plugin, reason: format!("{error:#}") },
    }
}
