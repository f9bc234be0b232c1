//! `/metrics` in the Prometheus text format, and the middleware counting
//! and timing every request by route template, method and status.
//!
//! The other series are recorded where they happen (the `metrics` facade):
//! `plugin_calls_total` / `plugin_call_duration_seconds` (plugins::call),
//! `cache_hits_total` / `cache_misses_total` (tasks::cache),
//! `rate_limited_total` (ratelimit), `kafka_produced_total`,
//! `kafka_consumed_total`, `kafka_dead_lettered_total` (events, commands),
//! `kafka_consumer_lag` (kafka::LagReporter), `db_reads_total{server}`
//! (plugins' read calls by the server that answered), `db_replica_serving`
//! and `db_replica_lag_seconds` (db::replica).
//! Gauges that describe a state (pool connections, outbox backlog) are read
//! at scrape time.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::AppState;

/// Seconds; from a cached read (~1 ms) to a plugin deadline (1 s) and beyond.
const DURATION_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder.
pub fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &DURATION_BUCKETS)?
        .install_recorder()
        .map_err(|error| anyhow::anyhow!("cannot install the metrics recorder: {error}"))
}

/// Folds the histogram samples recorded since the last time into their
/// buckets, every UPKEEP_INTERVAL: the recorder keeps each sample until then
/// or until a scrape, so a process nobody scrapes would grow without bound.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        ticks.tick().await;
        handle.run_upkeep();
    }
}

/// Middleware (a route layer, so the matched route template is known).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("http_request_duration_seconds", "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status).increment(1);
    response
}

/// Prometheus text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Every series of this process", body = String, content_type = "text/plain"),
))]
pub async fn render(State(state): State<AppState>) -> Response {
    let pool = &state.pool;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "state" => "in_use").set(f64::from(pool.size()) - idle);
    match sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetch_one(pool).await {
        Ok(backlog) => metrics::gauge!("outbox_backlog").set(backlog as f64),
        Err(error) => tracing::warn!(%error, "cannot measure the outbox backlog"),
    }
    let mut response = state.metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
