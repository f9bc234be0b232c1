//! `/health*` and `/metrics`: open to probes and scrapers without a token;
//! readiness follows the dependencies; counters move with traffic.

use std::time::{Duration, Instant};

use crate::helpers::events::unique_prefix;
use crate::helpers::postgres::TestPostgres;
use crate::helpers::redis::TestRedis;
use crate::helpers::{HostOptions, TestApp, create_task, send, status_and_json};
use reqwest::Method;
use serde_json::{Value, json};

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    status_and_json(app.request(Method::GET, path).send().await.unwrap()).await
}

#[tokio::test]
async fn liveness_and_readiness_answer_without_a_token() {
    let app = TestApp::spawn_with(HostOptions::default().kafka(&unique_prefix(), &[])).await;
    let (status, body) = get(&app, "/health/live").await;
    assert_eq!((status, body), (200, json!({ "status": "ok" })));

    let (status, body) = get(&app, "/health/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    for dependency in ["postgres", "redis", "kafka"] {
        assert_eq!(body["checks"][dependency]["status"], "up", "{body}");
    }
    assert_eq!(body["checks"]["storage_plugin"]["detail"], "postgres-store@0.1.0");

    let (status, detail) = get(&app, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(detail["plugins"][0]["name"], "postgres-store");
    assert_eq!(detail["plugins"][0]["sha256"].as_str().map(str::len), Some(64));
    for text in [body.to_string(), detail.to_string()] {
        assert!(!text.contains("postgres://") && !text.contains("redis://"), "no connection strings: {text}");
    }
}

#[tokio::test]
async fn readiness_fails_while_redis_is_down_and_recovers() {
    let mut redis = TestRedis::start().await;
    let app = TestApp::spawn_with(HostOptions::default().env("REDIS_URL", &redis.url())).await;
    assert_eq!(get(&app, "/health/ready").await.0, 200);

    redis.stop().await;
    let (status, body) = get(&app, "/health/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["redis"]["status"], "down");
    assert_eq!(body["checks"]["postgres"]["status"], "up", "the breakdown names the one that is down");

    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&app, "/health/ready").await.0 != 200 {
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of one series in a Prometheus text exposition (0 when absent).
fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_requests_plugin_calls_and_cache_lookups() {
    let app = TestApp::spawn_with(HostOptions::default().redis()).await;
    let user = app.register_user().await;
    let scrape = || async {
        let response = app.request(Method::GET, "/metrics").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        response.text().await.unwrap()
    };
    let requests = r#"http_requests_total{method="GET",route="/tasks",status="200"}"#;
    let plugin_ok = r#"plugin_calls_total{plugin="postgres-store",outcome="ok"}"#;
    let before = scrape().await;
    for _ in 0..3 {
        assert_eq!(send(&app, &user, Method::GET, "/tasks", None).await.status(), 200);
    }
    let after = scrape().await;
    assert_eq!(sample(&after, requests) - sample(&before, requests), 3.0, "{after}");
    assert!(sample(&after, plugin_ok) > sample(&before, plugin_ok));
    assert!(sample(&after, "cache_hits_total") >= 2.0, "the second and third listings were hits");
    assert!(after.contains("http_request_duration_seconds_bucket"));
    assert!(after.contains(r#"db_pool_connections{state="idle"}"#));
    assert!(after.contains("outbox_backlog"));
}

#[tokio::test]
async fn readiness_fails_while_postgres_is_down_and_recovers() {
    let mut postgres = TestPostgres::start().await;
    let app = TestApp::spawn_with(HostOptions::default().env("DATABASE_URL", &TestPostgres::app_url(&postgres))).await;
    assert_eq!(get(&app, "/health/ready").await.0, 200);

    postgres.stop().await;
    let (status, body) = get(&app, "/health/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["postgres"]["status"], "down");
    assert_eq!(get(&app, "/health/live").await.0, 200, "the process itself is alive");

    postgres.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&app, "/health/ready").await.0 != 200 {
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pool timeouts and lost connections are the database's failures, not the
/// storage plugin's: however many calls they fail, its circuit stays
/// closed, so writes are back the moment PostgreSQL is.
#[tokio::test]
async fn a_database_outage_never_opens_the_storage_plugins_circuit() {
    let mut postgres = TestPostgres::start().await;
    let app = TestApp::spawn_with(HostOptions::default().env("DATABASE_URL", &TestPostgres::app_url(&postgres))).await;
    let user = app.register_user().await;
    let write = || send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "during the outage" })));
    assert_eq!(write().await.status(), 201);

    postgres.stop().await;
    // More failed calls than the circuit's threshold (5 traps).
    for _ in 0..8 {
        let response = write().await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let (_, body) = status_and_json(response).await;
        assert_eq!(body["type"], "/problems/store-unavailable", "{body}");
    }

    postgres.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = write().await.status();
        if status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not come back with PostgreSQL (last {status})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = get(&app, "/health/ready").await;
    assert_eq!((status, &body["checks"]["storage_plugin"]["status"]), (200, &json!("up")), "{body}");
    let metrics = app.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"outcome="unavailable""#), "the outage is counted as what it is");
}

/// Connections the server ended while they sat in the host's pools (a
/// pooler or a failover dropping them, an idle timeout) are found out
/// before a request is given one: the requests after it succeed.
#[tokio::test]
async fn connections_ended_while_idle_are_replaced_before_use() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let task = create_task(&app, &user, json!({ "title": "before the connections ended" })).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());
    // Long enough for every pooled connection to count as idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut db = app.db().await;
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert!(ended >= 2, "the host's and the storage plugin's connections were ended ({ended})");

    let response = send(&app, &user, Method::GET, &path, None).await;
    assert_eq!(response.status(), 200, "a read right after: {}", response.text().await.unwrap());
    let response = send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "after" }))).await;
    assert_eq!(response.status(), 201, "a write right after: {}", response.text().await.unwrap());
}
