//! A failing storage plugin rolls its transaction back: the fixture
//! `faulty-store` inserts a task row and then errors or traps.

use crate::helpers::{HostOptions, ScratchDir, TestApp, TestUser, assert_problem, send, status_and_json};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_plugin_error_after_a_write_leaves_no_row() {
    let app = TestApp::spawn_with(HostOptions::default().env("STORAGE_PLUGIN", "faulty-store")).await;
    let user = app.register_user().await;
    let response = send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "doomed" }))).await;
    let body = assert_problem(response, 500, "internal").await;
    assert!(!body.to_string().contains("faulty-store refuses"), "internal details stay in the log: {body}");
    assert_eq!(app.task_rows().await, 0);
    assert!(app.logs().iter().any(|line| line.contains("faulty-store refuses after writing")));

    let batch = json!({ "operations": [{ "op": "create", "task": { "title": "doomed too" } }] });
    assert_problem(send(&app, &user, Method::POST, "/tasks/batch", Some(batch)).await, 500, "internal").await;
    assert_eq!(app.task_rows().await, 0);
}

#[tokio::test]
async fn a_plugin_trap_after_a_write_leaves_no_row_and_names_the_plugin() {
    let (app, user, _plugins) = spawn_with_trapping_store().await;
    let response = send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "doomed" }))).await;
    let body = assert_problem(response, 500, "plugin-failed").await;
    assert_eq!(body["plugin"], "faulty-store");
    assert!(body["detail"].as_str().unwrap().contains("trapped"), "{body}");
    assert_eq!(app.task_rows().await, 0);

    // The host is unaffected: the next call gets a fresh instance.
    let response = send(&app, &user, Method::GET, "/tasks", None).await;
    assert_eq!(response.status(), 200);
}

/// A host whose storage plugin traps after every write, a user of it, and
/// its plugin directory (kept while the host runs).
async fn spawn_with_trapping_store() -> (TestApp, TestUser, ScratchDir) {
    let dir = tempdir_with_trapping_fixture();
    let app = TestApp::spawn_with(
        HostOptions::default().env("STORAGE_PLUGIN", "faulty-store").env("PLUGIN_DIR", dir.to_str().unwrap()),
    )
    .await;
    let user = app.register_user().await;
    (app, user, dir)
}

/// A copy of the fixture with `failure = "trap"`.
fn tempdir_with_trapping_fixture() -> ScratchDir {
    let source = std::path::PathBuf::from(std::env::var("TEST_PLUGIN_DIR").unwrap());
    let dir = ScratchDir::new("trap");
    std::fs::copy(source.join("faulty-store.wasm"), dir.join("faulty-store.wasm")).unwrap();
    let migrations = dir.join("faulty-store.migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    for entry in std::fs::read_dir(source.join("faulty-store.migrations")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, migrations.join(path.file_name().unwrap())).unwrap();
    }
    let manifest = std::fs::read_to_string(source.join("faulty-store.toml")).unwrap();
    std::fs::write(dir.join("faulty-store.toml"), manifest.replace("failure = \"error\"", "failure = \"trap\""))
        .unwrap();
    dir
}

/// A storage plugin whose circuit opened cannot serve: the replica says so,
/// and a load balancer sends the traffic elsewhere.
#[tokio::test]
async fn readiness_fails_while_the_storage_plugins_circuit_is_open() {
    let (app, user, _plugins) = spawn_with_trapping_store().await;
    let ready = async || status_and_json(app.request(Method::GET, "/health/ready").send().await.unwrap()).await;
    assert_eq!(ready().await.0, 200);
    // The circuit's threshold: 5 consecutive traps.
    for _ in 0..5 {
        let response = send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "doomed" }))).await;
        assert_problem(response, 500, "plugin-failed").await;
    }
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    let storage = &body["checks"]["storage_plugin"];
    assert_eq!(storage["status"], "down", "{body}");
    assert!(storage["detail"].as_str().unwrap().contains("circuit is open"), "{body}");
    let metrics = app.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"plugin_circuit_open{plugin="faulty-store"} 1"#), "{metrics}");
}
