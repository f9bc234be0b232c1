//! The `event-handler` world: a loaded handler plugin and calls into its
//! `handler` export — and, for a handler of the `history-handler` world,
//! into its `history` export.

use std::sync::Arc;

use chrono::Utc;
use wasmtime::Store;

use super::PluginIdentity;
use super::bindings::event_handler::EventHandlerPre;
use super::bindings::event_handler::exports::todo::plugin::handler::{Event, HandlerError};
use super::bindings::history_handler::HistoryHandlerPre;
use super::bindings::history_handler::exports::todo::plugin::history::{HistoryEntry, HistoryError};
use super::call::{self, LoadedPlugin, PluginFailure, PluginRuntime};
use super::capabilities::CallKind;
use super::loader::{self, PluginSource};
use super::manifest::PluginKind;
use super::slot::Plugin;
use super::state::{BeforeCommit, CallState, NothingMore};
use super::wit_types::CallContext;
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

    /// Hands `event` to the plugin in a fresh instance, in one transaction
    /// that commits (after `before_commit`) only when the handler answers
    /// `ok`.
    pub async fn handle(
        &self,
        trace: &RequestTrace,
        event: &Event,
        attempt: u32,
        before_commit: impl BeforeCommit<()>,
    ) -> Result<Result<(), HandlerError>, PluginFailure> {
        let context = CallContext { request_id: trace.request_id.clone(), now: Utc::now().timestamp_micros() };
        call::run(
            &self.plugin,
            trace,
            CallKind::Write,
            async |store: &mut Store<CallState>| {
                let instance = self.pre.instantiate_async(&mut *store).await?;
                instance.todo_plugin_handler().call_handle(store, &context, event, attempt).await
            },
            before_commit,
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
            CallKind::Read,
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
