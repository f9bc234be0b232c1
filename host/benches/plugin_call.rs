//! Microbenchmark: one `task-store.get` call through the postgres-store
//! component — a fresh instance from the pooling allocator, the call, and
//! the one `sql.query` import it makes — with the database replaced by a
//! canned row, so only the plugin machinery is timed.
//!
//!   cargo bench -p todo-host --bench plugin_call -- PATH/TO/postgres-store.wasm
//!
//! Prints the median and p99 per call.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use todo_host::plugins::bindings::StoragePre;
use todo_host::plugins::bindings::todo::plugin::sql::{self, Rows, SqlError, Value};
use todo_host::plugins::bindings::todo::plugin::{config, log, types};
use todo_host::plugins::{ArtifactCache, PluginEngine};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};

const WARM_UP: usize = 2_000;
const SAMPLES: usize = 50_000;

/// Answers every query with one canned `tasks` row.
struct CannedSql {
    row: Vec<Value>,
}

struct BenchState {
    sql: CannedSql,
    limits: StoreLimits,
}

impl types::Host for BenchState {}

impl sql::Host for CannedSql {
    async fn query(&mut self, _statement: String, _params: Vec<Value>) -> Result<Rows, SqlError> {
        Ok(Rows { columns: Vec::new(), rows: vec![self.row.clone()] })
    }

    async fn execute(&mut self, _statement: String, _params: Vec<Value>) -> Result<u64, SqlError> {
        Ok(1)
    }
}

impl log::Host for BenchState {
    async fn log(&mut self, _level: log::Level, _context: String, _message: String) {}
}

impl config::Host for BenchState {
    async fn get(&mut self, _key: String) -> Result<Option<String>, config::ConfigError> {
        Ok(None)
    }

    async fn get_all(&mut self) -> Result<Vec<(String, String)>, config::ConfigError> {
        Ok(Vec::new())
    }
}

fn canned_row(id: &str, owner: &str) -> Vec<Value> {
    vec![
        Value::Uuid(Some(id.into())),
        Value::Uuid(Some(owner.into())),
        Value::Text(Some("Benchmark the plugin call".into())),
        Value::Text(None),
        Value::Text(Some("todo".into())),
        Value::Int(Some(2)),
        Value::Timestamp(None),
        Value::Timestamp(Some(1_790_000_000_000_000)),
        Value::Timestamp(Some(1_790_000_000_000_000)),
        Value::Int(Some(1)),
    ]
}

fn main() -> anyhow::Result<()> {
    let wasm_path = std::env::args()
        .skip(1)
        .find(|arg| arg.ends_with(".wasm"))
        .unwrap_or_else(|| ".run/plugins/postgres-store.wasm".to_string());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run(&wasm_path))
}

async fn run(wasm_path: &str) -> anyhow::Result<()> {
    let wasm = std::fs::read(wasm_path).map_err(|e| anyhow::anyhow!("cannot read {wasm_path}: {e}"))?;
    let cache = ArtifactCache::open(&std::env::temp_dir().join("todo-host-bench-cache"), 64 << 20);
    let engine = PluginEngine::new(64, cache)?;
    let component = engine.compile(&wasm, &hex::encode(Sha256::digest(&wasm)))?;

    let mut linker = Linker::<BenchState>::new(engine.engine());
    let error = |e: wasmtime::Error| anyhow::anyhow!("{e}");
    types::add_to_linker::<_, HasSelf<BenchState>>(&mut linker, |s| s).map_err(error)?;
    sql::add_to_linker::<_, HasSelf<CannedSql>>(&mut linker, |s| &mut s.sql).map_err(error)?;
    log::add_to_linker::<_, HasSelf<BenchState>>(&mut linker, |s| s).map_err(error)?;
    config::add_to_linker::<_, HasSelf<BenchState>>(&mut linker, |s| s).map_err(error)?;
    linker.define_unknown_imports_as_traps(&component).map_err(error)?;
    let pre = StoragePre::new(linker.instantiate_pre(&component).map_err(error)?).map_err(error)?;

    let id = "01a20142-3d57-7728-a0ed-7ff5708f1da8".to_string();
    let owner = "01a20142-3cd5-7028-8809-f21d6c930067".to_string();
    let context = types::CallContext { request_id: "bench".into(), now: 1_790_000_000_000_000 };
    let row = canned_row(&id, &owner);

    let mut samples = Vec::with_capacity(SAMPLES);
    for iteration in 0..WARM_UP + SAMPLES {
        let start = Instant::now();
        let state = BenchState {
            sql: CannedSql { row: row.clone() },
            limits: StoreLimitsBuilder::new().memory_size(64 << 20).build(),
        };
        let mut store = Store::new(engine.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(100);
        let instance = pre.instantiate_async(&mut store).await.map_err(error)?;
        let task = instance
            .todo_plugin_task_store()
            .call_get(&mut store, &context, Some(owner.as_str()), &id)
            .await
            .map_err(error)?
            .map_err(|e| anyhow::anyhow!("the plugin answered an error: {e:?}"))?;
        drop(store);
        let elapsed = start.elapsed();
        assert_eq!(task.id, id);
        if iteration >= WARM_UP {
            samples.push(elapsed);
        }
    }
    samples.sort();
    let at = |quantile: f64| samples[((samples.len() as f64 * quantile) as usize).min(samples.len() - 1)];
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "plugin call (fresh pooled instance + task-store.get + 1 sql import, no database): \
         median {:.1} us, p99 {:.1} us over {SAMPLES} calls",
        micros(at(0.5)),
        micros(at(0.99))
    );
    Ok(())
}
