//! `NAME.toml`: what a plugin is, what it may touch, and its settings.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::kafka::topics;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub kind: PluginKind,
    pub version: String,
    /// An event handler that is off is not started when the handlers are
    /// discovered (`EVENT_HANDLERS` unset); naming it in `EVENT_HANDLERS`
    /// starts it anyway. Turning it off and reloading stops it, its
    /// consumer group keeping its place.
    #[serde(default = "Manifest::default_enabled")]
    pub enabled: bool,
    /// When given, the `.wasm` file must hash to it (hex SHA-256).
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub grants: Grants,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub database: Database,
    /// Free-form settings, readable through the `config` import.
    #[serde(default)]
    pub settings: toml::Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Storage,
    EventHandler,
}

impl PluginKind {
    /// As a manifest writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Storage => "storage",
            Self::EventHandler => "event-handler",
        }
    }
}

/// Host interfaces beyond `log` and `config` (which every plugin gets). An
/// interface not granted here is not linked, and a component importing it
/// fails to load.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Statements in a schema of the plugin's own, as a role of its own.
    #[serde(default)]
    pub sql: bool,
    /// Relations other plugins share, as `plugin.relation`, that the
    /// plugin's role may read (needs `sql`).
    #[serde(default)]
    pub read: Vec<String>,
    /// The `kv` store (Redis), confined to the plugin's own keys.
    #[serde(default)]
    pub kv: bool,
    /// Logical topics the plugin may `publish` to.
    #[serde(default)]
    pub publish: Vec<String>,
}

/// What a plugin granted `sql` offers other plugins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// Relations (tables or views) of its schema other plugins may ask to
    /// read (`[grants] read`).
    #[serde(default)]
    pub shares: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock budget of one call, host calls included.
    #[serde(default = "Limits::default_deadline_ms")]
    pub deadline_ms: u64,
    /// Largest linear memory of one instance.
    #[serde(default = "Limits::default_memory_mib")]
    pub memory_mib: u64,
    /// Consecutive trapping calls (panics, deadlines, the memory cap) after
    /// which the plugin's circuit opens: calls are refused with a fast 503.
    #[serde(default = "Limits::default_circuit_traps")]
    pub circuit_traps: u32,
    /// How long an open circuit refuses calls before one is tried again.
    #[serde(default = "Limits::default_circuit_cool_down_ms")]
    pub circuit_cool_down_ms: u64,
    /// Connections of the plugin's own pool (`sql`); unset: the host's
    /// `PLUGIN_DB_CONNECTIONS`.
    #[serde(default)]
    pub db_connections: Option<u32>,
}

impl Limits {
    fn default_deadline_ms() -> u64 {
        1000
    }

    fn default_memory_mib() -> u64 {
        64
    }

    fn default_circuit_traps() -> u32 {
        5
    }

    fn default_circuit_cool_down_ms() -> u64 {
        30_000
    }

    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline_ms: Self::default_deadline_ms(),
            memory_mib: Self::default_memory_mib(),
            circuit_traps: Self::default_circuit_traps(),
            circuit_cool_down_ms: Self::default_circuit_cool_down_ms(),
            db_connections: None,
        }
    }
}

/// Topics only the host writes: a plugin publishing there could forge
/// task events or inject commands that run with any issuer's rights.
const RESERVED_TOPICS: [&str; 4] =
    [topics::TASK_EVENTS, topics::DEAD_LETTERS, topics::TASK_COMMANDS, topics::COMMAND_DEAD_LETTERS];

impl Manifest {
    fn default_enabled() -> bool {
        true
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let manifest: Self = toml::from_str(text)?;
        if let Some(topic) = manifest.grants.publish.iter().find(|topic| RESERVED_TOPICS.contains(&topic.as_str())) {
            anyhow::bail!("[grants] publish may not name `{topic}`: only the host publishes there");
        }
        if !manifest.enabled && manifest.kind == PluginKind::Storage {
            anyhow::bail!("`enabled` applies to event handlers: the storage plugin is the one STORAGE_PLUGIN names");
        }
        let asks_database = !manifest.grants.read.is_empty() || !manifest.database.shares.is_empty();
        if asks_database && !manifest.grants.sql {
            anyhow::bail!("[grants] read and [database] shares need `sql = true` under [grants]");
        }
        Ok(manifest)
    }

    /// Settings as the strings the `config` import hands out: strings as
    /// they are, other values in their TOML spelling.
    pub fn settings_as_strings(&self) -> BTreeMap<String, String> {
        self.settings
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    toml::Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (key.clone(), text)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_manifest_gets_default_limits_and_no_grants() {
        let manifest = Manifest::parse("kind = \"storage\"\nversion = \"1.0.0\"\n").unwrap();
        assert_eq!(manifest.kind, PluginKind::Storage);
        assert!(!manifest.grants.sql);
        assert_eq!(manifest.limits.deadline_ms, 1000);
        assert_eq!(manifest.limits.memory_bytes(), 64 * 1024 * 1024);
    }

    #[test]
    fn handlers_are_on_unless_their_manifest_turns_them_off() {
        let handler = "kind = \"event-handler\"\nversion = \"1\"\n";
        assert!(Manifest::parse(handler).unwrap().enabled);
        assert!(!Manifest::parse(&format!("{handler}enabled = false\n")).unwrap().enabled);
        let error = Manifest::parse("kind = \"storage\"\nversion = \"1\"\nenabled = false\n").unwrap_err();
        assert!(error.to_string().contains("STORAGE_PLUGIN"), "{error}");
    }

    #[test]
    fn publishing_to_the_hosts_own_topics_is_refused() {
        let manifest = "kind = \"event-handler\"\nversion = \"1\"\n[grants]\npublish = [\"notifications\"]\n";
        assert_eq!(Manifest::parse(manifest).unwrap().grants.publish, ["notifications"]);
        for topic in ["task-commands", "task-events"] {
            let manifest = format!("kind = \"event-handler\"\nversion = \"1\"\n[grants]\npublish = [\"{topic}\"]\n");
            let error = Manifest::parse(&manifest).unwrap_err();
            assert!(error.to_string().contains(topic), "{error}");
        }
    }

    #[test]
    fn unknown_grant_is_refused() {
        let error = Manifest::parse("kind = \"storage\"\nversion = \"1\"\n[grants]\nfilesystem = true\n").unwrap_err();
        assert!(error.to_string().contains("filesystem"), "{error}");
    }

    #[test]
    fn settings_become_strings() {
        let manifest =
            Manifest::parse("kind = \"storage\"\nversion = \"1\"\n[settings]\nmode = \"fast\"\nretries = 3\n").unwrap();
        let settings = manifest.settings_as_strings();
        assert_eq!(settings["mode"], "fast");
        assert_eq!(settings["retries"], "3");
    }
}
