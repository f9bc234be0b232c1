//! Roles: an API process and a worker process on one database do together
//! what one `all` process does — events delivered (the worker's relay woken
//! by the API's commits, not by its poll), async commands applied, jobs run
//! — and each does only its part; a plugin reload asked of the API reaches
//! the worker.

use std::time::Duration;

use crate::helpers::events::{path_str, plugin_dir_with, unique_prefix};
use crate::helpers::{
    HostOptions, TestApp, TestUser, assert_problem, command, create_task, eventually, history, send, send_with_header,
    status_and_json,
};
use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};

/// Hosts of one deployment: the broker, Redis and the audit-log handler,
/// jobs every second, and a relay poll too far off to deliver anything
/// within a test.
fn deployment(prefix: &str) -> HostOptions {
    HostOptions::default()
        .kafka(prefix, &["audit-log"])
        .env("OUTBOX_POLL_MS", "600000")
        .env("OUTBOX_WAKE_CHANNEL", &format!("{prefix}outbox-wake"))
        .env("OVERDUE_INTERVAL_SECS", "1")
        .env("JOB_LOCK_TTL_MS", "1500")
}

async fn history_len(app: &TestApp, user: &TestUser, task_id: &str) -> usize {
    history(app, user, task_id).await.1["items"].as_array().map_or(0, Vec::len)
}

async fn count(app: &TestApp, query: &str) -> i64 {
    sqlx::query_scalar(query).fetch_one(&mut app.db().await).await.unwrap()
}

const UNPUBLISHED: &str = "SELECT count(*) FROM outbox WHERE published_at IS NULL";
const OVERDUE_NOTICES: &str =
    "SELECT count(*) FROM outbox WHERE convert_from(payload, 'UTF8')::jsonb ->> 'type' = 'task.overdue'";

async fn command_status(app: &TestApp, user: &TestUser, location: &str) -> Value {
    command(app, user, location).await.1["status"].clone()
}

#[tokio::test]
async fn an_api_process_and_a_worker_process_together_do_what_one_process_does() {
    let prefix = unique_prefix();
    let api = TestApp::spawn_with(deployment(&prefix).env("TODO_ROLE", "api")).await;
    let user = api.register_user().await;

    // Alone, the API runs no background work.
    let early =
        create_task(&api, &user, json!({ "title": "before the worker" })).await["id"].as_str().unwrap().to_string();
    let due = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    create_task(&api, &user, json!({ "title": "late", "due_at": due })).await;
    let response = send_with_header(
        &api,
        &user,
        Method::POST,
        "/tasks",
        ("prefer", "respond-async"),
        json!({ "title": "queued" }),
    )
    .await;
    assert_eq!(response.status(), 202, "the API produces commands");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count(&api, UNPUBLISHED).await, 2, "no relay runs in the API");
    assert_eq!(command_status(&api, &user, &location).await, "pending", "no command consumer runs in the API");
    assert_eq!(count(&api, OVERDUE_NOTICES).await, 0, "no job runs in the API");
    assert_eq!(history_len(&api, &user, &early).await, 0);

    let worker = TestApp::spawn_with(deployment(&prefix).env("TODO_ROLE", "worker").database(&api.database)).await;
    let (status, health) = status_and_json(worker.client.get(worker.url("/health")).send().await.unwrap()).await;
    assert_eq!((status, health["status"].as_str(), health["role"].as_str()), (200, Some("ready"), Some("worker")));
    let scrape = worker.client.get(worker.url("/metrics")).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert_problem(send(&worker, &user, Method::GET, "/tasks", None).await, 404, "not-found").await;
    let login = worker.client.post(worker.url("/auth/login")).json(&json!({ "email": user.email, "password": "x" }));
    assert_problem(login.send().await.unwrap(), 404, "not-found").await;

    // What waited is done by the worker, and the job's notice made once.
    eventually("the worker to apply the command", || async {
        (command_status(&api, &user, &location).await == "applied").then_some(())
    })
    .await;
    eventually("the early change to be audited", || async {
        (history_len(&api, &user, &early).await == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count(&api, OVERDUE_NOTICES).await, 1, "the overdue task is announced once, by the worker");

    // A change now reaches the handler at once: the API woke the worker's relay.
    let late =
        create_task(&api, &user, json!({ "title": "after the worker" })).await["id"].as_str().unwrap().to_string();
    eventually("the new change to be audited", || async { (history_len(&api, &user, &late).await == 1).then_some(()) })
        .await;
    assert_eq!(count(&api, UNPUBLISHED).await, 0);
}

#[tokio::test]
async fn a_plugin_reload_asked_of_an_api_process_reaches_the_worker() {
    let dir = plugin_dir_with(&[]);
    let prefix = unique_prefix();
    let options = deployment(&prefix).env("PLUGIN_DIR", path_str(&dir));
    let api = TestApp::spawn_with(options.clone().env("TODO_ROLE", "api")).await;
    let worker = TestApp::spawn_with(options.env("TODO_ROLE", "worker").database(&api.database)).await;
    let (admin, user) = (api.create_user("admin").await, api.register_user().await);
    let audit_log_version = async |app: &TestApp| {
        let (_, health) = status_and_json(app.client.get(app.url("/health")).send().await.unwrap()).await;
        let plugins = health["plugins"].as_array().unwrap().clone();
        plugins.into_iter().find(|plugin| plugin["name"] == "audit-log").map(|plugin| plugin["version"].clone())
    };
    assert_eq!(audit_log_version(&worker).await, Some(json!("0.1.0")));

    let manifest = std::fs::read_to_string(dir.join("audit-log.toml")).unwrap();
    std::fs::write(dir.join("audit-log.toml"), manifest.replace("version = \"0.1.0\"", "version = \"0.1.1\"")).unwrap();
    let (status, report) =
        status_and_json(send(&api, &admin, Method::POST, "/admin/plugins/reload?name=audit-log", None).await).await;
    assert_eq!((status, &report["loaded"][0]["version"]), (200, &json!("0.1.1")), "{report}");
    eventually("the worker to serve the new version", || async {
        (audit_log_version(&worker).await == Some(json!("0.1.1"))).then_some(())
    })
    .await;

    // The worker's handler runs on the new version.
    let task =
        create_task(&api, &user, json!({ "title": "audited by 0.1.1" })).await["id"].as_str().unwrap().to_string();
    eventually("the change to be audited", || async { (history_len(&api, &user, &task).await == 1).then_some(()) })
        .await;
}
