//! The plugins in service. The active storage plugin sits behind an
//! `ArcSwap`: a call takes the `Arc` current when it starts and finishes on
//! it, whatever replaces it meanwhile. Event handlers are loaded once, each
//! run by its own consumer (see `events::handlers`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;

use super::call::PluginRuntime;
use super::handler::HandlerPlugin;
use super::manifest::{Manifest, PluginKind};
use super::storage::StoragePlugin;

pub struct PluginRegistry {
    storage: ArcSwap<StoragePlugin>,
    handlers: Vec<Arc<HandlerPlugin>>,
}

impl PluginRegistry {
    /// Loads the storage plugin `storage_name` and the event handlers
    /// `handler_names` (`None`: every event-handler plugin of `dir`).
    pub async fn load(
        runtime: Arc<PluginRuntime>,
        dir: PathBuf,
        storage_name: String,
        handler_names: Option<Vec<String>>,
    ) -> anyhow::Result<Self> {
        // Compiling is CPU-bound: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let storage = StoragePlugin::load(runtime.clone(), &dir, &storage_name)
                .with_context(|| format!("cannot load the storage plugin `{storage_name}`"))?;
            log_loaded("storage", storage.identity());
            let handler_names = match handler_names {
                Some(names) => names,
                None => plugins_of_kind(&dir, PluginKind::EventHandler)?,
            };
            let handlers = handler_names
                .iter()
                .map(|name| {
                    let handler = HandlerPlugin::load(runtime.clone(), &dir, name)
                        .with_context(|| format!("cannot load the event handler `{name}`"))?;
                    log_loaded("event-handler", handler.identity());
                    Ok(Arc::new(handler))
                })
                .collect::<anyhow::Result<_>>()?;
            Ok(Self { storage: ArcSwap::from_pointee(storage), handlers })
        })
        .await
        .context("the plugin loader panicked")?
    }

    pub fn storage(&self) -> Arc<StoragePlugin> {
        self.storage.load_full()
    }

    pub fn handlers(&self) -> &[Arc<HandlerPlugin>] {
        &self.handlers
    }
}

fn log_loaded(kind: &str, identity: &super::PluginIdentity) {
    tracing::info!(kind, plugin = %identity.name, version = %identity.version, sha256 = %identity.sha256, "plugin loaded");
}

/// Names of the plugins of `kind` in `dir` (by their manifests), sorted.
fn plugins_of_kind(dir: &Path, kind: PluginKind) -> anyhow::Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let (Some(name), Some("toml")) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str()))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        match Manifest::parse(&text) {
            Ok(manifest) if manifest.kind == kind => names.push(name.to_string()),
            Ok(_) => {}
            Err(error) => tracing::warn!(manifest = %path.display(), %error, "skipping an invalid plugin manifest"),
        }
    }
    names.sort();
    Ok(names)
}
