//! Loading a plugin: `NAME.toml` + `NAME.wasm` (+ `NAME.migrations/`) → a
//! verified, compiled, import-checked and linked `InstancePre`, ready for
//! per-call instances, and — for a plugin granted `sql` — its database
//! role and schema, migrated.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use sha2::{Digest, Sha256};
use wasmtime::component::{InstancePre, Linker};

use super::PluginIdentity;
use super::breaker::CircuitBreaker;
use super::bundle::{BundleFiles, check_name};
use super::call::{LoadedPlugin, PluginRuntime};
use super::capabilities::{self, config::PluginSettings};
use super::database::Migration;
use super::manifest::{Manifest, PluginKind};
use super::state::{self, CallState};
use super::stats::PluginStats;

/// A plugin's files, parsed and verified against the manifest's `sha256`
/// when it gives one.
pub struct PluginSource {
    pub name: String,
    manifest: Manifest,
    wasm: Vec<u8>,
    migrations: Vec<Migration>,
    /// Hex SHA-256 of the `.wasm` file.
    pub sha256: String,
    /// Hex SHA-256 of the manifest, the `.wasm` and the migrations
    /// together: a reload skips a plugin whose digest did not change.
    pub digest: String,
}

impl PluginSource {
    /// Plugin `name` of the plugin directory `dir`.
    pub fn read(dir: &Path, name: &str) -> anyhow::Result<Self> {
        Self::new(BundleFiles::read(dir, name)?)
    }

    pub fn new(files: BundleFiles) -> anyhow::Result<Self> {
        let BundleFiles { name, manifest: manifest_text, module: wasm, migrations } = files;
        check_name(&name)?;
        let manifest =
            Manifest::parse(&manifest_text).with_context(|| format!("the manifest {name}.toml is invalid"))?;
        let sha256 = hex::encode(Sha256::digest(&wasm));
        if let Some(expected) = &manifest.sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            bail!("{name}.wasm has SHA-256 {sha256}, but its manifest requires {expected}");
        }
        let mut parsed = Vec::new();
        for (file_name, sql) in migrations {
            parsed.extend(Migration::from_file(&file_name, sql)?);
        }
        parsed.sort_by_key(|migration| migration.version);
        let mut digest = Sha256::new().chain_update(manifest_text.as_bytes()).chain_update(&wasm);
        for migration in &parsed {
            digest.update(migration.version.to_be_bytes());
            digest.update(migration.sql.as_bytes());
        }
        let digest = hex::encode(digest.finalize());
        Ok(Self { name, manifest, wasm, migrations: parsed, sha256, digest })
    }

    pub fn kind(&self) -> PluginKind {
        self.manifest.kind
    }

    pub fn version(&self) -> &str {
        &self.manifest.version
    }
}

/// Compiles `source` (or takes it from the artifact cache), checks its
/// imports against its grants and links them, ready to be instantiated
/// (the world's bindings then type-check the `InstancePre`). Every failure
/// says which step failed and why.
pub(super) fn load(
    runtime: Arc<PluginRuntime>,
    source: PluginSource,
    kind: PluginKind,
) -> anyhow::Result<(LoadedPlugin, InstancePre<CallState>)> {
    let PluginSource { name, manifest, wasm, migrations, sha256, digest } = source;
    if manifest.kind != kind {
        bail!("plugin `{name}` is a {:?} plugin, not a {kind:?} plugin", manifest.kind);
    }
    if manifest.grants.kv && runtime.redis.is_none() {
        bail!("plugin `{name}` is granted `kv`, but this server has no Redis (set REDIS_URL)");
    }
    if !manifest.grants.sql && !migrations.is_empty() {
        bail!("plugin `{name}` ships migrations but is not granted `sql`");
    }
    let engine = &runtime.engine;
    let component = engine.compile(&wasm, &sha256).with_context(|| format!("cannot compile {name}.wasm"))?;
    capabilities::check_imports(&component, engine.engine())?;
    let mut linker = Linker::new(engine.engine());
    state::link(&mut linker, &manifest.grants)?;
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        anyhow::anyhow!("the component imports something this host does not provide, or not in this shape: {e:#}")
    })?;
    // Before the version serves: its schema must be what its code expects.
    // Loads run on the blocking pool, inside the runtime.
    let database = match manifest.grants.sql {
        true => Some(tokio::runtime::Handle::current().block_on(runtime.databases.provision(
            &name,
            &manifest,
            &migrations,
        ))?),
        false => None,
    };

    let plugin = LoadedPlugin {
        identity: PluginIdentity { name, version: manifest.version.clone(), sha256, loaded_at: Utc::now() },
        digest,
        settings: PluginSettings(Arc::new(manifest.settings_as_strings())),
        granted_topics: manifest.grants.publish.into(),
        kv_granted: manifest.grants.kv,
        database,
        limits: manifest.limits.clone(),
        stats: PluginStats::default(),
        breaker: CircuitBreaker::new(
            manifest.limits.circuit_traps,
            Duration::from_millis(manifest.limits.circuit_cool_down_ms),
        ),
        runtime,
    };
    Ok((plugin, pre))
}
