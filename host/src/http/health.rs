//! Health: `/health/live` (the process answers), `/health/ready` (it can
//! serve: PostgreSQL, Redis and the broker — those configured — answer and
//! the storage plugin serves, its circuit closed; 503 with a per-dependency breakdown
//! otherwise; a consumer group with a partition nobody consumes, or a read
//! replica that lags or is down (its reads go to the primary), is
//! `degraded`, shown but not failing) and `/health` (the same checks with
//! timings and the loaded plugins). No connection strings or secrets in any
//! of them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::db::replica::{ReadReplica, ReplicaState};
use crate::plugins::PluginIdentity;

/// How long one dependency may take to answer a health check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long sends may fail before the broker counts as down although it
/// answers: a producer that cannot produce (its records refused) is down.
const PRODUCE_GRACE: Duration = Duration::from_secs(10);

#[derive(Serialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    #[schema(value_type = String)]
    status: &'static str,
}

/// The process answers.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "Alive", body = Liveness)))]
pub async fn live() -> axum::Json<Liveness> {
    axum::Json(Liveness { status: "ok" })
}

/// One dependency's state.
#[derive(Serialize, ToSchema)]
pub struct Check {
    /// `up`, `down`, `degraded` (serving, but see `detail`), or `disabled`
    /// (not configured).
    #[schema(value_type = String)]
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl Check {
    fn disabled(detail: &str) -> Self {
        Self { status: "disabled", latency_ms: None, detail: Some(detail.to_string()) }
    }

    fn is_down(&self) -> bool {
        self.status == "down"
    }
}

/// Runs `probe` with the check timeout and times it.
async fn probe(probe: impl Future<Output = Result<(), String>>) -> Check {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, probe).await;
    let latency_ms = Some((started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0);
    match outcome {
        Ok(Ok(())) => Check { status: "up", latency_ms, detail: None },
        Ok(Err(detail)) => Check { status: "down", latency_ms, detail: Some(detail) },
        Err(_) => Check { status: "down", latency_ms, detail: Some(format!("no answer within {CHECK_TIMEOUT:?}")) },
    }
}

async fn checks(state: &AppState) -> BTreeMap<&'static str, Check> {
    let postgres = probe(async {
        sqlx::query("SELECT 1").execute(&state.pool).await.map(|_| ()).map_err(|_| "query failed".to_string())
    });
    let redis = async {
        match &state.redis {
            Some(redis) => {
                probe(async { redis.run::<String>(&redis::cmd("PING")).await.map(|_| ()).map_err(|e| e.to_string()) })
                    .await
            }
            None => Check::disabled("REDIS_URL is not set"),
        }
    };
    let kafka = async {
        match state.kafka.clone() {
            Some(producer) => {
                probe(async move {
                    use rdkafka::producer::Producer;
                    if let Some((failing_for, error)) = producer.failing().filter(|(for_, _)| *for_ >= PRODUCE_GRACE) {
                        return Err(format!("records have not been produced for {} s: {error}", failing_for.as_secs()));
                    }
                    let current = producer.current();
                    tokio::task::spawn_blocking(move || current.client().fetch_metadata(None, CHECK_TIMEOUT))
                        .await
                        .map_err(|_| "the check panicked".to_string())?
                        .map(|_| ())
                        .map_err(|error| error.to_string())
                })
                .await
            }
            None => Check::disabled("KAFKA_BROKERS is not set"),
        }
    };
    let (postgres, redis, kafka) = tokio::join!(postgres, redis, kafka);
    let storage = state.plugins.storage();
    let serving = format!("{}@{}", storage.identity().name, storage.identity().version);
    let plugin = match storage.circuit_open() {
        true => Check {
            status: "down",
            latency_ms: None,
            detail: Some(format!("{serving}: its circuit is open (calls refused after repeated traps)")),
        },
        false => Check { status: "up", latency_ms: None, detail: Some(serving) },
    };
    let consumers = match &state.kafka {
        Some(producer) => consumers(producer.kafka().watch().stalled()),
        None => Check::disabled("KAFKA_BROKERS is not set"),
    };
    let replica = match &state.replica {
        Some(replica) => replica_check(replica),
        None => Check::disabled("DATABASE_READ_URL is not set"),
    };
    BTreeMap::from([
        ("postgres", postgres),
        ("postgres_replica", replica),
        ("redis", redis),
        ("kafka", kafka),
        ("kafka_consumers", consumers),
        ("storage_plugin", plugin),
    ])
}

/// The consumer groups' progress: `degraded` while records wait in a
/// partition nobody consumes. Not `down`: the group's trouble is not this
/// replica's, which still serves (taking it out of a load balancer would
/// not help).
fn consumers(stalled: Vec<String>) -> Check {
    match stalled.is_empty() {
        true => Check { status: "up", latency_ms: None, detail: None },
        false => Check { status: "degraded", latency_ms: None, detail: Some(stalled.join("; ")) },
    }
}

/// The read replica as its last poll found it: `degraded` when it serves
/// no reads. Not `down`: every read still has the primary.
fn replica_check(replica: &ReadReplica) -> Check {
    let milliseconds = |lag: &Duration| (lag.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    let degraded = |detail: String| Check { status: "degraded", latency_ms: None, detail: Some(detail) };
    match replica.state() {
        ReplicaState::Serving { lag } => Check {
            status: "up",
            latency_ms: None,
            detail: Some(format!("serving reads, {} ms behind", milliseconds(&lag))),
        },
        ReplicaState::Lagging { lag } => {
            degraded(format!("{} ms behind, past REPLICA_MAX_LAG_MS: reads go to the primary", milliseconds(&lag)))
        }
        ReplicaState::Down { reason } => degraded(format!("not answering ({reason}): reads go to the primary")),
        ReplicaState::Starting => degraded("not polled yet: reads go to the primary".into()),
    }
}

/// 200 "ready" unless a configured dependency is down.
fn verdict(checks: &BTreeMap<&'static str, Check>) -> (StatusCode, &'static str) {
    if checks.values().any(Check::is_down) {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else {
        (StatusCode::OK, "ready")
    }
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    #[schema(value_type = String)]
    status: &'static str,
    /// By dependency: `postgres`, `postgres_replica`, `redis`, `kafka`,
    /// `kafka_consumers`, `storage_plugin`.
    #[schema(value_type = BTreeMap<String, Check>)]
    checks: BTreeMap<&'static str, Check>,
}

/// Whether this replica can serve: every configured dependency answers.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses(
    (status = 200, description = "Ready", body = Readiness),
    (status = 503, description = "A dependency is down (see `checks`)", body = Readiness),
))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, axum::Json<Readiness>) {
    let checks = checks(&state).await;
    let (status, verdict) = verdict(&checks);
    (status, axum::Json(Readiness { status: verdict, checks }))
}

#[derive(Serialize, ToSchema)]
pub struct HealthReport {
    #[serde(flatten)]
    readiness: Readiness,
    /// This server's version.
    #[schema(value_type = String)]
    version: &'static str,
    /// What this process runs: `api`, `worker` or `all` (`TODO_ROLE`).
    #[schema(value_type = String)]
    role: &'static str,
    /// The storage plugin, then the event handlers.
    plugins: Vec<PluginIdentity>,
}

/// Readiness with timings, the server's version and role, and the loaded plugins.
#[utoipa::path(get, path = "/health", tag = "operations", responses(
    (status = 200, description = "Ready", body = HealthReport),
    (status = 503, description = "A dependency is down (see `checks`)", body = HealthReport),
))]
pub async fn detail(State(state): State<AppState>) -> (StatusCode, axum::Json<HealthReport>) {
    let checks = checks(&state).await;
    let (status, verdict) = verdict(&checks);
    let plugins = std::iter::once(state.plugins.storage().identity().clone())
        .chain(state.plugins.handlers().iter().map(|slot| slot.identity()))
        .collect();
    let report = HealthReport {
        readiness: Readiness { status: verdict, checks },
        version: env!("CARGO_PKG_VERSION"),
        role: state.role.as_str(),
        plugins,
    };
    (status, axum::Json(report))
}
