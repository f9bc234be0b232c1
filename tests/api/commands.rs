//! Async writes: `Prefer: respond-async` answers 202 with a command to poll;
//! commands are applied in batches, exactly once, even across a crash.

use std::time::{Duration, Instant};

use crate::helpers::events::unique_prefix;
use crate::helpers::{HostOptions, TestApp, TestUser, command, send_with_header, status_and_json};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Sends a write with `Prefer: respond-async`; answers the command's path.
async fn send_async(app: &TestApp, user: &TestUser, method: Method, path: &str, body: Option<Value>) -> String {
    let mut request =
        app.request(method, path).header("authorization", user.bearer()).header("prefer", "respond-async");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["preference-applied"], "respond-async");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let (_, body) = status_and_json(response).await;
    assert_eq!(body["status"], "pending");
    assert_eq!(location, format!("/commands/{}", body["id"].as_str().unwrap()));
    location
}

/// Polls the command until it is no longer pending.
async fn finished(app: &TestApp, user: &TestUser, location: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = command(app, user, location).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] != "pending" {
            return body;
        }
        assert!(Instant::now() < deadline, "command {location} still pending");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn async_app() -> TestApp {
    TestApp::spawn_with(HostOptions::default().kafka(&unique_prefix(), &[])).await
}

#[tokio::test]
async fn an_async_create_is_applied_and_then_visible() {
    let app = async_app().await;
    let user = app.register_user().await;
    let location = send_async(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "later" }))).await;
    let done = finished(&app, &user, &location).await;
    assert_eq!(done["status"], "applied", "{done}");
    let task = &done["result"]["task"];
    assert_eq!(task["title"], "later");
    assert_eq!(task["version"], 1);

    let (status, fetched) = status_and_json(
        app.request(Method::GET, &format!("/tasks/{}", task["id"].as_str().unwrap()))
            .header("authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &fetched["title"]), (200, &json!("later")));

    // Commands are private to their issuer.
    let stranger = app.register_user().await;
    assert_eq!(command(&app, &stranger, &location).await.0, 404);
}

#[tokio::test]
async fn a_failing_async_write_reports_the_problem_and_spares_the_others() {
    let app = async_app().await;
    let user = app.register_user().await;
    let missing = format!("/tasks/{}", uuid::Uuid::now_v7());
    let failing = send_async(&app, &user, Method::PATCH, &missing, Some(json!({ "title": "nobody" }))).await;
    let fine = send_async(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "fine" }))).await;

    let failed = finished(&app, &user, &failing).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["problem"]["status"], 404);
    assert_eq!(failed["problem"]["type"], "/problems/not-found");
    assert_eq!(finished(&app, &user, &fine).await["status"], "applied");
}

#[tokio::test]
async fn invalid_async_writes_are_refused_before_they_are_queued() {
    let app = async_app().await;
    let user = app.register_user().await;
    let response =
        send_with_header(&app, &user, Method::POST, "/tasks", ("prefer", "respond-async"), json!({ "title": "" }))
            .await;
    crate::helpers::assert_problem(response, 422, "validation-failed").await;
}

#[tokio::test]
async fn an_async_batch_reports_every_operation() {
    let app = async_app().await;
    let user = app.register_user().await;
    let batch = json!({ "operations": [
        { "op": "create", "task": { "title": "one" } },
        { "op": "create", "task": { "title": "two" } },
    ]});
    let location = send_async(&app, &user, Method::POST, "/tasks/batch", Some(batch)).await;
    let done = finished(&app, &user, &location).await;
    assert_eq!(done["status"], "applied", "{done}");
    let results = done["result"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["task"]["title"], "two");
}

#[tokio::test]
async fn commands_accepted_before_a_crash_are_applied_after_restart_exactly_once() {
    let prefix = unique_prefix();
    // This replica accepts commands but applies none, then dies (SIGKILL).
    let accepting =
        TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[]).env("COMMAND_CONSUMER_ENABLED", "false")).await;
    let user = accepting.register_user().await;
    const COMMANDS: usize = 30;
    let mut locations = Vec::new();
    for n in 0..COMMANDS {
        let body = json!({ "title": format!("queued {n}") });
        locations.push(send_async(&accepting, &user, Method::POST, "/tasks", Some(body)).await);
    }
    assert_eq!(command(&accepting, &user, &locations[0]).await.1["status"], "pending");
    assert_eq!(accepting.task_rows().await, 0, "nothing was applied yet");
    let database = accepting.database.clone();
    drop(accepting);

    let applying = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[]).database(&database)).await;
    for location in &locations {
        assert_eq!(finished(&applying, &user, location).await["status"], "applied");
    }
    assert_eq!(applying.task_rows().await, COMMANDS as i64);
    drop(applying);

    // Another restart re-reads nothing it already applied.
    let again = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[]).database(&database)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(again.task_rows().await, COMMANDS as i64, "no command was applied twice");
}

/// A command as the first release produced it (no `version` member; from
/// its `serde_json` output), queued before an upgrade: the new host applies it.
#[tokio::test]
async fn a_command_an_older_release_queued_is_applied() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[])).await;
    let user = app.register_user().await;
    let (command_id, task_id) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let recorded = format!(
        r#"{{"id":"{command_id}","issuer":{{"user_id":"{user}","role":"user"}},"trace":{{"request_id":"queued-by-0.1"}},"issued_at":"2026-11-30T09:12:03.481207Z","write":{{"kind":"single","operation":{{"scope":"{user}","operation":{{"op":"create","id":"{task_id}","owner_id":"{user}","title":"Queued before the upgrade","description":null,"status":"todo","priority":"high","due_at":null}}}}}}}}"#,
        user = user.id
    );
    let record = crate::helpers::events::Record {
        key: Some(user.id.to_string()),
        payload: recorded.into_bytes(),
        headers: Default::default(),
    };
    crate::helpers::events::produce_again(&format!("{prefix}task-commands"), &record).await;

    let location = format!("/commands/{command_id}");
    let deadline = Instant::now() + WAIT;
    let done = loop {
        let (status, body) = command(&app, &user, &location).await;
        if status == 200 && body["status"] != "pending" {
            break body;
        }
        assert!(Instant::now() < deadline, "the recorded command was not applied: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "applied", "{done}");
    let (status, task) = status_and_json(
        app.request(Method::GET, &format!("/tasks/{task_id}"))
            .header("authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{task}");
    assert_eq!((task["title"].as_str(), task["priority"].as_str()), (Some("Queued before the upgrade"), Some("high")));
}

/// `Prefer: respond-async` is a preference: when the broker cannot take the
/// command, the write is applied at once and answered as a synchronous one
/// (RFC 7240), never refused — and the command that may have reached the
/// broker after all is withdrawn, so it is never applied a second time.
#[tokio::test]
async fn an_async_write_the_broker_cannot_take_is_applied_at_once() {
    use crate::helpers::events::TestBroker;
    let mut broker = TestBroker::start().await;
    let options =
        HostOptions::default().kafka_on(&broker.url(), &unique_prefix(), &[]).env("KAFKA_MESSAGE_TIMEOUT_MS", "1500");
    let app = TestApp::spawn_with(options).await;
    let user = app.register_user().await;
    broker.stop().await;

    let response =
        send_with_header(&app, &user, Method::POST, "/tasks", ("prefer", "respond-async"), json!({ "title": "now" }))
            .await;
    assert_eq!(response.status(), 201, "applied as a synchronous write");
    assert!(response.headers().get("preference-applied").is_none());
    let (_, task) = status_and_json(response).await;
    assert_eq!(task["title"], "now");
    let mut db = app.db().await;
    let withdrawn: i64 = sqlx::query_scalar("SELECT count(*) FROM command_results WHERE status = 'withdrawn'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(withdrawn, 1, "the command is withdrawn before the write is applied");
}

#[tokio::test]
async fn a_command_that_can_never_apply_is_failed_and_set_aside_and_the_commands_behind_it_go_on() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[]).env("COMMAND_MAX_ATTEMPTS", "3")).await;
    let user = app.register_user().await;
    let (task, _) = crate::helpers::create_titled(&app, &user, "locked away").await;
    let id = task["id"].as_str().unwrap().to_string();

    // Someone holds the task's row: every try to change it outlasts the
    // storage plugin's deadline.
    let mut holder = app.db().await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT 1 FROM plugin_postgres_store.tasks WHERE id = $1::uuid FOR UPDATE")
        .bind(&id)
        .execute(&mut holder)
        .await
        .unwrap();
    let path = format!("/tasks/{id}");
    let stuck = send_async(&app, &user, Method::PATCH, &path, Some(json!({ "title": "never" }))).await;
    let behind = send_async(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "behind it" }))).await;

    let done = finished(&app, &user, &behind).await;
    assert_eq!(done["status"], "applied", "the poison no longer blocks the commands behind it: {done}");
    let failed = finished(&app, &user, &stuck).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["problem"]["status"], 504, "{failed}");
    assert_eq!(failed["problem"]["attempts"], 3, "{failed}");
    assert!(failed["problem"]["detail"].as_str().unwrap().contains("task-commands.dlq"), "{failed}");

    let mut dead = crate::helpers::events::TopicReader::new(&format!("{prefix}task-commands.dlq"));
    let records = dead.read_until(WAIT, |records| !records.is_empty()).await.to_vec();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].headers["dlq-attempts"], "3");
    assert_eq!(records[0].headers["dlq-original-topic"], format!("{prefix}task-commands"));
    assert!(records[0].headers["dlq-error"].contains("deadline"), "{:?}", records[0].headers);

    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let (_, current) =
        status_and_json(app.request(Method::GET, &path).header("authorization", user.bearer()).send().await.unwrap())
            .await;
    assert_eq!((&current["title"], &current["version"]), (&json!("locked away"), &json!(1)), "nothing of it applied");
}
