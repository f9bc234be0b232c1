//! The plugins in service and their reloads. Each sits in a `PluginSlot`
//! (swapped atomically, earlier versions kept for rollback); a reload
//! reads the plugin directory again, skips what did not change, and swaps
//! in only what loaded completely — a plugin that fails to load leaves its
//! serving version in place. Reloads run one at a time. When the event
//! handlers are "every event-handler plugin of the directory", a full
//! reload also starts the handlers added to it and stops those removed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use anyhow::Context;
use futures::future::BoxFuture;
use serde::Serialize;

use super::PluginIdentity;
use super::call::PluginRuntime;
use super::handler::HandlerPlugin;
use super::loader::PluginSource;
use super::manifest::{Manifest, PluginKind};
use super::slot::{Plugin, PluginSlot, PluginStatus};
use super::storage::StoragePlugin;

pub struct PluginRegistry {
    runtime: Arc<PluginRuntime>,
    dir: PathBuf,
    storage: PluginSlot<StoragePlugin>,
    handlers: RwLock<Vec<Arc<PluginSlot<HandlerPlugin>>>>,
    /// The handlers are every event-handler plugin of `dir` (no
    /// `EVENT_HANDLERS` list): a full reload adds and removes them.
    discovers_handlers: bool,
    /// Set once the broker is connected; without it no handler runs.
    runners: OnceLock<Arc<dyn HandlerRunners>>,
    reloading: tokio::sync::Mutex<()>,
}

/// Starts and stops the consumers of the event handlers a reload adds or
/// removes.
pub trait HandlerRunners: Send + Sync {
    fn start(&self, handler: Arc<PluginSlot<HandlerPlugin>>) -> BoxFuture<'_, anyhow::Result<()>>;
    fn stop(&self, name: &str);
}

/// What `POST /admin/plugins/reload` did.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Swapped in: calls from now on run on these versions.
    pub loaded: Vec<PluginIdentity>,
    /// Same manifest and `.wasm` as the serving version: not reloaded.
    pub unchanged: Vec<String>,
    /// Event handlers whose manifest left the plugin directory: stopped.
    pub removed: Vec<String>,
    /// Not loaded; the version serving before keeps serving.
    pub failed: Vec<LoadFailure>,
    /// Uploaded and installed in the plugin directory, but not in service
    /// here: it serves once STORAGE_PLUGIN or EVENT_HANDLERS names it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_in_service: Vec<String>,
}

impl ReloadReport {
    /// Adds what `other` did.
    pub fn merge(&mut self, other: ReloadReport) {
        self.loaded.extend(other.loaded);
        self.unchanged.extend(other.unchanged);
        self.removed.extend(other.removed);
        self.failed.extend(other.failed);
        self.not_in_service.extend(other.not_in_service);
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoadFailure {
    pub name: String,
    /// Which step failed and why.
    pub reason: String,
}

/// A name no plugin in service has.
#[derive(Debug, thiserror::Error)]
#[error("no plugin named `{0}` is in service")]
pub struct UnknownPlugin(pub String);

impl PluginRegistry {
    /// Loads the storage plugin `storage_name` and the event handlers
    /// `handler_names` (`None`: every event-handler plugin of `dir`).
    pub async fn load(
        runtime: Arc<PluginRuntime>,
        dir: PathBuf,
        storage_name: String,
        handler_names: Option<Vec<String>>,
    ) -> anyhow::Result<Self> {
        let discovers_handlers = handler_names.is_none();
        let (storage, handlers) = {
            let (runtime, dir) = (runtime.clone(), dir.clone());
            // Compiling is CPU-bound: keep it off the async workers.
            tokio::task::spawn_blocking(move || {
                let storage = load_new::<StoragePlugin>(&runtime, &dir, &storage_name)
                    .with_context(|| format!("cannot load the storage plugin `{storage_name}`"))?;
                let handler_names = match handler_names {
                    Some(names) => names,
                    None => plugins_of_kind(&dir, PluginKind::EventHandler)?,
                };
                let handlers = handler_names
                    .iter()
                    .map(|name| {
                        let handler = load_new::<HandlerPlugin>(&runtime, &dir, name)
                            .with_context(|| format!("cannot load the event handler `{name}`"))?;
                        Ok(Arc::new(PluginSlot::new(handler)))
                    })
                    .collect::<anyhow::Result<_>>()?;
                anyhow::Ok((PluginSlot::new(storage), handlers))
            })
            .await
            .context("the plugin loader panicked")??
        };
        Ok(Self {
            runtime,
            dir,
            storage,
            handlers: RwLock::new(handlers),
            discovers_handlers,
            runners: OnceLock::new(),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    pub fn storage(&self) -> Arc<StoragePlugin> {
        self.storage.current()
    }

    /// The event handler named `name`, as it serves now.
    pub fn handler(&self, name: &str) -> Option<Arc<HandlerPlugin>> {
        self.handlers().into_iter().find(|slot| slot.identity().name == name).map(|slot| slot.current())
    }

    pub fn handlers(&self) -> Vec<Arc<PluginSlot<HandlerPlugin>>> {
        self.handlers.read().expect("poisoned").clone()
    }

    /// Runs the handlers in service with `runners`, and lets reloads start
    /// and stop handlers with it.
    pub async fn run_handlers(&self, runners: Arc<dyn HandlerRunners>) -> anyhow::Result<()> {
        for handler in self.handlers() {
            runners.start(handler).await?;
        }
        if self.runners.set(runners).is_err() {
            anyhow::bail!("the event handlers are already running");
        }
        Ok(())
    }

    /// Every plugin in service, the storage plugin first.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        std::iter::once(self.storage.status()).chain(self.handlers().iter().map(|slot| slot.status())).collect()
    }

    /// Reloads every plugin in service, or only `only`.
    pub async fn reload(self: &Arc<Self>, only: Option<&str>) -> Result<ReloadReport, UnknownPlugin> {
        if let Some(name) = only {
            self.check_known(name)?;
        }
        let _one_at_a_time = self.reloading.lock().await;
        let registry = self.clone();
        let only = only.map(str::to_string);
        let report = tokio::task::spawn_blocking(move || {
            let wanted = |name: &str| only.as_deref().is_none_or(|only| only == name);
            let mut report = ReloadReport::default();
            let added = match only {
                None => registry.add_and_remove_handlers(&mut report),
                Some(_) => Vec::new(),
            };
            if wanted(&registry.storage.identity().name) {
                registry.reload_slot(&registry.storage, &mut report);
            }
            for slot in registry.handlers().iter().filter(|slot| wanted(&slot.identity().name)) {
                if !added.contains(&slot.identity().name) {
                    registry.reload_slot(slot, &mut report);
                }
            }
            report
        })
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
        Ok(report)
    }

    /// Serves the previous version of `name` again; `Ok(None)` when there
    /// is none.
    pub fn rollback(&self, name: &str) -> Result<Option<PluginIdentity>, UnknownPlugin> {
        self.restore(name, |slot| slot.rollback(), |slot| slot.rollback())
    }

    /// Serves the kept version of `name` with `digest` again (what another
    /// replica rolled back to); `Ok(None)` when none is kept.
    pub fn rollback_to(&self, name: &str, digest: &str) -> Result<Option<PluginIdentity>, UnknownPlugin> {
        self.restore(name, |slot| slot.rollback_to(digest), |slot| slot.rollback_to(digest))
    }

    fn restore(
        &self,
        name: &str,
        storage: impl FnOnce(&PluginSlot<StoragePlugin>) -> Option<PluginIdentity>,
        handler: impl FnOnce(&PluginSlot<HandlerPlugin>) -> Option<PluginIdentity>,
    ) -> Result<Option<PluginIdentity>, UnknownPlugin> {
        self.check_known(name)?;
        let restored = if self.storage.identity().name == name {
            storage(&self.storage)
        } else {
            self.handlers().iter().find(|slot| slot.identity().name == name).and_then(|slot| handler(slot))
        };
        if let Some(identity) = &restored {
            tracing::info!(plugin = %identity.name, version = %identity.version, sha256 = %identity.sha256, "plugin rolled back");
        }
        Ok(restored)
    }

    /// What plugin `name` serves here, if it is in service.
    pub fn status(&self, name: &str) -> Option<PluginStatus> {
        self.statuses().into_iter().find(|status| status.identity.name == name)
    }

    /// Whether plugin `name` is in service.
    pub fn serves(&self, name: &str) -> bool {
        self.storage.identity().name == name || self.handlers().iter().any(|slot| slot.identity().name == name)
    }

    fn check_known(&self, name: &str) -> Result<(), UnknownPlugin> {
        if self.serves(name) { Ok(()) } else { Err(UnknownPlugin(name.to_string())) }
    }

    /// Loads `source` as a plugin of its manifest's kind — compiled,
    /// linked, its database migrated — without putting it in service: what
    /// an upload must pass before it is stored. Runs with the reloads, one
    /// at a time.
    pub async fn check(&self, source: PluginSource) -> anyhow::Result<PluginIdentity> {
        if let Some(serving) = self.status(&source.name)
            && serving.kind != source.kind().as_str()
        {
            anyhow::bail!(
                "`{}` serves as a {} plugin; this is a {} plugin",
                source.name,
                serving.kind,
                source.kind().as_str()
            );
        }
        let _one_at_a_time = self.reloading.lock().await;
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || match source.kind() {
            PluginKind::Storage => StoragePlugin::load(runtime, source).map(|plugin| plugin.loaded().identity.clone()),
            PluginKind::EventHandler => {
                HandlerPlugin::load(runtime, source).map(|plugin| plugin.loaded().identity.clone())
            }
        })
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }

    /// Starts the event-handler plugins new in the directory and stops those
    /// whose manifest left it (only when the handlers are discovered and
    /// running); answers the names started.
    fn add_and_remove_handlers(&self, report: &mut ReloadReport) -> Vec<String> {
        let (true, Some(runners)) = (self.discovers_handlers, self.runners.get()) else { return Vec::new() };
        let on_disk = match plugins_of_kind(&self.dir, PluginKind::EventHandler) {
            Ok(names) => names,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot list the event handlers of the plugin directory");
                return Vec::new();
            }
        };
        let in_service: Vec<String> = self.handlers().iter().map(|slot| slot.identity().name).collect();
        let mut added = Vec::new();
        for name in on_disk.iter().filter(|name| !in_service.contains(name)) {
            let started = load_new::<HandlerPlugin>(&self.runtime, &self.dir, name).and_then(|handler| {
                let slot = Arc::new(PluginSlot::new(handler));
                // Reloads run on the blocking pool, inside the runtime.
                tokio::runtime::Handle::current().block_on(runners.start(slot.clone()))?;
                Ok(slot)
            });
            match started {
                Ok(slot) => {
                    report.loaded.push(slot.identity());
                    self.handlers.write().expect("poisoned").push(slot);
                    added.push(name.clone());
                }
                Err(error) => {
                    let reason = format!("{error:#}");
                    tracing::error!(plugin = %name, %reason, "new event handler not started");
                    report.failed.push(LoadFailure { name: name.clone(), reason });
                }
            }
        }
        for name in in_service.into_iter().filter(|name| !on_disk.contains(name)) {
            runners.stop(&name);
            self.handlers.write().expect("poisoned").retain(|slot| slot.identity().name != name);
            tracing::info!(plugin = %name, "event handler removed");
            report.removed.push(name);
        }
        added
    }

    fn reload_slot<P: Plugin>(&self, slot: &PluginSlot<P>, report: &mut ReloadReport) {
        let name = slot.identity().name;
        let loaded = PluginSource::read(&self.dir, &name).and_then(|source| {
            if slot.serves(&source) {
                slot.current().loaded().breaker.close();
                return Ok(None);
            }
            P::load(self.runtime.clone(), source).map(Some)
        });
        match loaded {
            Ok(None) => report.unchanged.push(name),
            Ok(Some(plugin)) => {
                let identity = plugin.loaded().identity.clone();
                slot.swap(plugin);
                log_loaded(P::KIND, &identity);
                report.loaded.push(identity);
            }
            Err(error) => {
                let reason = format!("{error:#}");
                tracing::error!(plugin = %name, %reason, "plugin reload failed; the serving version stays");
                slot.failed(reason.clone());
                report.failed.push(LoadFailure { name, reason });
            }
        }
    }
}

/// Reads and loads plugin `name` of `P`'s world from `dir`.
fn load_new<P: Plugin>(runtime: &Arc<PluginRuntime>, dir: &Path, name: &str) -> anyhow::Result<P> {
    let plugin = P::load(runtime.clone(), PluginSource::read(dir, name)?)?;
    log_loaded(P::KIND, &plugin.loaded().identity);
    Ok(plugin)
}

fn log_loaded(kind: PluginKind, identity: &PluginIdentity) {
    tracing::info!(?kind, plugin = %identity.name, version = %identity.version, sha256 = %identity.sha256, "plugin loaded");
}

/// Names of the enabled plugins of `kind` in `dir` (by their manifests),
/// sorted.
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
            Ok(manifest) if manifest.kind == kind && manifest.enabled => names.push(name.to_string()),
            Ok(_) => {}
            Err(error) => tracing::warn!(manifest = %path.display(), %error, "skipping an invalid plugin manifest"),
        }
    }
    names.sort();
    Ok(names)
}
