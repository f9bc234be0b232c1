//! A read replica (`DATABASE_READ_URL`): a real streaming replica, made
//! with pg_basebackup from a primary of the test's own. Reads that miss the
//! cache go to it once it has replayed the last write they cover; a
//! caller's read right after its own write sees the write even while the
//! replica is held back; a stopped replica sends every read to the primary
//! and `/health` says so.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::helpers::postgres::TestPostgres;
use crate::helpers::server::LocalServer;
use crate::helpers::{HostOptions, TestApp, TestUser, create_task, eventually, send, status_and_json};

/// The value of `db_reads_total{server}` (0 before the first such read).
async fn reads_served_by(app: &TestApp, server: &str) -> f64 {
    let metrics = app.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let series = format!(r#"db_reads_total{{server="{server}"}}"#);
    metrics.lines().find_map(|line| line.strip_prefix(&series)?.trim().parse().ok()).unwrap_or(0.0)
}

/// The replica's check in `/health`.
async fn replica_check(app: &TestApp) -> Value {
    let (_, body) = status_and_json(app.request(Method::GET, "/health").send().await.unwrap()).await;
    body["checks"]["postgres_replica"].clone()
}

/// A page of the caller's tasks no earlier request cached (the page size
/// is part of the cache key).
async fn uncached_listing(app: &TestApp, user: &TestUser, limit: u32) -> Value {
    let response = send(app, user, Method::GET, &format!("/tasks?limit={limit}"), None).await;
    assert!(response.headers()["cache-status"].to_str().unwrap().contains("fwd=miss"));
    let (status, page) = status_and_json(response).await;
    assert_eq!(status, 200, "{page}");
    page
}

async fn spawn_with_replica(primary: &LocalServer, replica: &LocalServer) -> TestApp {
    let app = TestApp::spawn_with(
        HostOptions::default()
            .redis()
            .env("DATABASE_URL", &TestPostgres::app_url(primary))
            .env("DATABASE_READ_URL", &TestPostgres::app_url(replica))
            .env("REPLICA_POLL_MS", "50"),
    )
    .await;
    eventually("the replica to serve reads", || async { (replica_check(&app).await["status"] == "up").then_some(()) })
        .await;
    app
}

#[tokio::test]
async fn reads_that_miss_the_cache_are_served_by_the_replica() {
    let primary = TestPostgres::start().await;
    let replica = TestPostgres::start_replica(&primary).await;
    let app = spawn_with_replica(&primary, &replica).await;
    let user = app.register_user().await;
    create_task(&app, &user, json!({ "title": "replicated" })).await;

    let before = reads_served_by(&app, "replica").await;
    let mut limit = 1;
    eventually("a listing served by the replica", || {
        limit += 1;
        let (app, user) = (&app, &user);
        async move {
            let page = uncached_listing(app, user, limit).await;
            assert_eq!(page["items"][0]["title"], "replicated", "{page}");
            (reads_served_by(app, "replica").await > before).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_callers_read_after_its_write_sees_the_write_though_the_replica_has_not_replayed_it() {
    let primary = TestPostgres::start().await;
    let replica = TestPostgres::start_replica(&primary).await;
    let app = spawn_with_replica(&primary, &replica).await;
    let user = app.register_user().await;
    let task = create_task(&app, &user, json!({ "title": "before" })).await;
    let id = task["id"].as_str().unwrap();

    let mut standby = PgConnection::connect(&replica.url()).await.unwrap();
    sqlx::query("SELECT pg_wal_replay_pause()").execute(&mut standby).await.unwrap();
    let patched = send(&app, &user, Method::PATCH, &format!("/tasks/{id}"), Some(json!({ "title": "after" }))).await;
    assert_eq!(patched.status(), 200);

    let (status, read) = status_and_json(send(&app, &user, Method::GET, &format!("/tasks/{id}"), None).await).await;
    assert_eq!((status, &read["title"]), (200, &json!("after")), "{read}");
    let page = uncached_listing(&app, &user, 17).await;
    assert_eq!(page["items"][0]["title"], "after", "{page}");
    // The replica still had the old row: those answers came from the primary.
    let mut on_replica = PgConnection::connect(&TestPostgres::app_url(&replica)).await.unwrap();
    let title: String = sqlx::query_scalar("SELECT title FROM plugin_postgres_store.tasks WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&mut on_replica)
        .await
        .unwrap();
    assert_eq!(title, "before", "the replica replayed the write though it was paused");
    sqlx::query("SELECT pg_wal_replay_resume()").execute(&mut standby).await.unwrap();
}

#[tokio::test]
async fn a_stopped_replica_sends_reads_to_the_primary_and_health_says_so() {
    let primary = TestPostgres::start().await;
    let mut replica = TestPostgres::start_replica(&primary).await;
    let app = spawn_with_replica(&primary, &replica).await;
    let user = app.register_user().await;
    create_task(&app, &user, json!({ "title": "kept" })).await;

    replica.stop().await;
    let check = eventually("/health to show the replica down", || async {
        let check = replica_check(&app).await;
        (check["status"] == "degraded").then_some(check)
    })
    .await;
    assert!(check["detail"].as_str().unwrap().contains("reads go to the primary"), "{check}");
    let (status, ready) = status_and_json(app.request(Method::GET, "/health/ready").send().await.unwrap()).await;
    assert_eq!(status, 200, "a replica down is no reason to take the API out of service: {ready}");

    let (primary_before, replica_before) =
        (reads_served_by(&app, "primary").await, reads_served_by(&app, "replica").await);
    for limit in 2..6 {
        let page = uncached_listing(&app, &user, limit).await;
        assert_eq!(page["items"][0]["title"], "kept", "{page}");
    }
    assert_eq!(reads_served_by(&app, "replica").await, replica_before);
    assert!(reads_served_by(&app, "primary").await >= primary_before + 4.0);
}
