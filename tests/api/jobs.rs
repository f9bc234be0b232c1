//! The overdue job: once per tick across replicas (a Redis lock with
//! fencing), each overdue task announced once, a dead holder replaced
//! within one lock TTL, and a holder with a stale fence refused.

use std::time::{Duration, Instant};

use crate::helpers::redis::TestRedis;
use crate::helpers::server::LocalServer;
use crate::helpers::{HostOptions, TestApp, TestUser, send};
use chrono::Utc;
use reqwest::Method;
use serde_json::json;
use sqlx::{Connection, Row};

fn job_host(redis: &LocalServer) -> HostOptions {
    HostOptions::default()
        .env("REDIS_URL", &redis.url())
        .env("OVERDUE_INTERVAL_SECS", "1")
        .env("JOB_LOCK_TTL_MS", "1500")
}

async fn create_due(app: &TestApp, user: &TestUser, title: &str, due_in_secs: i64, status: &str) {
    let due = (Utc::now() + chrono::Duration::seconds(due_in_secs)).to_rfc3339();
    let body = json!({ "title": title, "due_at": due, "status": status });
    assert_eq!(send(app, user, Method::POST, "/tasks", Some(body)).await.status(), 201);
}

/// Titles of the tasks announced overdue so far (outbox rows).
async fn announced(app: &TestApp) -> Vec<String> {
    let rows = sqlx::query(
        "SELECT convert_from(payload, 'UTF8')::jsonb #>> '{data,task,title}' AS title FROM outbox \
         WHERE convert_from(payload, 'UTF8')::jsonb ->> 'type' = 'task.overdue' ORDER BY id",
    )
    .fetch_all(&mut app.db().await)
    .await
    .unwrap();
    rows.iter().map(|row| row.get("title")).collect()
}

async fn job_runs(app: &TestApp) -> Vec<(i64, String)> {
    let rows = sqlx::query("SELECT slot, holder FROM job_runs WHERE job = 'overdue' ORDER BY slot")
        .fetch_all(&mut app.db().await)
        .await
        .unwrap();
    rows.iter().map(|row| (row.get("slot"), row.get("holder"))).collect()
}

#[tokio::test]
async fn three_replicas_run_each_tick_once_and_announce_each_overdue_task_once() {
    let redis = TestRedis::start().await;
    let first = TestApp::spawn_with(job_host(&redis)).await;
    let others = [
        TestApp::spawn_with(job_host(&redis).database(&first.database)).await,
        TestApp::spawn_with(job_host(&redis).database(&first.database)).await,
    ];
    let user = first.register_user().await;
    for n in 0..5 {
        create_due(&first, &user, &format!("late {n}"), -3600, "todo").await;
    }
    create_due(&first, &user, "late but in progress", -60, "in_progress").await;
    create_due(&first, &user, "late but done", -3600, "done").await;
    create_due(&first, &user, "not yet due", 3600, "todo").await;

    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut titles = announced(&first).await;
    titles.sort();
    assert_eq!(
        titles,
        ["late 0", "late 1", "late 2", "late 3", "late 4", "late but in progress"],
        "each overdue task once; done and future tasks never"
    );
    let runs = job_runs(&first).await;
    assert!(runs.len() >= 3, "one run per one-second tick: {runs:?}");
    for pair in runs.windows(2) {
        assert!(pair[0].0 < pair[1].0, "one run per slot: {runs:?}");
    }
    for app in std::iter::once(&first).chain(&others) {
        let failed: Vec<String> = app.logs().into_iter().filter(|line| line.contains("scheduled job failed")).collect();
        assert!(failed.is_empty(), "no replica collided with another: {failed:#?}");
    }
}

#[tokio::test]
async fn a_dead_holder_is_replaced_within_one_lock_ttl() {
    let redis = TestRedis::start().await;
    let app = TestApp::spawn_with(job_host(&redis)).await;
    let user = app.register_user().await;
    create_due(&app, &user, "late", -3600, "todo").await;

    // A holder that took the lock and died: nobody may run until it expires.
    // (The host's own runs take the lock too: wait for a moment it is free.)
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    loop {
        let taken: Option<String> = redis::cmd("SET")
            .arg("todo:lock:job:overdue")
            .arg("a-dead-replica")
            .arg("NX")
            .arg("PX")
            .arg(1500)
            .query_async(&mut connection)
            .await
            .unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let taken_at = Instant::now();
    let runs_before = job_runs(&app).await.len();
    let deadline = taken_at + Duration::from_secs(10);
    while job_runs(&app).await.len() == runs_before {
        assert!(Instant::now() < deadline, "no replica took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = taken_at.elapsed();
    assert!(waited >= Duration::from_millis(1400), "nobody ran while the lease held ({waited:?})");
    assert!(waited < Duration::from_millis(1500 + 1000), "taken over within one TTL and a poll ({waited:?})");
    assert_eq!(announced(&app).await, ["late"]);
}

#[tokio::test]
async fn a_holder_with_a_stale_fencing_token_cannot_act_and_the_counter_catches_up() {
    let redis = TestRedis::start().await;
    let app = TestApp::spawn_with(job_host(&redis).env("OVERDUE_JOB_ENABLED", "false")).await;
    let user = app.register_user().await;
    create_due(&app, &user, "late", -3600, "todo").await;
    // The database has seen a far newer fence than Redis will hand out (as
    // after Redis lost its counter).
    sqlx::query("INSERT INTO job_fences (job, fence) VALUES ('overdue', 1000000)")
        .execute(&mut app.db().await)
        .await
        .unwrap();
    let runner = TestApp::spawn_with(job_host(&redis).database(&app.database)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while job_runs(&app).await.is_empty() {
        assert!(Instant::now() < deadline, "the job never ran again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(runner.logs().iter().any(|line| line.contains("is stale")), "the stale holder was refused first");
    let fence: i64 = sqlx::query_scalar("SELECT fence FROM job_runs WHERE job = 'overdue'")
        .fetch_one(&mut app.db().await)
        .await
        .unwrap();
    assert!(fence > 1_000_000, "the run that acted held a newer fence ({fence})");
    assert_eq!(announced(&app).await, ["late"]);
}

#[tokio::test]
async fn the_retention_job_prunes_old_bookkeeping_and_keeps_recent_rows() {
    let redis = TestRedis::start().await;
    let app = TestApp::spawn_with(
        job_host(&redis)
            .env("OVERDUE_JOB_ENABLED", "false")
            .env("RETENTION_INTERVAL_SECS", "1")
            .env("COMMAND_RESULT_RETENTION_SECS", "3600")
            .env("LEDGER_RETENTION_SECS", "3600"),
    )
    .await;
    let user = app.register_user().await;
    let mut db = app.db().await;
    for (age, tag) in [("2 hours", "old"), ("1 minute", "recent")] {
        sqlx::query(&format!(
            "INSERT INTO command_results (id, issuer_id, status, result, finished_at) \
             VALUES (gen_random_uuid(), $1, 'applied', '{{}}', now() - interval '{age}')"
        ))
        .bind(user.id)
        .execute(&mut db)
        .await
        .unwrap();
        sqlx::query(&format!(
            "INSERT INTO processed_events (handler, event_id, processed_at) VALUES ('test', '{tag}', now() - interval '{age}')"
        ))
        .execute(&mut db)
        .await
        .unwrap();
    }
    let count = |table: &'static str| {
        let url = app.database_url.clone();
        async move {
            let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
            let (count,): (i64,) =
                sqlx::query_as(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut db).await.unwrap();
            count
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count("command_results").await != 1 || count("processed_events").await != 1 {
        assert!(Instant::now() < deadline, "old rows were not pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (kept,): (String,) = sqlx::query_as("SELECT event_id FROM processed_events").fetch_one(&mut db).await.unwrap();
    assert_eq!(kept, "recent");
}
