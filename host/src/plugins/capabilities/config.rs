//! `config`: read-only access to the `[settings]` of the plugin's manifest.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::plugins::bindings::todo::plugin::config::{self, ConfigError};

/// Per-call state: the plugin's settings, shared by all its calls.
#[derive(Clone, Default)]
pub struct PluginSettings(pub Arc<BTreeMap<String, String>>);

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut PluginSettings,
) -> anyhow::Result<()> {
    config::add_to_linker::<T, HasSelf<PluginSettings>>(linker, get).map_err(|e| anyhow::anyhow!("{e}"))
}

impl config::Host for PluginSettings {
    async fn get(&mut self, key: String) -> Result<Option<String>, ConfigError> {
        Ok(self.0.get(&key).cloned())
    }

    async fn get_all(&mut self) -> Result<Vec<(String, String)>, ConfigError> {
        Ok(self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}
