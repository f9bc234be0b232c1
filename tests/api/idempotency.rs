//! `Idempotency-Key` on `POST /tasks` and `POST /tasks/batch`: a retry
//! replays the first answer instead of writing again; a key reused for
//! another request, or sent again while its request runs, is refused.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::helpers::events::unique_prefix;
use crate::helpers::{HostOptions, ScratchDir, TestApp, TestUser, assert_problem, status_and_json};
use reqwest::{Method, Response};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

async fn redis_app() -> TestApp {
    TestApp::spawn_with(HostOptions::default().redis()).await
}

/// A POST as `user` under `key`, with extra headers.
async fn post_with(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    key: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Response {
    let mut request =
        app.request(Method::POST, path).header("authorization", user.bearer()).header("idempotency-key", key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.json(body).send().await.unwrap()
}

async fn post(app: &TestApp, user: &TestUser, path: &str, key: &str, body: &Value) -> Response {
    post_with(app, user, path, key, body, &[]).await
}

/// Status, the headers a replay must repeat, whether it says it is one, and the body.
async fn answer(response: Response) -> (u16, Vec<Option<String>>, bool, Value) {
    let headers = response.headers();
    let kept = ["location", "etag", "content-type", "preference-applied"]
        .iter()
        .map(|name| headers.get(*name).map(|value| value.to_str().unwrap().to_string()))
        .collect();
    let replayed = match headers.get("idempotent-replayed") {
        None => false,
        Some(value) => {
            assert_eq!(value, "true");
            true
        }
    };
    let (status, body) = status_and_json(response).await;
    (status, kept, replayed, body)
}

#[tokio::test]
async fn a_retried_create_replays_the_first_answer_and_creates_one_task() {
    let app = redis_app().await;
    let user = app.register_user().await;
    let body = json!({ "title": "exactly once" });

    let (status, headers, replayed, first) = answer(post(&app, &user, "/tasks", "create-1", &body).await).await;
    assert_eq!(status, 201, "{first}");
    assert!(!replayed, "a first answer is no replay");
    assert_eq!(headers[0].as_deref(), Some(format!("/tasks/{}", first["id"].as_str().unwrap()).as_str()));

    let retry = answer(post(&app, &user, "/tasks", "create-1", &body).await).await;
    assert_eq!(retry, (201, headers, true, first));
    assert_eq!(app.task_rows().await, 1);
}

#[tokio::test]
async fn a_retried_batch_replays_the_first_answer() {
    let app = redis_app().await;
    let user = app.register_user().await;
    let batch = json!({ "operations": [
        { "op": "create", "task": { "title": "one" } },
        { "op": "create", "task": { "title": "two" } },
    ]});

    let (status, headers, replayed, first) = answer(post(&app, &user, "/tasks/batch", "batch-1", &batch).await).await;
    assert_eq!((status, replayed), (200, false), "{first}");
    let retry = answer(post(&app, &user, "/tasks/batch", "batch-1", &batch).await).await;
    assert_eq!(retry, (200, headers, true, first));
    assert_eq!(app.task_rows().await, 2);
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused() {
    let app = redis_app().await;
    let user = app.register_user().await;
    assert_eq!(post(&app, &user, "/tasks", "reused", &json!({ "title": "first" })).await.status(), 201);

    let other_body = post(&app, &user, "/tasks", "reused", &json!({ "title": "second" })).await;
    assert_problem(other_body, 422, "idempotency-key-reused").await;
    let batch = json!({ "operations": [{ "op": "create", "task": { "title": "first" } }] });
    let other_route = post(&app, &user, "/tasks/batch", "reused", &batch).await;
    assert_problem(other_route, 422, "idempotency-key-reused").await;
    assert_eq!(app.task_rows().await, 1);
}

#[tokio::test]
async fn the_same_key_from_two_users_writes_twice() {
    let app = redis_app().await;
    let (alice, bob) = (app.register_user().await, app.register_user().await);
    let body = json!({ "title": "mine" });
    let (alice_status, _, _, alice_task) = answer(post(&app, &alice, "/tasks", "shared", &body).await).await;
    let (bob_status, _, bob_replayed, bob_task) = answer(post(&app, &bob, "/tasks", "shared", &body).await).await;
    assert_eq!((alice_status, bob_status, bob_replayed), (201, 201, false));
    assert_ne!(alice_task["id"], bob_task["id"]);
    assert_eq!(app.task_rows().await, 2);
}

#[tokio::test]
async fn client_errors_are_replayed_and_malformed_keys_refused() {
    let app = redis_app().await;
    let user = app.register_user().await;
    let invalid = json!({ "title": "" });
    let (status, _, replayed, first) = answer(post(&app, &user, "/tasks", "invalid", &invalid).await).await;
    assert_eq!((status, replayed, first["type"].as_str()), (422, false, Some("/problems/validation-failed")));
    let retry = answer(post(&app, &user, "/tasks", "invalid", &invalid).await).await;
    assert_eq!((retry.0, retry.2, &retry.3), (422, true, &first));
    assert_eq!(retry.1[2].as_deref(), Some("application/problem+json"));

    let body = json!({ "title": "never written" });
    for key in ["", "has space", &"k".repeat(256)] {
        assert_problem(post(&app, &user, "/tasks", key, &body).await, 400, "invalid-idempotency-key").await;
    }
    assert_eq!(post(&app, &user, "/tasks", &"k".repeat(255), &body).await.status(), 201);
}

#[tokio::test]
async fn a_server_error_frees_the_key_for_a_retry() {
    let app = TestApp::spawn_with(HostOptions::default().redis().env("STORAGE_PLUGIN", "faulty-store")).await;
    let user = app.register_user().await;
    let body = json!({ "title": "doomed" });
    for attempt in 0..2 {
        let (status, _, replayed, problem) = answer(post(&app, &user, "/tasks", "doomed", &body).await).await;
        assert_eq!((status, replayed), (500, false), "attempt {attempt}: {problem}");
    }
    let runs = app.logs().iter().filter(|line| line.contains("faulty-store refuses after writing")).count();
    assert_eq!(runs, 2, "the retry ran the request again");
}

#[tokio::test]
async fn a_duplicate_of_a_running_request_is_a_conflict() {
    // The store may wait on the table lock below for 30 s instead of 1 s.
    let dir = patient_plugin_dir();
    let app = TestApp::spawn_with(
        HostOptions::default()
            .redis()
            .env("PLUGIN_DIR", dir.to_str().unwrap())
            .env("SQL_STATEMENT_TIMEOUT_MS", "30000"),
    )
    .await;
    let user = app.register_user().await;
    let body = json!({ "title": "slow" });

    // Hold inserts back until the first request is known to be waiting.
    let mut locker = app.db().await;
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE plugin_postgres_store.tasks IN SHARE MODE").execute(&mut locker).await.unwrap();
    let first = tokio::spawn({
        let request = app
            .request(Method::POST, "/tasks")
            .header("authorization", user.bearer())
            .header("idempotency-key", "slow")
            .json(&body);
        async move { answer(request.send().await.unwrap()).await }
    });
    wait_for_a_lock_waiter(&app).await;

    let duplicate = post(&app, &user, "/tasks", "slow", &body).await;
    assert_eq!(duplicate.headers()["retry-after"], "1");
    assert_problem(duplicate, 409, "idempotency-key-in-flight").await;

    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    let (status, headers, replayed, task) = first.await.unwrap();
    assert_eq!((status, replayed), (201, false), "{task}");
    let retry = answer(post(&app, &user, "/tasks", "slow", &body).await).await;
    assert_eq!(retry, (201, headers, true, task));
    assert_eq!(app.task_rows().await, 1);
}

#[tokio::test]
async fn a_retried_async_write_replays_the_same_command() {
    let app = TestApp::spawn_with(HostOptions::default().kafka(&unique_prefix(), &[])).await;
    let user = app.register_user().await;
    let body = json!({ "title": "later, once" });
    let prefer = [("prefer", "respond-async")];

    let (status, headers, replayed, first) =
        answer(post_with(&app, &user, "/tasks", "async-1", &body, &prefer).await).await;
    assert_eq!((status, replayed), (202, false), "{first}");
    let location = headers[0].clone().expect("a command location");
    assert_eq!(headers[3].as_deref(), Some("respond-async"));
    let retry = answer(post_with(&app, &user, "/tasks", "async-1", &body, &prefer).await).await;
    assert_eq!(retry, (202, headers, true, first));

    let deadline = Instant::now() + WAIT;
    loop {
        let response = app.request(Method::GET, &location).header("authorization", user.bearer()).send().await;
        let (_, command) = status_and_json(response.unwrap()).await;
        if command["status"] == "applied" {
            break;
        }
        assert!(Instant::now() < deadline, "command {location} not applied: {command}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.task_rows().await, 1);
}

/// Waits until a statement of `app`'s database waits for a lock.
async fn wait_for_a_lock_waiter(app: &TestApp) {
    let mut db = app.db().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no request waited for the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A copy of the plugin directory whose postgres-store has a 30 s deadline.
fn patient_plugin_dir() -> ScratchDir {
    let source = PathBuf::from(std::env::var("TEST_PLUGIN_DIR").unwrap());
    let dir = ScratchDir::new("patient");
    std::fs::copy(source.join("postgres-store.wasm"), dir.join("postgres-store.wasm")).unwrap();
    let manifest = std::fs::read_to_string(source.join("postgres-store.toml")).unwrap();
    std::fs::write(dir.join("postgres-store.toml"), format!("{manifest}\n[limits]\ndeadline_ms = 30000\n")).unwrap();
    dir
}
