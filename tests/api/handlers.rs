//! Event-handler plugins: each consumes `task-events` in its own group,
//! retries retryable failures with backoff, dead-letters what it cannot
//! handle, and has its effect once per event even when Kafka redelivers.

use std::time::Duration;

use crate::helpers::events::{TopicReader, events_of, path_str, plugin_dir_with, produce_again, unique_prefix};
use crate::helpers::{
    HostOptions, ScratchDir, TestApp, TestUser, create_task, eventually, history, send, status_and_json,
};
use reqwest::Method;
use serde_json::json;
use sqlx::Row;

const WAIT: Duration = Duration::from_secs(30);

async fn create(app: &TestApp, user: &TestUser, title: &str) -> String {
    create_task(app, user, json!({ "title": title })).await["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_audit_log_records_each_change_once_even_when_events_are_delivered_twice() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &["audit-log"])).await;
    let user = app.register_user().await;
    let task_id = create(&app, &user, "audited").await;
    let path = format!("/tasks/{task_id}");
    assert_eq!(send(&app, &user, Method::PATCH, &path, Some(json!({ "status": "done" }))).await.status(), 200);

    let items = eventually("two audit entries", || async {
        let (status, body) = history(&app, &user, &task_id).await;
        (status == 200 && body["items"].as_array().unwrap().len() == 2).then(|| body["items"].clone())
    })
    .await;
    assert_eq!(items[0]["type"], "task.created");
    assert_eq!(items[1]["type"], "task.updated");
    assert_eq!(items[1]["changes"], json!({ "status": { "from": "todo", "to": "done" } }));

    // Kafka redelivers both events; then one more change, on the same
    // partition, marks the point by which the copies were handled.
    let topic = format!("{prefix}task-events");
    let mut reader = TopicReader::new(&topic);
    let records = reader.read_until(WAIT, |records| events_of(records, &task_id).len() >= 2).await.to_vec();
    for record in records.iter().filter(|r| r.key.as_deref() == Some(&task_id)) {
        produce_again(&topic, record).await;
    }
    assert_eq!(send(&app, &user, Method::PATCH, &path, Some(json!({ "title": "sentinel" }))).await.status(), 200);
    let items = eventually("the sentinel's audit entry", || async {
        let (_, body) = history(&app, &user, &task_id).await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        items.iter().any(|item| item["changes"]["title"]["to"] == "sentinel").then_some(items)
    })
    .await;
    assert_eq!(items.len(), 3, "the redelivered events were not recorded again: {items:#?}");

    // Someone else's task's history is not theirs to read.
    let stranger = app.register_user().await;
    assert_eq!(history(&app, &stranger, &task_id).await.0, 404);

    // Deleted, the task takes its history with it, except for admins.
    assert_eq!(send(&app, &user, Method::DELETE, &path, None).await.status(), 204);
    assert_eq!(history(&app, &user, &task_id).await.0, 404);
    let admin = app.create_user("admin").await;
    let items = eventually("the deletion's audit entry", || async {
        let (_, body) = history(&app, &admin, &task_id).await;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        items.iter().any(|item| item["type"] == "task.deleted").then_some(items)
    })
    .await;
    assert_eq!(items.len(), 4);
}

#[tokio::test]
async fn a_readable_task_with_nothing_recorded_has_an_empty_history_and_an_unknown_id_none() {
    // audit-log is loaded (it answers the history) but, without a broker,
    // consumes nothing: nothing is ever recorded.
    let app = TestApp::spawn_with(HostOptions::default().env("EVENT_HANDLERS", "audit-log")).await;
    let user = app.register_user().await;
    let task_id = create(&app, &user, "unaudited").await;
    assert_eq!(history(&app, &user, &task_id).await, (200, json!({ "items": [] })));
    let stranger = app.register_user().await;
    assert_eq!(history(&app, &stranger, &task_id).await.0, 404, "not theirs to see");
    assert_eq!(history(&app, &user, &uuid::Uuid::now_v7().to_string()).await.0, 404);
}

#[tokio::test]
async fn a_retryable_failure_is_retried_until_the_handler_succeeds() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &["flaky-handler"])).await;
    let user = app.register_user().await;
    let response = send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "flaky" }))).await;
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(response.status(), 201);

    let attempts: Vec<i32> = eventually("the flaky handler to succeed", || async {
        let rows = sqlx::query("SELECT attempt FROM plugin_flaky_handler.flaky_handled")
            .fetch_all(&mut app.db().await)
            .await
            .unwrap();
        (!rows.is_empty()).then(|| rows.iter().map(|row| row.get("attempt")).collect())
    })
    .await;
    assert_eq!(attempts, [3], "fails attempts 1 and 2 (fail_attempts = 2), succeeds once at attempt 3");

    // The retries were logged with the request that caused the event.
    let retried: Vec<String> =
        app.logs().into_iter().filter(|line| line.contains("event handler failed; retrying")).collect();
    assert_eq!(retried.len(), 2, "{retried:#?}");
    assert!(retried.iter().all(|line| line.contains(&request_id)), "{retried:#?}");

    let mut dead = TopicReader::new(&format!("{prefix}task-events.dlq"));
    assert!(dead.read_for(Duration::from_secs(1)).await.is_empty(), "nothing was dead-lettered");
}

async fn dead_lettered(failure: &str) -> (crate::helpers::events::Record, String) {
    let manifest = format!(
        "kind = \"event-handler\"\nversion = \"0.1.0\"\n[grants]\nsql = true\n[settings]\nfail_attempts = 1\nfailure = \"{failure}\"\n"
    );
    let dir = plugin_dir_with(&[("doomed-handler", "flaky-handler", &manifest)]);
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(
        HostOptions::default().kafka(&prefix, &["doomed-handler"]).env("PLUGIN_DIR", path_str(&dir)),
    )
    .await;
    let user = app.register_user().await;
    let task_id = create(&app, &user, "doomed").await;

    let mut dead = TopicReader::new(&format!("{prefix}task-events.dlq"));
    let record = dead.read_until(WAIT, |records| !records.is_empty()).await[0].clone();
    assert_eq!(record.key.as_deref(), Some(task_id.as_str()));
    assert_eq!(record.json()["type"], "task.created", "the original event is kept whole");
    assert_eq!(record.headers["dlq-handler"], "doomed-handler");
    assert_eq!(record.headers["dlq-original-topic"], format!("{prefix}task-events"));
    assert!(record.headers["dlq-original-partition"].parse::<i32>().is_ok());
    assert!(record.headers["dlq-original-offset"].parse::<i64>().is_ok());
    (record, task_id)
}

#[tokio::test]
async fn a_failing_event_in_a_batch_is_retried_or_dead_lettered_alone_and_the_others_are_handled_once_in_order() {
    // Both fail only at the event that titles the task "poison": one until
    // its third attempt, the other for good.
    let only_poison = |failure: &str| {
        format!(
            "kind = \"event-handler\"\nversion = \"0.1.0\"\n[grants]\nsql = true\n[settings]\nfail_attempts = 2\nfailure = \"{failure}\"\nonly_title = \"poison\"\n"
        )
    };
    let (retrying, refusing) = (only_poison("retryable"), only_poison("permanent"));
    let dir = plugin_dir_with(&[("retry-one", "flaky-handler", &retrying), ("refuse-one", "flaky-handler", &refusing)]);
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(
        HostOptions::default()
            .kafka(&prefix, &["retry-one", "refuse-one"])
            .env("PLUGIN_DIR", path_str(&dir))
            // The burst's events wait for one another, so they form batches.
            .env("HANDLER_BATCH_LINGER_MS", "1500")
            .env("HANDLER_RETRY_BACKOFF_MS", "50"),
    )
    .await;
    let user = app.register_user().await;
    let task_id = create(&app, &user, "step 0").await;
    let path = format!("/tasks/{task_id}");
    for step in 1..10 {
        let title = if step == 5 { "poison".to_string() } else { format!("step {step}") };
        assert_eq!(send(&app, &user, Method::PATCH, &path, Some(json!({ "title": title }))).await.status(), 200);
    }
    let mut events = TopicReader::new(&format!("{prefix}task-events"));
    let events = events.read_until(WAIT, |records| events_of(records, &task_id).len() >= 10).await;
    let ids: Vec<String> = events_of(events, &task_id).iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    let poison = ids[5].clone();

    let handled = |schema: &'static str| {
        let app = &app;
        async move {
            let rows = sqlx::query(&format!("SELECT event_id, attempt FROM {schema}.flaky_handled ORDER BY seq"))
                .fetch_all(&mut app.db().await)
                .await
                .unwrap();
            rows.iter().map(|row| (row.get::<String, _>("event_id"), row.get::<i32, _>("attempt"))).collect::<Vec<_>>()
        }
    };
    let retried = eventually("retry-one to handle all ten events", || async {
        Some(handled("plugin_retry_one").await).filter(|rows| rows.len() >= 10)
    })
    .await;
    let expected: Vec<(String, i32)> = ids.iter().map(|id| (id.clone(), if *id == poison { 3 } else { 1 })).collect();
    assert_eq!(retried, expected, "each event once, in order; only the poison retried (twice)");

    let mut dead = TopicReader::new(&format!("{prefix}task-events.dlq"));
    let dead = dead.read_until(WAIT, |records| !records.is_empty()).await.to_vec();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0].json()["id"], poison.as_str());
    assert_eq!(dead[0].headers["dlq-handler"], "refuse-one");
    assert_eq!(dead[0].headers["dlq-attempts"], "1", "the batch's call was its only attempt");
    let refused = eventually("refuse-one to handle the nine others", || async {
        Some(handled("plugin_refuse_one").await).filter(|rows| rows.len() >= 9)
    })
    .await;
    let expected: Vec<(String, i32)> = ids.iter().filter(|id| **id != poison).map(|id| (id.clone(), 1)).collect();
    assert_eq!(refused, expected, "the others once each, in order, around the dead letter");

    // The events were handled in batches: some transaction took several.
    let metrics = app.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let of = |series: &str| -> f64 {
        let prefix = format!("{series}{{handler=\"retry-one\"}} ");
        metrics.lines().find_map(|line| line.strip_prefix(&prefix)).map_or(0.0, |value| value.parse().unwrap())
    };
    let (events_in_batches, batches) = (of("event_handler_batch_size_sum"), of("event_handler_batch_size_count"));
    assert_eq!(events_in_batches, 10.0, "{metrics}");
    assert!(batches < events_in_batches, "{batches} transactions for {events_in_batches} events");
    // The poison was handed to refuse-one once: in its batch.
    let refusals: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("plugin_calls_total{") && line.contains("plugin=\"refuse-one\""))
        .filter(|line| line.contains("outcome=\"error\""))
        .collect();
    assert!(matches!(refusals[..], [line] if line.ends_with(" 1")), "{refusals:?}");
}

#[tokio::test]
async fn a_handler_that_always_fails_dead_letters_after_its_attempts() {
    let (record, _) = dead_lettered("always-retryable").await;
    assert_eq!(record.headers["dlq-error-kind"], "retryable");
    assert_eq!(record.headers["dlq-attempts"], "3", "HANDLER_MAX_ATTEMPTS defaults to 3");
    assert!(record.headers["dlq-error"].contains("flaky-handler"), "{:?}", record.headers);
}

#[tokio::test]
async fn a_handler_that_falls_behind_shows_its_lag_in_the_metrics() {
    // Each event costs this handler three attempts, 1 s + 2 s apart.
    let manifest = "kind = \"event-handler\"\nversion = \"0.1.0\"\n[grants]\nsql = true\n[settings]\nfailure = \"always-retryable\"\n";
    let dir = plugin_dir_with(&[("slow-handler", "flaky-handler", manifest)]);
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(
        HostOptions::default()
            .kafka(&prefix, &["slow-handler"])
            .env("PLUGIN_DIR", path_str(&dir))
            .env("HANDLER_RETRY_BACKOFF_MS", "1000"),
    )
    .await;
    let user = app.register_user().await;
    for n in 0..12 {
        create(&app, &user, &format!("backlog {n}")).await;
    }
    let group = format!("group=\"{prefix}todo-host.handler.slow-handler\"");
    let lag = || async {
        let metrics = app.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
        metrics
            .lines()
            .filter(|line| line.starts_with("kafka_consumer_lag{") && line.contains(&group))
            .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    // Statistics come every 5 s; by then each of the 3 partitions has
    // finished at most two events.
    let behind = eventually("the lag to be reported", || async { Some(lag().await).filter(|lag| *lag >= 5.0) }).await;
    assert!(behind <= 12.0, "{behind}");
}

#[tokio::test]
async fn a_permanent_failure_dead_letters_at_once() {
    let (record, _) = dead_lettered("permanent").await;
    assert_eq!(record.headers["dlq-error-kind"], "permanent");
    assert_eq!(record.headers["dlq-attempts"], "1");
}

#[tokio::test]
async fn the_notifier_announces_completion_and_reassignment() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &["notifier"])).await;
    let admin = app.create_user("admin").await;
    let owner = app.register_user().await;
    let heir = app.register_user().await;
    let task_id = create(&app, &owner, "to notify").await;
    let path = format!("/tasks/{task_id}");
    assert_eq!(send(&app, &owner, Method::PATCH, &path, Some(json!({ "status": "done" }))).await.status(), 200);
    let reassign = json!({ "owner_id": heir.id });
    assert_eq!(send(&app, &admin, Method::PATCH, &path, Some(reassign)).await.status(), 200);

    let mut notifications = TopicReader::new(&format!("{prefix}notifications"));
    let records = notifications.read_until(WAIT, |records| records.len() >= 2).await;
    // Keyed by recipient: the two may sit on different partitions.
    let of_kind = |kind: &str| records.iter().find(|r| r.json()["kind"] == kind).expect(kind).clone();
    let completed = &of_kind("task.completed");
    assert_eq!(completed.key.as_deref(), Some(owner.id.to_string().as_str()));
    let body = completed.json();
    assert_eq!((body["kind"].as_str(), body["task_id"].as_str()), (Some("task.completed"), Some(task_id.as_str())));
    assert_eq!(body["title"], "to notify");
    assert!(completed.headers.contains_key("x-request-id"), "{:?}", completed.headers);
    let reassigned = of_kind("task.reassigned").json();
    assert_eq!(reassigned["kind"], "task.reassigned");
    assert_eq!(reassigned["recipient_id"], heir.id.to_string());
}

#[tokio::test]
async fn a_full_reload_starts_the_handlers_dropped_into_the_directory_turned_on_and_stops_removed_ones() {
    // Only the storage plugin to begin with; the handlers are whatever
    // event-handler plugins the directory holds (no EVENT_HANDLERS list).
    let source = std::path::PathBuf::from(std::env::var("TEST_PLUGIN_DIR").unwrap());
    let dir = ScratchDir::new("plugins");
    let copy = |name: &str| {
        for extension in ["toml", "wasm"] {
            std::fs::copy(source.join(format!("{name}.{extension}")), dir.join(format!("{name}.{extension}"))).unwrap();
        }
    };
    copy("postgres-store");
    let app = TestApp::spawn_with(
        HostOptions::default().kafka(&unique_prefix(), &[]).unset("EVENT_HANDLERS").env("PLUGIN_DIR", path_str(&dir)),
    )
    .await;
    let user = app.register_user().await;
    let admin = app.create_user("admin").await;
    let reload = || async {
        let (status, report) =
            status_and_json(send(&app, &admin, Method::POST, "/admin/plugins/reload", None).await).await;
        assert_eq!(status, 200, "{report}");
        report
    };

    // Dropped in turned off: not started until its manifest turns it on.
    copy("audit-log");
    let manifest = dir.join("audit-log.toml");
    let on = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("enabled = false\n{on}")).unwrap();
    let report = reload().await;
    assert_eq!(report["loaded"], json!([]), "{report}");
    std::fs::write(&manifest, on).unwrap();
    let report = reload().await;
    assert_eq!(report["loaded"][0]["name"], "audit-log", "{report}");
    let task_id = create(&app, &user, "seen by the new handler").await;
    eventually("the new handler to record the task", || async {
        let (_, body) = history(&app, &user, &task_id).await;
        (!body["items"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;

    std::fs::remove_file(dir.join("audit-log.toml")).unwrap();
    let report = reload().await;
    assert_eq!(report["removed"], json!(["audit-log"]), "{report}");
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");
    let (_, plugins) = status_and_json(send(&app, &admin, Method::GET, "/admin/plugins", None).await).await;
    assert!(!plugins.to_string().contains("audit-log"), "{plugins}");
    let unseen = create(&app, &user, "after the handler left").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM plugin_audit_log.task_audit WHERE task_id = $1::uuid")
        .bind(&unseen)
        .fetch_one(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(recorded, 0, "the removed handler no longer runs");
}
