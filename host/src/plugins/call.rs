//! One plugin call: a fresh store and instance with its limits, and how the
//! call ends — commit on `ok`, roll back on `err`, a trap or a deadline,
//! and a precise account of why a call failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};
use tokio::sync::Semaphore;
use wasmtime::{ResourceLimiter, Store, Trap};

use super::PluginIdentity;
use super::capabilities::config::PluginSettings;
use super::capabilities::log::PluginLog;
use super::capabilities::sql::SqlSession;
use super::engine::{EPOCH_TICK, PluginEngine};
use super::manifest::{Grants, Limits};
use super::stats::{CallOutcome, PluginStats};
use crate::events::{OutboxRecord, outbox};
use crate::trace::RequestTrace;

/// Whether a call may change data: a write runs in one transaction the host
/// commits after the export returns `ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Read,
    Write,
}

/// What every plugin call shares: the engine, the database and the instance
/// slots of the pooling allocator.
pub struct PluginRuntime {
    pub(super) engine: PluginEngine,
    pub(super) pool: PgPool,
    slots: Arc<Semaphore>,
}

impl PluginRuntime {
    pub fn new(engine: PluginEngine, pool: PgPool, max_instances: u32) -> Self {
        Self { engine, pool, slots: Arc::new(Semaphore::new(max_instances as usize)) }
    }
}

/// The data of a call's `Store`: one field per capability, plus limits.
pub struct CallState {
    pub(super) sql: SqlSession,
    pub(super) log: PluginLog,
    pub(super) settings: PluginSettings,
    pub(super) grants: Grants,
    /// The request the call serves; travels with what it publishes.
    pub(super) trace: RequestTrace,
    /// Records `publish`ed during the call, appended to the outbox when it
    /// commits.
    pub(super) published: Vec<OutboxRecord>,
    limits: MemoryLimit,
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
}

impl PluginFailure {
    pub fn plugin(&self) -> &str {
        match self {
            Self::DeadlineExceeded { plugin, .. }
            | Self::MemoryExhausted { plugin, .. }
            | Self::Trapped { plugin, .. }
            | Self::Failed { plugin, .. }
            | Self::CommitFailed { plugin, .. } => plugin,
        }
    }
}

/// A loaded plugin, whatever its world: who it is, what it may touch, its
/// limits and settings, and the runtime its calls run on.
pub struct LoadedPlugin {
    pub(super) identity: PluginIdentity,
    /// Of the manifest and the `.wasm` (see `PluginSource`).
    pub(super) digest: String,
    pub(super) grants: Grants,
    pub(super) limits: Limits,
    pub(super) settings: PluginSettings,
    pub(super) stats: PluginStats,
    pub(super) runtime: Arc<PluginRuntime>,
}

/// Host statements that commit together with a successful write call, run
/// after the export returned `ok` and before COMMIT, on the call's
/// transaction (e.g. the outbox records announcing the change).
pub trait BeforeCommit<R> {
    fn run(self, answer: &R, connection: &mut PgConnection) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// Nothing to add: reads, and writes that announce nothing.
pub struct NothingMore;

impl<R> BeforeCommit<R> for NothingMore {
    fn run(self, _: &R, _: &mut PgConnection) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Runs `body` (instantiate + call an export) in a fresh store and ends the
/// call's transaction by its outcome (see `execute`), counting the call by
/// plugin and outcome and timing it.
pub(super) async fn run<R, E>(
    plugin: &LoadedPlugin,
    trace: &RequestTrace,
    kind: CallKind,
    body: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<Result<R, E>>,
    before_commit: impl BeforeCommit<R>,
) -> Result<Result<R, E>, PluginFailure> {
    let started = Instant::now();
    let result = execute(plugin, trace, kind, body, before_commit).await;
    let (outcome, counted_as) = match &result {
        Ok(Ok(_)) => ("ok", CallOutcome::Ok),
        Ok(Err(_)) => ("error", CallOutcome::Error),
        Err(PluginFailure::Trapped { .. }) => ("trap", CallOutcome::Trap),
        Err(PluginFailure::DeadlineExceeded { .. }) => ("deadline", CallOutcome::Deadline),
        Err(PluginFailure::MemoryExhausted { .. }) => ("memory", CallOutcome::Trap),
        Err(PluginFailure::CommitFailed { .. }) => ("commit_failed", CallOutcome::Error),
        Err(PluginFailure::Failed { .. }) => ("failed", CallOutcome::Error),
    };
    let took = started.elapsed();
    plugin.stats.record(counted_as, took);
    let name = plugin.identity.name.clone();
    metrics::counter!("plugin_calls_total", "plugin" => name.clone(), "outcome" => outcome).increment(1);
    metrics::histogram!("plugin_call_duration_seconds", "plugin" => name).record(took.as_secs_f64());
    result
}

/// Runs `body` (instantiate + call an export) in a fresh store and ends the
/// call's transaction by its outcome: on `Ok(Ok(_))`, `before_commit` runs
/// in it and it commits. `Ok(Err(_))` is the export's own error: the
/// transaction is rolled back and the error handed on.
async fn execute<R, E>(
    plugin: &LoadedPlugin,
    trace: &RequestTrace,
    kind: CallKind,
    body: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<Result<R, E>>,
    before_commit: impl BeforeCommit<R>,
) -> Result<Result<R, E>, PluginFailure> {
    let LoadedPlugin { identity, grants, limits, settings, runtime, .. } = plugin;
    let plugin = || identity.name.clone();
    let _slot = runtime
        .slots
        .acquire()
        .await
        .map_err(|_| PluginFailure::Failed { plugin: plugin(), reason: "the runtime is shutting down".into() })?;

    let state = CallState {
        sql: SqlSession::new(runtime.pool.clone(), kind),
        log: PluginLog {
            plugin: identity.name.clone(),
            version: identity.version.clone(),
            request_id: trace.request_id.clone(),
        },
        settings: settings.clone(),
        grants: grants.clone(),
        trace: trace.clone(),
        published: Vec::new(),
        limits: MemoryLimit::new(limits.memory_bytes()),
    };
    let mut store = Store::new(runtime.engine.engine(), state);
    store.limiter(|state| &mut state.limits);
    let deadline = limits.deadline();
    store.set_epoch_deadline(deadline.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1) as u64);

    // The epoch deadline fires only while guest code runs; this bounds a
    // call whose host calls (e.g. a statement) outlast it.
    let outcome = tokio::time::timeout(deadline + Duration::from_millis(250), body(&mut store)).await;
    let state = store.into_data();
    let failure = match outcome {
        Ok(Ok(Ok(value))) => {
            let committed = match kind {
                CallKind::Write => commit(state.sql, &state.published, &value, before_commit, identity).await,
                CallKind::Read => Ok(()),
            };
            return match committed {
                Ok(()) => Ok(Ok(value)),
                Err(error) => Err(PluginFailure::CommitFailed { plugin: plugin(), reason: error.to_string() }),
            };
        }
        Ok(Ok(Err(error))) => {
            rollback(state.sql, identity).await;
            return Ok(Err(error));
        }
        Ok(Err(error)) => classify(error, identity, limits, &state.limits),
        Err(_) => PluginFailure::DeadlineExceeded { plugin: plugin(), deadline_ms: limits.deadline_ms },
    };
    rollback(state.sql, identity).await;
    tracing::warn!(plugin = %identity.name, plugin_version = %identity.version, %failure, "plugin call failed");
    Err(failure)
}

/// Adds the host's statements to a successful write call's transaction —
/// the records the plugin published, then `before_commit` — and commits.
async fn commit<R>(
    mut sql: SqlSession,
    published: &[OutboxRecord],
    answer: &R,
    before_commit: impl BeforeCommit<R>,
    identity: &PluginIdentity,
) -> Result<(), sqlx::Error> {
    let added = match sql.connection().await {
        Ok(connection) => match outbox::append(connection, published).await {
            Ok(()) => before_commit.run(answer, connection).await,
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    match added {
        Ok(()) => sql.finish(true).await,
        Err(error) => {
            rollback(sql, identity).await;
            Err(error)
        }
    }
}

async fn rollback(sql: SqlSession, identity: &PluginIdentity) {
    if let Err(error) = sql.finish(false).await {
        // The connection is discarded by the pool; nothing was committed.
        tracing::warn!(plugin = %identity.name, %error, "rollback failed");
    }
}

fn classify(error: wasmtime::Error, identity: &PluginIdentity, limits: &Limits, memory: &MemoryLimit) -> PluginFailure {
    let plugin = identity.name.clone();
    if memory.denied {
        return PluginFailure::MemoryExhausted { plugin, limit_mib: limits.memory_mib };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginFailure::DeadlineExceeded { plugin, deadline_ms: limits.deadline_ms },
        Some(Trap::StackOverflow) => PluginFailure::Trapped { plugin, reason: "stack overflow".into() },
        Some(Trap::UnreachableCodeReached) => PluginFailure::Trapped {
            plugin,
            reason: "unreachable code reached (a Rust guest panicked or aborted)".into(),
        },
        Some(trap) => PluginFailure::Trapped { plugin, reason: trap.to_string() },
        // The stubs of `define_unknown_imports_as_traps` fail with this
        // error rather than a `Trap`; for the guest it is one all the same.
        None if error.root_cause().to_string().starts_with("unknown import") => PluginFailure::Trapped {
            plugin,
            reason: format!("it called an import plugins are not given ({})", error.root_cause()),
        },
        None => PluginFailure::Failed { plugin, reason: format!("{error:#}") },
    }
}

/// Caps an instance's linear memory and remembers whether the cap was hit,
/// so that the trap that follows (a Rust guest aborts on OOM) is reported
/// as what it is.
struct MemoryLimit {
    limit: usize,
    denied: bool,
}

impl MemoryLimit {
    fn new(limit: usize) -> Self {
        Self { limit, denied: false }
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
