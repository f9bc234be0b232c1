//! The `event-handler` world: a loaded handler plugin and calls into its
//! `event-handler` export.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use super::PluginIdentity;
use super::bindings::event_handler::EventHandlerPre;
use super::bindings::event_handler::exports::todo::plugin::handler::{Event, HandlerError};
use super::call::{self, BeforeCommit, CallKind, CallState, CallTarget, PluginFailure, PluginRuntime};
use super::capabilities::config::PluginSettings;
use super::loader;
use super::manifest::{Grants, Limits, PluginKind};
use super::wit_types::CallContext;
use crate::trace::RequestTrace;

pub struct HandlerPlugin {
    identity: PluginIdentity,
    grants: Grants,
    limits: Limits,
    settings: PluginSettings,
    pre: EventHandlerPre<CallState>,
    runtime: Arc<PluginRuntime>,
}

impl HandlerPlugin {
    /// Loads `dir/NAME.wasm` and checks that it exports `event-handler`.
    pub fn load(runtime: Arc<PluginRuntime>, dir: &Path, name: &str) -> anyhow::Result<Self> {
        let loaded = loader::load(&runtime, dir, name, PluginKind::EventHandler)?;
        let pre = EventHandlerPre::new(loaded.pre)
            .map_err(|e| anyhow::anyhow!("plugin `{name}` is not an event handler: {e:#}"))?;
        Ok(Self {
            identity: loaded.identity,
            grants: loaded.manifest.grants,
            limits: loaded.manifest.limits,
            settings: loaded.settings,
            pre,
            runtime,
        })
    }

    pub fn identity(&self) -> &PluginIdentity {
        &self.identity
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
        let target = CallTarget {
            identity: &self.identity,
            grants: &self.grants,
            limits: &self.limits,
            settings: &self.settings,
            runtime: &self.runtime,
        };
        let context = CallContext { request_id: trace.request_id.clone(), now: Utc::now().timestamp_micros() };
        call::run(
            target,
            trace,
            CallKind::Write,
            async |store: &mut wasmtime::Store<CallState>| {
                let instance = self.pre.instantiate_async(&mut *store).await?;
                instance.todo_plugin_handler().call_handle(store, &context, event, attempt).await
            },
            before_commit,
        )
        .await
    }
}
