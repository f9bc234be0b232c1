//! The `storage` world: a loaded storage plugin and calls into its
//! `task-store` export.

use std::sync::Arc;

use sqlx::PgPool;
use wasmtime::Store;

use super::PluginIdentity;
use super::bindings::StoragePre;
use super::bindings::exports::todo::plugin::task_store::Guest as TaskStore;
use super::call::{self, LoadedPlugin, PluginFailure, PluginRuntime};
use super::capabilities::CallKind;
use super::loader::{self, PluginSource};
use super::manifest::PluginKind;
use super::slot::Plugin;
use super::state::{BeforeCommit, CallState};
use crate::trace::RequestTrace;

pub struct StoragePlugin {
    plugin: LoadedPlugin,
    pre: StoragePre<CallState>,
}

impl Plugin for StoragePlugin {
    const KIND: PluginKind = PluginKind::Storage;

    /// Loads the plugin and checks that it exports `task-store`.
    fn load(runtime: Arc<PluginRuntime>, source: PluginSource) -> anyhow::Result<Self> {
        let name = source.name.clone();
        let (plugin, pre) = loader::load(runtime, source, PluginKind::Storage)?;
        let pre =
            StoragePre::new(pre).map_err(|e| anyhow::anyhow!("plugin `{name}` is not a storage plugin: {e:#}"))?;
        Ok(Self { plugin, pre })
    }

    fn loaded(&self) -> &LoadedPlugin {
        &self.plugin
    }
}

impl StoragePlugin {
    pub fn identity(&self) -> &PluginIdentity {
        &self.plugin.identity
    }

    /// The pool its `sql` statements run on (logged in as its role), when
    /// it is granted `sql`.
    pub fn database_pool(&self) -> Option<&PgPool> {
        self.plugin.database.as_ref().map(|database| &database.pool)
    }

    /// Whether its calls are refused now, after repeated traps.
    pub fn circuit_open(&self) -> bool {
        self.plugin.circuit_open()
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
