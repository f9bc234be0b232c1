//! One plugin in service: the version that serves, behind an `ArcSwap`, and
//! the few versions before it, for rollback.
//!
//! A call takes the `Arc` current when it starts and finishes on it, so a
//! swap never interrupts a call: the old version is dropped — its
//! `InstancePre` and compiled code freed — when its last call returns.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::PluginIdentity;
use super::call::{LoadedPlugin, PluginRuntime};
use super::loader::PluginSource;
use super::manifest::PluginKind;
use super::stats::StatsSnapshot;

/// How many replaced versions a slot keeps for rollback.
pub const KEPT_VERSIONS: usize = 3;

/// A plugin of one world.
pub trait Plugin: Send + Sync + Sized + 'static {
    const KIND: PluginKind;

    fn load(runtime: Arc<PluginRuntime>, source: PluginSource) -> anyhow::Result<Self>;

    fn loaded(&self) -> &LoadedPlugin;
}

pub struct PluginSlot<P> {
    current: ArcSwap<P>,
    /// Most recent first.
    previous: Mutex<VecDeque<Arc<P>>>,
    /// Why the last reload of this plugin failed, until one succeeds.
    last_failure: Mutex<Option<String>>,
}

/// What `GET /admin/plugins` shows of one plugin.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PluginStatus {
    #[serde(flatten)]
    pub identity: PluginIdentity,
    /// Hex SHA-256 of its manifest, module and migrations together.
    pub digest: String,
    /// `storage` or `event-handler`.
    pub kind: &'static str,
    /// `serving`; `reload-failed` when the last reload of this plugin
    /// failed and this version kept serving (see `last_failure`);
    /// `circuit-open` while calls are refused after repeated traps.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// The database role its statements run as and the schema it owns
    /// (plugins granted `sql`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseIdentity>,
    /// Calls of the serving version since it was loaded.
    #[serde(flatten)]
    pub stats: StatsSnapshot,
    /// Versions a rollback can return to, most recent first.
    pub previous: Vec<PluginIdentity>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DatabaseIdentity {
    pub role: String,
    pub schema: String,
}

impl<P: Plugin> PluginSlot<P> {
    pub fn new(plugin: P) -> Self {
        Self {
            current: ArcSwap::from_pointee(plugin),
            previous: Mutex::new(VecDeque::new()),
            last_failure: Mutex::new(None),
        }
    }

    pub fn current(&self) -> Arc<P> {
        self.current.load_full()
    }

    pub fn identity(&self) -> PluginIdentity {
        self.current.load().loaded().identity.clone()
    }

    /// Whether `source` is what is serving already.
    pub fn serves(&self, source: &PluginSource) -> bool {
        self.current.load().loaded().digest == source.digest
    }

    /// Serves `plugin` from now on; the replaced version is kept.
    pub fn swap(&self, plugin: P) {
        let replaced = self.current.swap(Arc::new(plugin));
        let mut previous = self.previous.lock().expect("poisoned");
        previous.push_front(replaced);
        previous.truncate(KEPT_VERSIONS);
        self.last_failure.lock().expect("poisoned").take();
    }

    pub fn failed(&self, reason: String) {
        *self.last_failure.lock().expect("poisoned") = Some(reason);
    }

    /// Serves the most recent replaced version again; `None` when there is
    /// none. The version rolled back from is dropped, not kept.
    pub fn rollback(&self) -> Option<PluginIdentity> {
        self.restore(|_| true)
    }

    /// Serves the most recent replaced version of `digest` again, dropping
    /// the versions after it; `None` when none is kept.
    pub fn rollback_to(&self, digest: &str) -> Option<PluginIdentity> {
        self.restore(|plugin| plugin.loaded().digest == digest)
    }

    fn restore(&self, wanted: impl Fn(&P) -> bool) -> Option<PluginIdentity> {
        let mut previous = self.previous.lock().expect("poisoned");
        let index = previous.iter().position(|plugin| wanted(plugin))?;
        let restored = previous.drain(..=index).next_back().expect("the range holds the wanted version");
        let identity = restored.loaded().identity.clone();
        self.current.store(restored);
        self.last_failure.lock().expect("poisoned").take();
        Some(identity)
    }

    pub fn status(&self) -> PluginStatus {
        let current = self.current.load();
        let loaded = current.loaded();
        let last_failure = self.last_failure.lock().expect("poisoned").clone();
        PluginStatus {
            identity: loaded.identity.clone(),
            digest: loaded.digest.clone(),
            kind: P::KIND.as_str(),
            state: if loaded.circuit_open() {
                "circuit-open"
            } else if last_failure.is_some() {
                "reload-failed"
            } else {
                "serving"
            },
            last_failure,
            database: loaded
                .database
                .as_ref()
                .map(|database| DatabaseIdentity { role: database.role.clone(), schema: database.schema.clone() }),
            stats: loaded.stats.snapshot(),
            previous: self
                .previous
                .lock()
                .expect("poisoned")
                .iter()
                .map(|plugin| plugin.loaded().identity.clone())
                .collect(),
        }
    }
}
