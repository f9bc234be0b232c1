//! Plugins in Python (componentize-py) and JavaScript (componentize-js):
//! they import every interface of their world, so an interface the
//! manifest does not grant is linked to a stand-in that answers "not
//! granted"; and they get a minimal WASI — an empty environment, clocks,
//! random, stdout/stderr into the host's log — with no files or sockets.
//! The templates of plugins/templates/ are installed under their own names
//! (`scripts/build-plugins --fixtures`), with `probe-py`, a Python fixture.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::events::{TopicReader, events_of, path_str, plugin_dir_with, produce_again, unique_prefix};
use crate::helpers::{HostOptions, TestApp, TestUser, create_titled, eventually, send, status_and_json};

const WAIT: Duration = Duration::from_secs(60);

async fn create(app: &TestApp, user: &TestUser, title: &str) -> (String, String) {
    let (task, request_id) = create_titled(app, user, title).await;
    (task["id"].as_str().unwrap().to_string(), request_id)
}

/// Produces the first event of `task_id` again on `task-events`, as a
/// broker redelivering it would.
async fn redeliver_first_event_of(prefix: &str, task_id: &str) {
    let topic = format!("{prefix}task-events");
    let mut events = TopicReader::new(&topic);
    let records = events.read_until(WAIT, |records| !events_of(records, task_id).is_empty()).await;
    let record = records.iter().find(|record| record.key.as_deref() == Some(task_id)).unwrap().clone();
    produce_again(&topic, &record).await;
}

/// A copy of a template publishing to `topic` (granted `granted`).
fn summaries(template: &str, topic: &str, granted: &str) -> String {
    format!(
        "kind = \"event-handler\"\nversion = \"1\"\n[grants]\npublish = [\"{granted}\"]\n\
         [limits]\nmemory_mib = 128\n[settings]\ntopic = \"{topic}\"\n# a copy of {template}\n"
    )
}

#[tokio::test]
async fn python_and_javascript_handlers_handle_events_in_order_and_publish_only_to_granted_topics() {
    let dir = plugin_dir_with(&[
        ("py-summaries", "event-handler-python", &summaries("python", "py-summaries", "py-summaries")),
        ("js-summaries", "event-handler-js", &summaries("js", "js-summaries", "js-summaries")),
        ("js-trespasser", "event-handler-js", &summaries("js", "not-granted", "js-summaries")),
    ]);
    let prefix = unique_prefix();
    let handlers = ["py-summaries", "js-summaries", "js-trespasser"];
    let app =
        TestApp::spawn_with(HostOptions::default().kafka(&prefix, &handlers).env("PLUGIN_DIR", path_str(&dir))).await;
    let user = app.register_user().await;
    let (task_id, _) = create(&app, &user, "polyglot").await;
    let path = format!("/tasks/{task_id}");
    for status in ["in_progress", "done"] {
        assert_eq!(send(&app, &user, Method::PATCH, &path, Some(json!({ "status": status }))).await.status(), 200);
    }

    let expected = ["task.created", "task.updated", "task.updated"];
    for topic in ["py-summaries", "js-summaries"] {
        let mut reader = TopicReader::new(&format!("{prefix}{topic}"));
        let records = reader.read_until(WAIT, |records| events_of(records, &task_id).len() >= 3).await;
        let types: Vec<Value> = events_of(records, &task_id).iter().map(|summary| summary["type"].clone()).collect();
        assert_eq!(types, expected.map(Value::from), "{topic}: one summary per event, in order");
    }
    // The trespasser's publish is refused: each event is dead-lettered.
    let mut dead = TopicReader::new(&format!("{prefix}task-events.dlq"));
    let records = dead.read_until(WAIT, |records| records.len() >= 3).await;
    assert!(records.iter().all(|record| record.headers["dlq-handler"] == "js-trespasser"), "{records:#?}");
    assert!(records[0].headers["dlq-error"].contains("not-granted"), "{:?}", records[0].headers);
    assert!(records.iter().all(|record| record.headers["dlq-error-kind"] == "permanent"));
}

#[tokio::test]
async fn search_documents_keeps_each_tasks_document_in_step_and_once_per_change() {
    // Shipped turned off (enabled = false): naming it starts it.
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &["search-documents"])).await;
    let user = app.register_user().await;
    let (task_id, _) = create(&app, &user, "Write the report").await;
    let path = format!("/tasks/{task_id}");
    assert_eq!(send(&app, &user, Method::PATCH, &path, Some(json!({ "status": "done" }))).await.status(), 200);
    assert_eq!(send(&app, &user, Method::DELETE, &path, None).await.status(), 204);

    let mut documents = TopicReader::new(&format!("{prefix}task-documents"));
    let records = documents.read_until(WAIT, |records| events_of(records, &task_id).len() >= 3).await;
    let seen: Vec<(Value, Value, Value, Value)> = events_of(records, &task_id)
        .into_iter()
        .map(|document| {
            (
                document["version"].clone(),
                document["status"].clone(),
                document["deleted"].clone(),
                document["title"].clone(),
            )
        })
        .collect();
    let title = Value::from("Write the report");
    assert_eq!(
        seen,
        [
            (json!(1), json!("todo"), json!(false), title.clone()),
            (json!(2), json!("done"), json!(false), title.clone()),
            (json!(2), json!("done"), json!(true), title),
        ],
        "one document per change, in order, keyed by the task"
    );
    assert_eq!(events_of(records, &task_id)[0]["owner_id"], user.id.to_string());

    // A redelivered event is not turned into a document again.
    redeliver_first_event_of(&prefix, &task_id).await;
    let (later, _) = create(&app, &user, "after the redelivery").await;
    documents.read_until(WAIT, |records| !events_of(records, &later).is_empty()).await;
    // The two tasks' events may sit on different partitions, handled in
    // either order: give a document of the redelivery time to show up too.
    let records = documents.read_for(Duration::from_secs(1)).await;
    assert_eq!(events_of(records, &task_id).len(), 3, "the redelivered event was skipped");
}

#[tokio::test]
async fn a_python_handler_retries_is_deduplicated_by_the_ledger_and_sees_no_host() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &["probe-py"])).await;
    let user = app.register_user().await;
    let mut results = TopicReader::new(&format!("{prefix}probe-results"));

    // Retries: attempts 1 and 2 fail, the third publishes.
    let (retried, _) = create(&app, &user, "retry 3").await;
    let records = results.read_until(WAIT, |records| !events_of(records, &retried).is_empty()).await;
    assert_eq!(events_of(records, &retried)[0]["attempt"], 3);

    // The ledger: a redelivered event is not handled again.
    redeliver_first_event_of(&prefix, &retried).await;
    let (later, _) = create(&app, &user, "after the redelivery").await;
    let records = results.read_until(WAIT, |records| !events_of(records, &later).is_empty()).await;
    assert_eq!(events_of(records, &retried).len(), 1, "the redelivered event was skipped");

    // The sandbox, as the plugin sees it.
    let (_, request_id) = create(&app, &user, "probe").await;
    let probed = |what: &'static str| {
        let app = &app;
        async move { app.logs().into_iter().find(|line| line.contains("probe-py") && line.contains(what)) }
    };
    let environment = eventually("the probe's report", || probed("environment:")).await;
    assert!(environment.contains("environment: []"), "an empty environment: {environment}");
    for (what, expected) in [("file:", "FileNotFoundError"), ("socket:", "Error"), ("sql:", "not granted")] {
        let line = probed(what).await.unwrap_or_else(|| panic!("no {what} line"));
        assert!(line.contains(expected) && !line.contains("connected") && !line.contains("read "), "{line}");
    }
    let stdout = eventually("its stdout", || probed("probe-py writes to stdout")).await;
    assert!(stdout.contains("\"stream\":\"stdout\"") && stdout.contains(&request_id), "{stdout}");
    assert!(!app.logs().iter().any(|line| line.contains("probe-py") && line.contains(crate::helpers::JWT_SECRET)));

    // A crash is a trap whose traceback reaches the log; then it is retried.
    let (_, request_id) = create(&app, &user, "crash").await;
    let traceback = eventually("the traceback", || probed("probe-py crashes on purpose")).await;
    assert!(traceback.contains("\"stream\":\"stderr\"") && traceback.contains(&request_id), "{traceback}");
}

#[tokio::test]
async fn a_rust_plugin_importing_an_ungranted_interface_loads_and_cannot_use_it() {
    // hostile-store imports `sql` and `kv`; this copy is granted neither.
    let manifest = "kind = \"storage\"\nversion = \"1\"\n[limits]\ndeadline_ms = 300\n";
    let dir = plugin_dir_with(&[("ungranted-store", "hostile-store", manifest)]);
    let app = TestApp::spawn_with(
        HostOptions::default().env("PLUGIN_DIR", path_str(&dir)).env("STORAGE_PLUGIN", "ungranted-store"),
    )
    .await;
    let user = app.register_user().await;
    let title = json!({ "title": "sql:SELECT email FROM public.users" });
    let (status, body) = status_and_json(send(&app, &user, Method::POST, "/tasks", Some(title)).await).await;
    assert_eq!(status, 422, "{body}");
    let detail = body["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("42501") && detail.contains("`sql` is not granted"), "{detail}");
    let (status, body) =
        status_and_json(send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "kv-peek:x" }))).await).await;
    assert_eq!(status, 500, "`kv` answers not granted, which the fixture reports as internal: {body}");
}
