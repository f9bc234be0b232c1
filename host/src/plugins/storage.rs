//! The `storage` world: a loaded storage plugin and calls into its
//! `task-store` export.

use std::path::Path;
use std::sync::Arc;

use wasmtime::Store;

use super::PluginIdentity;
use super::bindings::StoragePre;
use super::bindings::exports::todo::plugin::task_store::Guest as TaskStore;
use super::call::{self, BeforeCommit, CallKind, CallState, LoadedPlugin, PluginFailure, PluginRuntime};
use super::loader;
use super::manifest::PluginKind;
use crate::trace::RequestTrace;

pub struct StoragePlugin {
    plugin: LoadedPlugin,
    pre: StoragePre<CallState>,
}

impl StoragePlugin {
    /// Loads `dir/NAME.wasm` and checks that it exports `task-store`.
    pub fn load(runtime: Arc<PluginRuntime>, dir: &Path, name: &str) -> anyhow::Result<Self> {
        let (plugin, pre) = loader::load(runtime, dir, name, PluginKind::Storage)?;
        let pre =
            StoragePre::new(pre).map_err(|e| anyhow::anyhow!("plugin `{name}` is not a storage plugin: {e:#}"))?;
        Ok(Self { plugin, pre })
    }

    pub fn identity(&self) -> &PluginIdentity {
        &self.plugin.identity
    }

    /// Calls one `task-store` function in a fresh instance. A `Write`
    /// call's statements share one transaction, committed (after
    /// `before_commit`) only when `body` answers `Ok(Ok(_))`.
    pub async fn call<R, E>(
        &self,
        trace: &RequestTrace,
        kind: CallKind,
        body: impl AsyncFnOnce(&TaskStore, &mut Store<CallState>) -> wasmtime::Result<Result<R, E>>,
        before_commit: impl BeforeCommit<R>,
    ) -> Result<Result<R, E>, PluginFailure> {
        call::run(
            &self.plugin,
            trace,
            kind,
            async |store: &mut Store<CallState>| {
                let instance = self.pre.instantiate_async(&mut *store).await?;
                body(instance.todo_plugin_task_store(), store).await
            },
            before_commit,
        )
        .await
    }
}
