//! The wasmtime engine shared by every plugin, and compilation through the
//! on-disk cache of compiled components.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::artifacts::ArtifactCache;

/// How often the epoch advances; plugin deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest linear memory any plugin may be granted; a manifest asking
/// for more gets this much.
pub const MAX_PLUGIN_MEMORY: usize = 256 << 20;

/// Memory of a pool slot kept resident between instances.
const RESIDENT_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    /// `engine`'s settings without its pool (which changes no compiled
    /// code): each compilation builds a compiler from them and drops it
    /// when done. A compiler keeps, for good, the buffers Cranelift grew for
    /// the largest function it compiled, one set per thread that compiled:
    /// over 100 MB after a Python component, whose interpreter loop is one
    /// enormous function.
    compiler_config: Config,
    artifacts: ArtifactCache,
    /// Distinguishes artifacts of different wasmtime builds and settings.
    compatibility: String,
}

impl PluginEngine {
    /// Builds the engine with a pooling allocator sized for
    /// `max_instances` concurrent instances (falling back to on-demand
    /// allocation where the pool's address space cannot be reserved),
    /// compiling through `artifacts`, and starts the epoch ticker.
    pub fn new(max_instances: u32, artifacts: ArtifactCache) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(512 << 10);
        config.async_stack_size(2 << 20);
        let compiler_config = config.clone();

        let mut pool = PoolingAllocationConfig::default();
        // A Rust (wit-bindgen) component holds one memory, a few tables and
        // a few core instances; a componentize-py one some 40 core
        // instances, a QuickJS one three memories. Slots of instances and
        // tables reserve address space only.
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances * 48)
            .total_memories(max_instances * 2)
            .total_tables(max_instances * 8)
            .total_stacks(max_instances)
            .max_memory_size(MAX_PLUGIN_MEMORY)
            // Reset what a call dirtied with memset (finding the dirty pages
            // with PAGEMAP_SCAN where the kernel has it) instead of madvise:
            // the next instance in the slot takes no page faults.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(RESIDENT_BYTES)
            .table_keep_resident(RESIDENT_BYTES)
            .async_stack_keep_resident(RESIDENT_BYTES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            Err(error) => {
                tracing::warn!(%error, "pooling allocator unavailable; instances are allocated on demand");
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the wasmtime engine: {e}"))?
            }
        };

        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })
            .context("cannot start the epoch ticker")?;

        Ok(Self { compatibility: compatibility(&engine), engine, compiler_config, artifacts })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `wasm` (whose SHA-256 is `sha256`), or loads the native code
    /// compiled earlier for the same bytes by the same engine build.
    pub fn compile(&self, wasm: &[u8], sha256: &str) -> anyhow::Result<Component> {
        let key = format!("{sha256}-{}", self.compatibility);
        if let Some(cached) = self.artifacts.lookup(&key) {
            // SAFETY: the cache directory is written only by this host, with
            // artifacts `precompile_component` produced for this engine build
            // (the key carries the compatibility hash).
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!(path = %cached.display(), %error, "discarding an unreadable compiled plugin");
                    self.artifacts.discard(&cached);
                }
            }
        }
        // The compiler is dropped before its memory is given back.
        let native = Engine::new(&self.compiler_config).and_then(|compiler| compiler.precompile_component(wasm));
        release_compiler_memory();
        let native = native.map_err(|e| anyhow::anyhow!("not a valid WebAssembly component: {e:#}"))?;
        // Loaded from the file, the native code is mapped, not copied: only
        // the pages calls touch are resident (a Python component's code is
        // tens of MB), as for a component found in the cache.
        let component = match self.artifacts.store(&key, &native) {
            // SAFETY: the file holds `native`, produced just now with this
            // engine's settings.
            Ok(stored) => unsafe { Component::deserialize_file(&self.engine, &stored) },
            Err(error) => {
                tracing::warn!(key, %error, "cannot cache a compiled plugin");
                // SAFETY: `native` was produced just now with this engine's settings.
                unsafe { Component::deserialize(&self.engine, &native) }
            }
        };
        component.map_err(|e| anyhow::anyhow!("cannot load the compiled component: {e:#}"))
    }
}

/// What tells artifacts of different wasmtime builds and settings apart.
fn compatibility(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Hands the memory a compilation freed back to the OS. Cranelift compiles
/// on rayon's threads, which then sleep, and mimalloc gives a thread's free
/// pages back only when that thread allocates again: a Python component's
/// compilation would otherwise leave its working memory resident for good.
fn release_compiler_memory() {
    // SAFETY: mi_collect only releases memory the allocator holds free.
    rayon::broadcast(|_| unsafe { libmimalloc_sys::mi_collect(true) });
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_compilation_produces_runs_on_the_pooled_engine() {
        let dir = std::env::temp_dir().join(format!("todo-host-engine-{}", uuid::Uuid::new_v4().simple()));
        let plugins = PluginEngine::new(4, ArtifactCache::open(&dir, u64::MAX)).unwrap();
        let compiler = Engine::new(&plugins.compiler_config).unwrap();
        assert_eq!(compatibility(&compiler), plugins.compatibility);
    }
}
