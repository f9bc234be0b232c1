//! The `event-handler` world: a loaded handler plugin and calls into its
//! `handler` export — and, for a handler of the `history-handler` world,
//! into its `history` export.
//!
//! Events are handled in batches: one call per event, each in a fresh
//! instance (no state crosses from one event's call to the next, as for
//! every call), all in one transaction that commits once, after the last.
//! A batch in which a call failed commits nothing.

use std::sync::Arc;

use chrono::Utc;
use wasmtime::Store;

use super::PluginIdentity;
use super::bindings::event_handler::EventHandlerPre;
use super::bindings::event_handler::exports::todo::plugin::handler::{Event, HandlerError};
use super::bindings::history_handler::HistoryHandlerPre;
use super::bindings::history_handler::exports::todo::plugin::history::{HistoryEntry, HistoryError};
use super::call::{self, CallEnd, LoadedPlugin, PluginFailure, PluginRuntime};
use super::capabilities::CallKind;
use super::loader::{self, PluginSource};
use super::manifest::PluginKind;
use super::slot::Plugin;
use super::state::{BeforeCommit, CallState, CommitError, NothingMore, Settlement};
use super::wit_types::CallContext;
use crate::db::replica::Freshness;
use crate::outbox::OutboxWaker;
use crate::trace::RequestTrace;

pub struct HandlerPlugin {
    plugin: LoadedPlugin,
    pre: EventHandlerPre<CallState>,
    /// When the component exports `history` too.
    history: Option<HistoryHandlerPre<CallState>>,
}

impl Plugin for HandlerPlugin {
    const KIND: PluginKind = PluginKind::EventHandler;

    /// Loads the plugin and checks that it exports `handler`.
    fn load(runtime: Arc<PluginRuntime>, source: PluginSource) -> anyhow::Result<Self> {
        let name = source.name.clone();
        let (plugin, pre) = loader::load(runtime, source, PluginKind::EventHandler)?;
        let history = HistoryHandlerPre::new(pre.clone()).ok();
        let pre =
            EventHandlerPre::new(pre).map_err(|e| anyhow::anyhow!("plugin `{name}` is not an event handler: {e:#}"))?;
        Ok(Self { plugin, pre, history })
    }

    fn loaded(&self) -> &LoadedPlugin {
        &self.plugin
    }
}

impl HandlerPlugin {
    /// The topics the manifest lets it `publish` to.
    pub fn granted_topics(&self) -> &[String] {
        &self.plugin.granted_topics
    }

    pub fn identity(&self) -> &PluginIdentity {
        &self.plugin.identity
    }

    /// Whether several events may share a transaction: not for a handler
    /// granted `kv`, whose write lock is taken per call and held until
    /// COMMIT (a second call of the batch would wait for it forever).
    pub fn batches_events(&self) -> bool {
        !self.plugin.kv_granted
    }

    /// A transaction for the calls of one batch.
    pub fn begin_batch(&self) -> HandlerBatch {
        HandlerBatch {
            settlement: Settlement { sql: self.plugin.sql_session(CallKind::Write), calls: Vec::new() },
            abandoned: false,
            outbox: self.plugin.runtime.outbox.clone(),
        }
    }

    /// Hands `event` to the plugin in a fresh instance, in `batch`'s
    /// transaction.
    pub async fn handle(
        &self,
        batch: &mut HandlerBatch,
        trace: &RequestTrace,
        event: &Event,
        attempt: u32,
    ) -> Result<Result<(), HandlerError>, PluginFailure> {
        let context = CallContext { request_id: trace.request_id.clone(), now: Utc::now().timestamp_micros() };
        call::run_ending(
            &self.plugin,
            trace,
            CallKind::Write,
            async |store: &mut Store<CallState>| {
                let instance = self.pre.instantiate_async(&mut *store).await?;
                instance.todo_plugin_handler().call_handle(store, &context, event, attempt).await
            },
            batch,
        )
        .await
    }

    /// The recorded changes of task `task_id`, in a read call; `None` when
    /// the component does not export `history`.
    pub async fn history(
        &self,
        trace: &RequestTrace,
        task_id: &str,
    ) -> Option<Result<Result<Vec<HistoryEntry>, HistoryError>, PluginFailure>> {
        let pre = self.history.as_ref()?;
        let context = CallContext { request_id: trace.request_id.clone(), now: Utc::now().timestamp_micros() };
        let answer = call::run(
            &self.plugin,
            trace,
            CallKind::Read(Freshness::Latest),
            async |store: &mut Store<CallState>| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance.todo_plugin_history().call_task_history(store, &context, task_id).await
            },
            NothingMore,
        )
        .await;
        Some(answer)
    }
}

/// The transaction of one batch of events and the sessions of its calls.
pub struct HandlerBatch {
    settlement: Settlement,
    /// A call failed: its statements may be half done, so nothing commits.
    abandoned: bool,
    outbox: OutboxWaker,
}

impl HandlerBatch {
    /// Commits every call's work, after `before_commit` (the ledger rows).
    pub async fn commit(self, before_commit: impl BeforeCommit<()>) -> Result<(), CommitError> {
        if self.abandoned {
            self.settlement.rollback().await;
            return Err(CommitError::Abandoned);
        }
        self.settlement.commit(&(), before_commit).await?;
        self.outbox.wake();
        Ok(())
    }

    pub async fn rollback(self) {
        self.settlement.rollback().await;
    }
}

/// Each call continues the batch's SQL session and leaves its other
/// sessions to settle with the batch.
impl CallEnd<()> for &mut HandlerBatch {
    fn begin(&mut self, state: &mut CallState) {
        std::mem::swap(&mut state.sql, &mut self.settlement.sql);
    }

    async fn succeeded(self, state: CallState, _: &()) -> Result<(), CommitError> {
        let CallState { sql, settling, .. } = state;
        self.settlement.sql = sql;
        self.settlement.calls.push(settling);
        Ok(())
    }

    async fn failed(self, state: CallState) {
        let CallState { sql, settling, .. } = state;
        self.settlement.sql = sql;
        self.settlement.calls.push(settling);
        self.abandoned = true;
    }
}
