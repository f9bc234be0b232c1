//! The sandbox: a hostile storage plugin (`hostile-store`, which misbehaves
//! as a created task's title says) costs only the request that triggered
//! it; its circuit opens after repeated traps; `kv` confines it to its own
//! keys; an event handler cannot publish to a topic it was not granted.

use std::time::{Duration, Instant};

use crate::helpers::events::{TopicReader, path_str, plugin_dir_with, redis_url, unique_prefix};
use crate::helpers::{HostOptions, TestApp, TestUser, assert_problem, send, status_and_json};
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::{Value, json};

async fn hostile_app() -> TestApp {
    TestApp::spawn_with(HostOptions::default().redis().env("STORAGE_PLUGIN", "hostile-store")).await
}

async fn create(app: &TestApp, user: &TestUser, title: &str) -> reqwest::Response {
    send(app, user, Method::POST, "/tasks", Some(json!({ "title": title }))).await
}

async fn created(app: &TestApp, user: &TestUser, title: &str) -> Value {
    let (status, body) = status_and_json(create(app, user, title).await).await;
    assert_eq!(status, 201, "{title}: {body}");
    body
}

#[tokio::test]
async fn each_attack_costs_only_its_own_request_with_a_problem_naming_the_plugin() {
    let app = hostile_app().await;
    let user = app.register_user().await;
    let attacks = [
        ("loop", 504, "plugin-timeout", "did not finish within its 300 ms deadline"),
        ("memory-bomb", 500, "plugin-failed", "exceeded its memory limit of 16 MiB"),
        ("stack-overflow", 500, "plugin-failed", "stack overflow"),
        ("panic", 500, "plugin-failed", "a Rust guest panicked"),
    ];
    for (attack, status, slug, detail) in attacks {
        // Well-behaved requests run alongside the attack and are unaffected.
        let bystanders = async {
            let started = Instant::now();
            for n in 0..5 {
                created(&app, &user, &format!("bystander {n} of {attack}")).await;
            }
            started.elapsed()
        };
        let (problem, bystanders_took) =
            tokio::join!(async { assert_problem(create(&app, &user, attack).await, status, slug).await }, bystanders);
        assert_eq!(problem["plugin"], "hostile-store", "{attack}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(detail), "{attack}: {problem}");
        assert!(bystanders_took < Duration::from_secs(2), "{attack}: bystanders took {bystanders_took:?}");
    }
    let (status, health) = status_and_json(app.request(Method::GET, "/health").send().await.unwrap()).await;
    assert_eq!(status, 200, "the host is unharmed: {health}");
    assert!(app.logs().iter().any(|line| line.contains("plugin call failed") && line.contains("stack overflow")));
    // The panic's own message reached the log, from the plugin's stderr.
    assert!(
        app.logs().iter().any(|line| line.contains("hostile-store panics on purpose")
            && line.contains("\"plugin\":\"hostile-store\"")
            && line.contains("\"stream\":\"stderr\"")),
        "{:#?}",
        app.logs()
    );
}

#[tokio::test]
async fn a_plugin_sees_no_environment_and_opens_no_file() {
    let app = hostile_app().await;
    let user = app.register_user().await;
    assert_eq!(created(&app, &user, "read-env").await["description"], "Err(NotPresent)", "no DATABASE_URL");
    let file = created(&app, &user, "read-file").await;
    assert!(file["description"].as_str().unwrap().starts_with("Err("), "no file: {file}");
}

#[tokio::test]
async fn repeated_traps_open_the_circuit_until_the_plugin_is_reloaded() {
    let app = hostile_app().await;
    let user = app.register_user().await;
    let admin = app.create_user("admin").await;
    // The fixture's manifest: circuit_traps = 3, a one-minute cool-down.
    for _ in 0..3 {
        assert_problem(create(&app, &user, "panic").await, 500, "plugin-failed").await;
    }
    let started = Instant::now();
    let refused = create(&app, &user, "harmless").await;
    assert!(started.elapsed() < Duration::from_millis(200), "refused at once");
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let problem = assert_problem(refused, 503, "plugin-circuit-open").await;
    assert_eq!(problem["plugin"], "hostile-store");

    let (_, plugins) = status_and_json(send(&app, &admin, Method::GET, "/admin/plugins", None).await).await;
    let store = plugins.as_array().unwrap().iter().find(|p| p["name"] == "hostile-store").unwrap().clone();
    assert_eq!((&store["state"], &store["traps"]), (&json!("circuit-open"), &json!(3)), "{store}");

    let (status, report) =
        status_and_json(send(&app, &admin, Method::POST, "/admin/plugins/reload?name=hostile-store", None).await).await;
    assert_eq!(status, 200, "{report}");
    created(&app, &user, "harmless").await;
}

#[tokio::test]
async fn kv_keys_are_confined_to_the_plugin_that_wrote_them() {
    let app = hostile_app().await;
    let user = app.register_user().await;
    let mut redis = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let secret = format!("task:{}", uuid::Uuid::new_v4());
    let _: () = redis.set(format!("plugin-kv:kv-store:{secret}"), "another plugin's task").await.unwrap();
    let _: () = redis.set(&secret, "a host key").await.unwrap();

    for key in [format!("kv-store:{secret}"), format!("../kv-store:{secret}"), secret.clone()] {
        let body = created(&app, &user, &format!("kv-peek:{key}")).await;
        assert_eq!(body["description"], "<none>", "{key}: {body}");
    }
    let own = format!("own-{}", uuid::Uuid::new_v4().simple());
    created(&app, &user, &format!("kv-put:{own}=hello")).await;
    let stored: Option<String> = redis.get(format!("plugin-kv:hostile-store:{own}")).await.unwrap();
    assert_eq!(stored.as_deref(), Some("hello"), "written under the plugin's own prefix");
    assert_eq!(created(&app, &user, &format!("kv-peek:{own}")).await["description"], "hello");
}

#[tokio::test]
async fn publishing_to_a_topic_not_granted_is_refused_and_dead_lettered() {
    let manifest = "kind = \"event-handler\"\nversion = \"0.1.0\"\n[grants]\npublish = [\"digests\"]\n";
    let dir = plugin_dir_with(&[("nosy-notifier", "notifier", manifest)]);
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(
        HostOptions::default().kafka(&prefix, &["nosy-notifier"]).env("PLUGIN_DIR", path_str(&dir)),
    )
    .await;
    let user = app.register_user().await;
    let task = crate::helpers::create_task(&app, &user, json!({ "title": "to be completed" })).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());
    let (status, body) =
        status_and_json(send(&app, &user, Method::PATCH, &path, Some(json!({ "status": "done" }))).await).await;
    assert_eq!(status, 200, "{body}");

    let mut dead = TopicReader::new(&format!("{prefix}task-events.dlq"));
    let record = dead.read_until(Duration::from_secs(30), |records| !records.is_empty()).await[0].clone();
    assert_eq!(record.headers["dlq-handler"], "nosy-notifier");
    assert_eq!(record.headers["dlq-error-kind"], "permanent");
    let error = &record.headers["dlq-error"];
    assert!(error.contains("does not grant publishing to `notifications`"), "{error}");
    let mut notifications = TopicReader::new(&format!("{prefix}notifications"));
    assert!(notifications.read_for(Duration::from_secs(1)).await.is_empty(), "nothing reached the topic");
}
