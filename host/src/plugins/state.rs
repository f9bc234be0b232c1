//! The data of a call's `Store`: one session per host interface, each
//! linked through a getter of its field, and how the sessions end together
//! — one commit point, the call's SQL transaction.
//!
//! Adding a host interface: its module in `capabilities`; here its field,
//! its session in `CallState::new`, its link line (and its place in
//! `Settling::in_order` if it has effects); its grant in the manifest.

use wasmtime::ResourceLimiter;
use wasmtime::component::Linker;
use wasmtime_wasi::{WasiCtxView, WasiView};

use super::call::LoadedPlugin;
use super::capabilities::config::PluginSettings;
use super::capabilities::kv::KvSession;
use super::capabilities::log::PluginLog;
use super::capabilities::publish::PublishSession;
use super::capabilities::sql::SqlSession;
use super::capabilities::wasi::WasiSession;
use super::capabilities::{self, CallKind, Settle, SettleError, config, kv, log, publish, sql, wasi};
use super::manifest::Grants;
use crate::db::HostConnection;
use crate::trace::RequestTrace;

pub struct CallState {
    /// Owns the call's transaction.
    pub(super) sql: SqlSession,
    pub(super) settling: Settling,
    pub(super) log: PluginLog,
    pub(super) config: PluginSettings,
    pub(super) wasi: WasiSession,
    pub(super) memory: MemoryLimit,
}

/// wasmtime-wasi finds its session through this trait.
impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.view()
    }
}

/// The sessions with effects to settle when the call ends.
pub(super) struct Settling {
    pub(super) publish: PublishSession,
    pub(super) kv: KvSession,
}

impl Settling {
    /// In the order they settle: those joining the SQL transaction first,
    /// the one applying elsewhere (`kv`, in Redis) last.
    fn in_order(&mut self) -> [&mut dyn Settle; 2] {
        [&mut self.publish, &mut self.kv]
    }
}

/// Host statements that commit together with a successful write call, run
/// after the export returned `ok` and before COMMIT, on the call's
/// transaction (e.g. the outbox records announcing the change).
pub trait BeforeCommit<R>: Send {
    fn run(self, answer: &R, host: &mut HostConnection<'_>) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// Nothing to add: reads, and writes that announce nothing.
pub struct NothingMore;

impl<R> BeforeCommit<R> for NothingMore {
    fn run(self, _: &R, _: &mut HostConnection<'_>) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Links every interface: those `grants` allows as themselves, the others
/// as stand-ins that refuse every call.
pub fn link(linker: &mut Linker<CallState>, grants: &Grants) -> anyhow::Result<()> {
    capabilities::add_types_to_linker(linker)?;
    log::add_to_linker(linker, |state| &mut state.log)?;
    config::add_to_linker(linker, |state| &mut state.config)?;
    wasi::add_to_linker(linker)?;
    match grants.sql {
        true => sql::add_to_linker(linker, |state| &mut state.sql)?,
        false => sql::add_denied_to_linker(linker)?,
    }
    match grants.kv {
        true => kv::add_to_linker(linker, |state| &mut state.settling.kv)?,
        false => kv::add_denied_to_linker(linker)?,
    }
    match grants.publish.is_empty() {
        false => publish::add_to_linker(linker, |state| &mut state.settling.publish)?,
        true => publish::add_denied_to_linker(linker)?,
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Session(#[from] SettleError),
    #[error("a call of the batch failed, so nothing of the batch commits")]
    Abandoned,
}

impl CallState {
    /// The fresh sessions of one call of `plugin`, serving `trace`.
    pub(super) fn new(plugin: &LoadedPlugin, trace: &RequestTrace, kind: CallKind) -> Self {
        let LoadedPlugin { identity, granted_topics, limits, settings, runtime, .. } = plugin;
        let log = PluginLog {
            plugin: identity.name.clone(),
            version: identity.version.clone(),
            request_id: trace.request_id.clone(),
        };
        Self {
            sql: plugin.sql_session(kind),
            settling: Settling {
                publish: PublishSession::new(granted_topics.clone(), trace.headers()),
                kv: KvSession::new(
                    runtime.redis.clone(),
                    identity.name.clone(),
                    kind,
                    runtime.kv_writers.clone(),
                    limits.deadline(),
                ),
            },
            log: log.clone(),
            config: settings.clone(),
            wasi: WasiSession::new(log),
            memory: MemoryLimit::new(limits.memory_bytes()),
        }
    }

    /// The call's transaction and its sessions, to end alone or with others.
    pub(super) fn into_settlement(self) -> Settlement {
        Settlement { sql: self.sql, calls: vec![self.settling] }
    }
}

/// One SQL transaction and the sessions of the calls that ran in it: one
/// call's, or a batch's (see `handler::HandlerBatch`). They end together.
pub(super) struct Settlement {
    pub(super) sql: SqlSession,
    pub(super) calls: Vec<Settling>,
}

impl Settlement {
    /// Ends it successfully: `before_commit` (the caller's own
    /// statements), then every session of every call in order, on the
    /// transaction, then COMMIT. Any failure rolls everything back.
    pub(super) async fn commit<R>(self, answer: &R, before_commit: impl BeforeCommit<R>) -> Result<(), CommitError> {
        let Self { mut sql, mut calls } = self;
        if let Err(error) = settle(&mut sql, &mut calls, answer, before_commit).await {
            release(&mut calls).await;
            rollback_sql(sql).await;
            return Err(error);
        }
        // Only a database gone in this instant fails here; the `kv` writes
        // already applied then stay.
        let committed = sql.finish(true).await.inspect_err(|error| {
            tracing::error!(%error, "the sessions settled but the SQL transaction did not commit");
        });
        // After COMMIT: a lock held to here orders this call's outbox
        // records before those of the next call it lets in.
        release(&mut calls).await;
        Ok(committed?)
    }

    /// Ends a failed (or read) call or batch: nothing it did takes effect.
    pub(super) async fn rollback(self) {
        let Self { sql, mut calls } = self;
        release(&mut calls).await;
        rollback_sql(sql).await;
    }
}

async fn settle<R>(
    sql: &mut SqlSession,
    calls: &mut [Settling],
    answer: &R,
    before_commit: impl BeforeCommit<R>,
) -> Result<(), CommitError> {
    let mut host = sql.host_connection().await?;
    before_commit.run(answer, &mut host).await?;
    for call in calls {
        for session in call.in_order() {
            session.commit(&mut host).await?;
        }
    }
    Ok(())
}

async fn release(calls: &mut [Settling]) {
    for call in calls {
        for session in call.in_order() {
            session.release().await;
        }
    }
}

async fn rollback_sql(sql: SqlSession) {
    if let Err(error) = sql.finish(false).await {
        // The connection is discarded by the pool; nothing was committed.
        tracing::warn!(%error, "rollback failed");
    }
}

/// Caps an instance's linear memory and remembers whether the cap was hit,
/// so that the trap that follows (a Rust guest aborts on OOM) is reported
/// as what it is.
pub(super) struct MemoryLimit {
    limit: usize,
    pub(super) denied: bool,
    /// The largest linear memory granted, for the memory-peak metric.
    pub(super) peak: usize,
}

impl MemoryLimit {
    pub(super) fn new(limit: usize) -> Self {
        Self { limit, denied: false, peak: 0 }
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.denied = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::Engine;
    use wasmtime::component::Component;

    #[test]
    fn a_wasi_interface_wasmtime_wasi_does_not_implement_fails_the_link_by_name() {
        let engine = Engine::default();
        let mut linker = Linker::new(&engine);
        link(&mut linker, &Grants::default()).unwrap();
        let wat = r#"(component
            (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func))))
        )"#;
        let component = Component::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let error = linker.instantiate_pre(&component).err().expect("not provided");
        assert!(format!("{error:#}").contains("wasi:http/outgoing-handler"), "{error:#}");

        let provided = r#"(component (import "wasi:cli/environment@0.2.3" (instance)) (import "todo:plugin/sql@0.1.0" (instance)))"#;
        let component = Component::new(&engine, wat::parse_str(provided).unwrap()).unwrap();
        assert!(linker.instantiate_pre(&component).is_ok(), "ungranted `sql` and WASI are linked");
    }
}
