//! The plugin path against the same SQL run natively in the host: reads of
//! seeded tasks at a fixed concurrency, once through `TaskStore::get` (the
//! storage plugin's breaker, a fresh pooled instance, its `sql` import, the
//! WIT conversions) and once as the statement postgres-store issues, run by
//! sqlx on the same pool (the plugin's role) and decoded into the same
//! `Task`. What differs is what the plugin boundary costs.
//!
//! Reads the server's configuration from the environment, like `serve`
//! (DATABASE_URL, PLUGIN_DIR, JWT_SECRET or PLUGIN_DB_SECRET so the plugin's
//! role logs in with its password), plus IDS_FILE (task ids, one per line)
//! and OWNER (their owner):
//!
//!   cargo bench -p todo-host --bench store_path -- [CONCURRENCY [SECONDS]]
//!
//! Runs native, plugin, native, plugin (so drift shows in neither alone) and
//! prints per path the calls per second, p50 and p99, the ratios, and this
//! process's CPU time per call (PostgreSQL's, on the same machine, not
//! counted): what the ratios are made of once the cores are busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use sqlx::{PgPool, Row};
use todo_host::config::ServeConfig;
use todo_host::db::replica::Freshness;
use todo_host::db::{self, HostKey};
use todo_host::outbox::OutboxWaker;
use todo_host::startup::{load_plugins, signing_secret};
use todo_host::tasks::model::{Priority, Task, TaskStatus};
use todo_host::tasks::{Call, TaskCache, TaskStore};
use todo_host::trace::RequestTrace;
use uuid::Uuid;

/// The statement postgres-store's `get` issues for a scoped caller.
const GET_STATEMENT: &str = "SELECT id, owner_id, title, description, status, priority, due_at, created_at, \
                             updated_at, version FROM tasks WHERE id = $1 AND owner_id = $2";

// As the server runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WARM_UP: Duration = Duration::from_secs(2);

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeConfig,
    #[arg(default_value_t = 32)]
    concurrency: usize,
    #[arg(default_value_t = 5)]
    seconds: u64,
    /// cargo bench passes it; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What the readers share: the two paths and the ids they read.
struct Paths {
    store: TaskStore,
    pool: PgPool,
    ids: Vec<Uuid>,
    owner: Uuid,
}

#[derive(Clone, Copy)]
enum Path {
    Native,
    Plugin,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.serve;
    let ids = std::fs::read_to_string(std::env::var("IDS_FILE").context("IDS_FILE is not set")?)?
        .lines()
        .map(Uuid::parse_str)
        .collect::<Result<Vec<_>, _>>()?;
    let owner = Uuid::parse_str(&std::env::var("OWNER").context("OWNER is not set")?)?;
    let pool = db::connect(&config.database).await?;
    let key = HostKey::load(&pool).await?;
    let secret = signing_secret(&config.auth)?;
    let plugins = load_plugins(&config, &pool, &key, &secret, None, OutboxWaker::default(), None).await?;
    let plugin_pool = plugins.storage().database_pool().context("the storage plugin has no `sql` grant")?.clone();
    let store = TaskStore::new(
        plugins,
        TaskCache::new(None, Duration::ZERO, &key),
        pool.clone(),
        config.plugins.history_plugin.clone(),
    );
    let paths = Arc::new(Paths { store, pool: plugin_pool, ids, owner });

    let seconds = Duration::from_secs(args.seconds);
    for path in [Path::Native, Path::Plugin] {
        measure(&paths, path, args.concurrency, WARM_UP).await?;
    }
    let (mut native, mut plugin) = (Vec::new(), Vec::new());
    let (mut native_cpu, mut plugin_cpu) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..2 {
        let (latencies, cpu) = measure(&paths, Path::Native, args.concurrency, seconds).await?;
        native.extend(latencies);
        native_cpu += cpu;
        let (latencies, cpu) = measure(&paths, Path::Plugin, args.concurrency, seconds).await?;
        plugin.extend(latencies);
        plugin_cpu += cpu;
    }
    let window = 2.0 * seconds.as_secs_f64();
    let (native, plugin) = (Summary::of(native, window, native_cpu), Summary::of(plugin, window, plugin_cpu));
    println!("GET of one task at concurrency {}, {window:.0} s per path:", args.concurrency);
    println!("  native SQL in the host  {native}");
    println!("  postgres-store plugin   {plugin}");
    println!(
        "  plugin / native latency: p50 {:.2}x, p99 {:.2}x; throughput {:.2}x",
        plugin.p50 / native.p50,
        plugin.p99 / native.p99,
        plugin.rate / native.rate
    );
    println!(
        "  host CPU per call: native {:.0} us, plugin {:.0} us (the database's not counted)",
        native.cpu_per_call, plugin.cpu_per_call
    );
    Ok(())
}

/// `concurrency` readers, each reading one random seeded task after the
/// other through `path` for `length`; every call's latency, and the CPU
/// time this process spent meanwhile.
async fn measure(
    paths: &Arc<Paths>,
    path: Path,
    concurrency: usize,
    length: Duration,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let cpu_before = process_cpu()?;
    let until = Instant::now() + length;
    let readers: Vec<_> = (0..concurrency)
        .map(|reader| {
            let paths = paths.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut next = reader;
                while Instant::now() < until {
                    next = (next * 7919 + 13) % paths.ids.len();
                    let start = Instant::now();
                    let task = paths.read(path, paths.ids[next]).await?;
                    latencies.push(start.elapsed());
                    anyhow::ensure!(task.id == paths.ids[next], "read {} and got {}", paths.ids[next], task.id);
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for reader in readers {
        latencies.extend(reader.await??);
    }
    Ok((latencies, process_cpu()? - cpu_before))
}

/// The user and system CPU time of this process so far (`/proc/self/stat`,
/// in the kernel's clock ticks of 10 ms).
fn process_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')').context("no command name")?.1.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

impl Paths {
    async fn read(&self, path: Path, id: Uuid) -> anyhow::Result<Task> {
        match path {
            Path::Plugin => {
                let trace = RequestTrace { request_id: "bench".into(), traceparent: None };
                let call = Call { trace: &trace, now: Utc::now() };
                Ok(self.store.get(&call, Freshness::Latest, Some(self.owner), id).await?)
            }
            Path::Native => {
                let row = sqlx::query(GET_STATEMENT).bind(id).bind(self.owner).fetch_one(&self.pool).await?;
                task_from_row(&row)
            }
        }
    }
}

fn task_from_row(row: &sqlx::postgres::PgRow) -> anyhow::Result<Task> {
    let status = match row.try_get::<&str, _>("status")? {
        "todo" => TaskStatus::Todo,
        "in_progress" => TaskStatus::InProgress,
        "done" => TaskStatus::Done,
        other => anyhow::bail!("status {other}"),
    };
    let priority = match row.try_get::<i16, _>("priority")? {
        1 => Priority::Low,
        2 => Priority::Medium,
        3 => Priority::High,
        other => anyhow::bail!("priority {other}"),
    };
    Ok(Task {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        status,
        priority,
        due_at: row.try_get::<Option<DateTime<Utc>>, _>("due_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

/// Calls per second, latency quantiles and this process's CPU time per
/// call, in microseconds.
struct Summary {
    rate: f64,
    p50: f64,
    p99: f64,
    cpu_per_call: f64,
}

impl Summary {
    fn of(mut latencies: Vec<Duration>, seconds: f64, cpu: Duration) -> Self {
        latencies.sort();
        let at = |quantile: f64| {
            latencies[((latencies.len() as f64 * quantile) as usize).min(latencies.len() - 1)].as_secs_f64() * 1e6
        };
        let cpu_per_call = cpu.as_secs_f64() * 1e6 / latencies.len() as f64;
        Self { rate: latencies.len() as f64 / seconds, p50: at(0.5), p99: at(0.99), cpu_per_call }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:>8.0} calls/s  p50 {:>7.0} us  p99 {:>7.0} us", self.rate, self.p50, self.p99)
    }
}
