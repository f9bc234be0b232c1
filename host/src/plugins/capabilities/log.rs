//! `log`: plugin log lines become `tracing` events tagged with the plugin's
//! name and version and the request id of the call.

use wasmtime::component::{HasSelf, Linker};

use crate::plugins::bindings::todo::plugin::log::{self, Level};

/// Per-call state: who is logging.
#[derive(Clone)]
pub struct PluginLog {
    pub plugin: String,
    pub version: String,
    pub request_id: String,
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut PluginLog,
) -> anyhow::Result<()> {
    log::add_to_linker::<T, HasSelf<PluginLog>>(linker, get).map_err(|e| anyhow::anyhow!("{e}"))
}

impl log::Host for PluginLog {
    async fn log(&mut self, level: Level, context: String, message: String) {
        let (plugin, version, request_id) = (&self.plugin, &self.version, &self.request_id);
        macro_rules! emit {
            ($macro:ident) => {
                tracing::$macro!(target: "plugin", plugin, plugin_version = version, request_id, context, "{message}")
            };
        }
        match level {
            Level::Trace => emit!(trace),
            Level::Debug => emit!(debug),
            Level::Info => emit!(info),
            Level::Warn => emit!(warn),
            Level::Error | Level::Critical => emit!(error),
        }
    }
}
