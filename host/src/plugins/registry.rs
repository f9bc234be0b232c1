//! The plugins in service. The active storage plugin sits behind an
//! `ArcSwap`: a call takes the `Arc` current when it starts and finishes on
//! it, whatever replaces it meanwhile.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;

use super::call::PluginRuntime;
use super::storage::StoragePlugin;

pub struct PluginRegistry {
    storage: ArcSwap<StoragePlugin>,
}

impl PluginRegistry {
    /// Loads the storage plugin `storage_name` from `dir`.
    pub async fn load(runtime: Arc<PluginRuntime>, dir: PathBuf, storage_name: String) -> anyhow::Result<Self> {
        // Compiling is CPU-bound: keep it off the async workers.
        let storage = tokio::task::spawn_blocking(move || StoragePlugin::load(runtime, &dir, &storage_name))
            .await
            .context("the plugin loader panicked")??;
        tracing::info!(
            plugin = %storage.identity().name,
            version = %storage.identity().version,
            sha256 = %storage.identity().sha256,
            "storage plugin loaded"
        );
        Ok(Self { storage: ArcSwap::from_pointee(storage) })
    }

    pub fn storage(&self) -> Arc<StoragePlugin> {
        self.storage.load_full()
    }
}
