//! `/admin/dead-letters`: what the event handlers gave up on, listed and
//! replayed through the handler's ledger.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::events::{TopicReader, path_str, plugin_dir_with, unique_prefix};
use crate::helpers::{
    HostOptions, ScratchDir, TestApp, TestUser, assert_problem, create_titled, eventually, send, status_and_json,
};

const HANDLER: &str = "second-try";

/// A host whose `second-try` handler fails each event's first two attempts
/// and gives up after two: every event is dead-lettered, and its replay (the
/// third attempt) succeeds.
async fn host_dead_lettering_everything() -> (TestApp, String, ScratchDir) {
    let manifest =
        "kind = \"event-handler\"\nversion = \"0.1.0\"\n[grants]\nsql = true\n[settings]\nfail_attempts = 2\n";
    let dir = plugin_dir_with(&[(HANDLER, "flaky-handler", manifest)]);
    let prefix = unique_prefix();
    let options = HostOptions::default()
        .kafka(&prefix, &[HANDLER])
        .env("PLUGIN_DIR", path_str(&dir))
        .env("HANDLER_MAX_ATTEMPTS", "2");
    (TestApp::spawn_with(options).await, prefix, dir)
}

async fn list(app: &TestApp, admin: &TestUser, query: &str) -> Value {
    let (status, body) =
        status_and_json(send(app, admin, Method::GET, &format!("/admin/dead-letters{query}"), None).await).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The attempts that handled each event, by event id.
async fn handled(app: &TestApp) -> Vec<(String, i32)> {
    let rows = sqlx::query("SELECT event_id, attempt FROM plugin_second_try.flaky_handled ORDER BY seq")
        .fetch_all(&mut app.db().await)
        .await
        .unwrap();
    rows.iter().map(|row| (row.get("event_id"), row.get("attempt"))).collect()
}

#[tokio::test]
async fn an_admin_lists_a_dead_letter_replays_it_once_and_a_second_replay_applies_nothing() {
    let (app, prefix, _dir) = host_dead_lettering_everything().await;
    let admin = app.create_user("admin").await;
    let user = app.register_user().await;
    let (task, _) = create_titled(&app, &user, "doomed at first").await;

    let page = eventually("the event to be dead-lettered", || async {
        let page = list(&app, &admin, &format!("?handler={HANDLER}")).await;
        (!page["items"].as_array().unwrap().is_empty()).then_some(page)
    })
    .await;
    let letter = &page["items"][0];
    assert_eq!(letter["handler"], HANDLER);
    assert_eq!(letter["subject"], task["id"]);
    assert_eq!(letter["event_type"], "task.created");
    assert_eq!(letter["attempts"], 2);
    assert_eq!(letter["error_kind"], "retryable");
    assert!(letter["error"].as_str().unwrap().contains("fails attempt 2"), "{letter}");
    assert_eq!(letter["status"], "pending");
    assert_eq!(letter["event"]["data"]["task"]["title"], "doomed at first", "the event is kept whole");
    assert_eq!(letter["original"]["topic"], format!("{prefix}task-events"));
    let mut dlq = TopicReader::new(&format!("{prefix}task-events.dlq"));
    let records = dlq.read_until(Duration::from_secs(60), |records| !records.is_empty()).await;
    assert_eq!(records[0].headers["dlq-handler"], HANDLER, "the dead-letter topic has it too");
    assert!(handled(&app).await.is_empty());

    let path = format!("/admin/dead-letters/{}/replay", letter["id"].as_str().unwrap());
    assert_problem(send(&app, &user, Method::POST, &path, None).await, 403, "forbidden").await;
    let (status, replay) = status_and_json(send(&app, &admin, Method::POST, &path, None).await).await;
    assert_eq!((status, &replay["outcome"]), (200, &json!("handled")), "{replay}");
    let event_id = letter["event_id"].as_str().unwrap().to_string();
    assert_eq!(handled(&app).await, [(event_id.clone(), 3)], "handled by the replay, its third attempt");

    let (_, again) = status_and_json(send(&app, &admin, Method::POST, &path, None).await).await;
    assert_eq!(again["outcome"], "already-handled", "{again}");
    assert_eq!(handled(&app).await, [(event_id, 3)], "not applied twice");

    assert_eq!(list(&app, &admin, "").await["items"], json!([]), "nothing pending any more");
    let replayed = list(&app, &admin, "?status=replayed").await;
    assert_eq!(replayed["items"][0]["status"], "replayed");
    assert_eq!(replayed["items"][0]["replay_outcome"], "handled");
    assert!(replayed["items"][0]["replayed_at"].is_string());

    let unknown = format!("/admin/dead-letters/{}/replay", uuid::Uuid::now_v7());
    assert_problem(send(&app, &admin, Method::POST, &unknown, None).await, 404, "not-found").await;
    assert_problem(send(&app, &user, Method::GET, "/admin/dead-letters", None).await, 403, "forbidden").await;
    let bad = send(&app, &admin, Method::GET, "/admin/dead-letters?status=lost", None).await;
    assert_problem(bad, 400, "invalid-query").await;
}

#[tokio::test]
async fn a_bulk_replay_handles_a_handlers_pending_dead_letters_in_pages() {
    let (app, _, _dir) = host_dead_lettering_everything().await;
    let admin = app.create_user("admin").await;
    let user = app.register_user().await;
    for title in ["one", "two", "three"] {
        create_titled(&app, &user, title).await;
    }
    eventually("three dead letters", || async {
        let page = list(&app, &admin, "").await;
        (page["items"].as_array().unwrap().len() == 3).then_some(())
    })
    .await;

    let first = list(&app, &admin, "?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = list(&app, &admin, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_cursor"], Value::Null);

    let unknown = send(&app, &admin, Method::POST, "/admin/dead-letters/replay", Some(json!({ "handler": "nope" })));
    assert_problem(unknown.await, 409, "handler-not-in-service").await;
    let bulk = send(&app, &admin, Method::POST, "/admin/dead-letters/replay", Some(json!({ "handler": HANDLER })));
    let (status, summary) = status_and_json(bulk.await).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary, json!({ "handled": 3, "already_handled": 0, "failed": 0 }));
    assert_eq!(handled(&app).await.len(), 3);
    assert_eq!(list(&app, &admin, "").await["items"], json!([]));
}
