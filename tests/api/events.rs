//! Task events: every committed change is announced once on `task-events`
//! as a CloudEvent, through the transactional outbox; nothing is announced
//! for a change that was rolled back.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::helpers::events::{TestBroker, TopicReader, events_of, kafka_brokers, unique_prefix};
use crate::helpers::{HostOptions, TestApp, create_titled, send, send_with_header, status_and_json};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn id(task: &Value) -> String {
    task["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn each_write_is_announced_by_one_cloudevent_in_commit_order() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[])).await;
    let user = app.register_user().await;
    let mut reader = TopicReader::new(&format!("{prefix}task-events"));

    let (task, request_id) = create_titled(&app, &user, "announce me").await;
    let path = format!("/tasks/{}", id(&task));
    let patched =
        send(&app, &user, Method::PATCH, &path, Some(json!({ "status": "done", "title": "announced" }))).await;
    assert_eq!(patched.status(), 200);
    assert_eq!(send(&app, &user, Method::DELETE, &path, None).await.status(), 204);

    let task_id = id(&task);
    let records = reader.read_until(WAIT, |records| events_of(records, &task_id).len() >= 3).await;
    let events = events_of(records, &task_id);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["task.created", "task.updated", "task.deleted"]);
    for event in &events {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "/todo-host/tasks");
        assert_eq!(event["subject"], task_id.as_str());
        assert_eq!(event["data"]["schema_version"], 1);
        assert!(event["id"].as_str().is_some_and(|id| id.len() == 36));
        assert!(chrono::DateTime::parse_from_rfc3339(event["time"].as_str().unwrap()).is_ok());
    }
    assert_eq!(events[0]["data"]["task"]["title"], "announce me");
    assert_eq!(
        events[1]["data"]["changes"],
        json!({ "status": { "from": "todo", "to": "done" }, "title": { "from": "announce me", "to": "announced" } })
    );
    assert_eq!(events[1]["data"]["task"]["version"], 2);
    assert_eq!(events[2]["data"]["task"]["title"], "announced", "a deletion carries the task as it was");

    let created = records.iter().find(|r| r.key.as_deref() == Some(&task_id)).unwrap();
    assert_eq!(created.headers["x-request-id"], request_id, "the request id travels with the event");
    assert_eq!(created.headers["content-type"], "application/cloudevents+json");
    assert!(created.headers["traceparent"].starts_with("00-"));
}

#[tokio::test]
async fn a_batch_announces_each_operation() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[])).await;
    let user = app.register_user().await;
    let (existing, _) = create_titled(&app, &user, "existing").await;
    let batch = json!({ "operations": [
        { "op": "create", "task": { "title": "from a batch" } },
        { "op": "update", "id": existing["id"], "changes": { "priority": "high" } },
    ]});
    let (status, body) = status_and_json(send(&app, &user, Method::POST, "/tasks/batch", Some(batch)).await).await;
    assert_eq!(status, 200, "{body}");
    let new_id = body["results"][0]["id"].as_str().unwrap().to_string();
    let existing_id = id(&existing);

    let mut reader = TopicReader::new(&format!("{prefix}task-events"));
    let records = reader
        .read_until(WAIT, |records| {
            !events_of(records, &new_id).is_empty() && events_of(records, &existing_id).len() >= 2
        })
        .await;
    assert_eq!(events_of(records, &new_id)[0]["type"], "task.created");
    let updated = &events_of(records, &existing_id)[1];
    assert_eq!(updated["type"], "task.updated");
    assert_eq!(updated["data"]["changes"], json!({ "priority": { "from": "medium", "to": "high" } }));
}

#[tokio::test]
async fn rolled_back_writes_announce_nothing() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[])).await;
    let user = app.register_user().await;
    let (task, _) = create_titled(&app, &user, "guarded").await;
    let path = format!("/tasks/{}", id(&task));

    // A stale If-Match and a failing batch: both roll back.
    let stale =
        send_with_header(&app, &user, Method::PATCH, &path, ("if-match", "\"7\""), json!({ "title": "never" })).await;
    assert_eq!(stale.status(), 412);
    let missing = uuid::Uuid::now_v7();
    let batch = json!({ "operations": [
        { "op": "create", "task": { "title": "rolled back" } },
        { "op": "delete", "id": missing },
    ]});
    assert_eq!(send(&app, &user, Method::POST, "/tasks/batch", Some(batch)).await.status(), 404);
    // A sentinel: once its event is read, everything committed before it was.
    let (sentinel, _) = create_titled(&app, &user, "sentinel").await;

    let (guarded_id, sentinel_id) = (id(&task), id(&sentinel));
    let mut reader = TopicReader::new(&format!("{prefix}task-events"));
    reader
        .read_until(WAIT, |records| {
            !events_of(records, &guarded_id).is_empty() && !events_of(records, &sentinel_id).is_empty()
        })
        .await;
    // The tasks' events may sit on different partitions: give any stray
    // event of the rolled-back writes time to show up too.
    let records = reader.read_for(Duration::from_secs(1)).await;
    let mut titles: Vec<String> =
        records.iter().map(|r| r.json()["data"]["task"]["title"].as_str().unwrap().to_string()).collect();
    titles.sort();
    assert_eq!(titles, ["guarded", "sentinel"], "only the committed creations are announced");
}

#[tokio::test]
async fn two_relaying_replicas_publish_every_event_once_and_in_order() {
    let prefix = unique_prefix();
    let first = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[])).await;
    let second = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[]).database(&first.database)).await;
    let user = first.register_user().await;

    // Each task is created on one replica and updated alternately on both,
    // concurrently with the other tasks.
    const TASKS: usize = 12;
    const UPDATES: usize = 4;
    let mut writers = Vec::new();
    for n in 0..TASKS {
        let (apps, user) = ([&first, &second], &user);
        writers.push(async move {
            let (task, _) = create_titled(apps[n % 2], user, &format!("task {n}")).await;
            let path = format!("/tasks/{}", id(&task));
            for update in 0..UPDATES {
                let body = json!({ "title": format!("task {n} v{}", update + 2) });
                assert_eq!(send(apps[(n + update) % 2], user, Method::PATCH, &path, Some(body)).await.status(), 200);
            }
            id(&task)
        });
    }
    // Polled together: the writers interleave on the two replicas.
    let ids = futures::future::join_all(writers).await;

    let expected = TASKS * (1 + UPDATES);
    let mut reader = TopicReader::new(&format!("{prefix}task-events"));
    reader.read_until(WAIT, |records| records.len() >= expected).await;
    let records = reader.read_for(Duration::from_secs(2)).await;
    assert_eq!(records.len(), expected, "no event is published twice");
    let mut seen = BTreeMap::new();
    for record in records {
        *seen.entry(record.json()["id"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&count| count == 1));
    for task_id in ids {
        let versions: Vec<i64> =
            events_of(records, &task_id).iter().map(|e| e["data"]["task"]["version"].as_i64().unwrap()).collect();
        assert_eq!(versions, (1..=1 + UPDATES as i64).collect::<Vec<_>>(), "task {task_id}'s events in commit order");
    }
}

#[tokio::test]
async fn writes_succeed_while_the_broker_is_down_and_their_events_follow_when_it_returns() {
    let mut broker = TestBroker::start().await;
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka_on(&broker.url(), &prefix, &[])).await;
    let user = app.register_user().await;
    let topic = format!("{prefix}task-events");
    let (before, _) = create_titled(&app, &user, "before the outage").await;
    let before_id = id(&before);
    TopicReader::on(&broker.url(), &topic).read_until(WAIT, |records| !events_of(records, &before_id).is_empty()).await;

    broker.stop().await;
    let mut written = Vec::new();
    for n in 0..5 {
        written.push(id(&create_titled(&app, &user, &format!("during the outage {n}")).await.0));
    }
    broker.restart().await;

    // Wait for what the broker acknowledged before it was killed as well:
    // a reader fetches each partition from when that partition's start is
    // resolved, not all at once, so the outage's writes can all be read
    // before the partition holding the first write is.
    let announced: Vec<&String> = written.iter().chain([&before_id]).collect();
    let mut reader = TopicReader::on(&broker.url(), &topic);
    reader
        .read_until(Duration::from_secs(60), |records| announced.iter().all(|id| !events_of(records, id).is_empty()))
        .await;
    let records = reader.read_for(Duration::from_secs(1)).await;
    for task_id in announced {
        assert_eq!(events_of(records, task_id).len(), 1, "task {task_id} announced once");
    }
}

#[tokio::test]
async fn a_broker_that_comes_back_empty_gets_the_topics_again_and_the_host_carries_on() {
    let mut broker = TestBroker::forgetful().await;
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka_on(&broker.url(), &prefix, &["audit-log"])).await;
    let user = app.register_user().await;
    create_titled(&app, &user, "before the broker forgot").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    broker.restart().await;
    let (after, _) = create_titled(&app, &user, "after the broker forgot").await;
    let after_id = id(&after);

    let mut reader = TopicReader::on(&broker.url(), &format!("{prefix}task-events"));
    let records = reader.read_until(Duration::from_secs(60), |records| !events_of(records, &after_id).is_empty()).await;
    assert_eq!(events_of(records, &after_id).len(), 1, "a write after the broker came back empty is announced");
    let live = app.request(Method::GET, "/health/live").send().await.expect("the host is still running");
    assert_eq!(live.status(), 200);
}

#[tokio::test]
async fn partitions_a_silent_member_holds_show_in_health_and_metrics_while_readiness_stays_up() {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &["audit-log"])).await;
    // A member of the audit-log's group that takes its share of the
    // partitions and then consumes nothing — librdkafka keeps it in the
    // group — as a replica the broker still counts after it was killed.
    let group = format!("{prefix}todo-host.handler.audit-log");
    let silent: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", kafka_brokers()).set("group.id", &group).create().unwrap();
    silent.subscribe(&[&format!("{prefix}task-events")]).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while silent.assignment().unwrap().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "the silent member was given no partition");
        let _ = silent.poll(Duration::from_millis(100));
    }
    let user = app.register_user().await;
    for n in 0..12 {
        create_titled(&app, &user, &format!("waits for a silent member {n}")).await;
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let consumers = loop {
        let (_, health) = status_and_json(app.request(Method::GET, "/health").send().await.unwrap()).await;
        if health["checks"]["kafka_consumers"]["status"] == "degraded" {
            break health["checks"]["kafka_consumers"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no stalled partition reported: {health}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(consumers["detail"].as_str().unwrap().contains(&group), "{consumers}");
    let ready = app.request(Method::GET, "/health/ready").send().await.unwrap();
    assert_eq!(ready.status(), 200, "a stalled group does not take this replica out of service");
    let metrics = app.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let stalled = metrics
        .lines()
        .filter(|line| line.starts_with("kafka_partition_stalled_seconds") && line.contains(&group))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .filter(|seconds| *seconds > 0.0)
        .count();
    assert!(stalled > 0, "kafka_partition_stalled_seconds shows the silent member's partitions");
}

#[tokio::test]
async fn a_committed_write_is_published_at_once_not_at_the_next_poll() {
    let prefix = unique_prefix();
    // The poll would come after the test has given up: only the write's own
    // wake-up of the relay can publish in time.
    let options = HostOptions::default().kafka(&prefix, &[]).env("OUTBOX_POLL_MS", "600000");
    let app = TestApp::spawn_with(options).await;
    let user = app.register_user().await;
    let mut reader = TopicReader::new(&format!("{prefix}task-events"));

    for title in ["first", "second"] {
        let (task, _) = create_titled(&app, &user, title).await;
        let task_id = id(&task);
        let records =
            reader.read_until(Duration::from_secs(10), |records| !events_of(records, &task_id).is_empty()).await;
        assert_eq!(events_of(records, &task_id)[0]["type"], "task.created");
    }
}
