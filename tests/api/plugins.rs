//! The plugin admin API: hot reload while requests run, failed loads that
//! leave the serving version in place, rollback, and both reaching every
//! replica.
//!
//! Two versions of the storage plugin whose answers differ: the real
//! `postgres-store`, and the `faulty-store` fixture installed under the
//! name `postgres-store` (its listings are always empty).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::helpers::events::{path_str, plugin_dir_with};
use crate::helpers::{
    HostOptions, ScratchDir, TestApp, TestUser, assert_problem, create_task, eventually, send, status_and_json,
};
use reqwest::Method;
use serde_json::{Value, json};

const STORE_MANIFEST: &str = "kind = \"storage\"\nversion = \"0.1.0\"\n[grants]\nsql = true\n";
const EMPTY_STORE_MANIFEST: &str =
    "kind = \"storage\"\nversion = \"0.2.0-empty\"\n[grants]\nsql = true\n[settings]\nfailure = \"error\"\n";

struct Versions {
    dir: ScratchDir,
}

impl Versions {
    /// A plugin directory that can be switched between both versions.
    fn new() -> Self {
        let dir = plugin_dir_with(&[
            ("store-v1", "postgres-store", STORE_MANIFEST),
            ("store-v2", "faulty-store", EMPTY_STORE_MANIFEST),
        ]);
        Self { dir }
    }

    fn install(&self, version: &str) {
        self.install_files(
            &self.dir.join(format!("{version}.wasm")),
            &std::fs::read_to_string(self.dir.join(format!("{version}.toml"))).unwrap(),
        );
    }

    fn install_files(&self, wasm: &Path, manifest: &str) {
        // Manifest and module are replaced by renames, as an operator's
        // `cp` + `mv` would: a reload never sees half a file.
        let staged = self.dir.join("staged.wasm");
        std::fs::copy(wasm, &staged).unwrap();
        std::fs::rename(&staged, self.dir.join("postgres-store.wasm")).unwrap();
        std::fs::write(self.dir.join("staged.toml"), manifest).unwrap();
        std::fs::rename(self.dir.join("staged.toml"), self.dir.join("postgres-store.toml")).unwrap();
    }

    fn options(&self) -> HostOptions {
        HostOptions::default().env("PLUGIN_DIR", path_str(&self.dir))
    }
}

async fn reload(app: &TestApp, admin: &TestUser, query: &str) -> Value {
    let (status, body) =
        status_and_json(send(app, admin, Method::POST, &format!("/admin/plugins/reload{query}"), None).await).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn storage_status(app: &TestApp, admin: &TestUser) -> Value {
    let (status, body) = status_and_json(send(app, admin, Method::GET, "/admin/plugins", None).await).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().iter().find(|plugin| plugin["kind"] == "storage").unwrap().clone()
}

async fn listed(app: &TestApp, user: &TestUser) -> usize {
    let (status, body) = status_and_json(send(app, user, Method::GET, "/tasks", None).await).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn only_admins_see_and_reload_plugins_and_the_list_counts_calls() {
    let versions = Versions::new();
    let app = TestApp::spawn_with(versions.options()).await;
    let user = app.register_user().await;
    let admin = app.create_user("admin").await;
    for (method, path) in [(Method::GET, "/admin/plugins"), (Method::POST, "/admin/plugins/reload")] {
        assert_problem(send(&app, &user, method, path, None).await, 403, "forbidden").await;
    }
    create_task(&app, &user, json!({ "title": "counted" })).await;
    let storage = storage_status(&app, &admin).await;
    assert_eq!(storage["name"], "postgres-store");
    assert_eq!(storage["state"], "serving");
    assert_eq!(storage["sha256"].as_str().unwrap().len(), 64);
    assert!(storage["calls"].as_u64().unwrap() >= 1, "{storage}");
    assert!(storage["p99_ms"].as_f64().is_some(), "{storage}");

    let body = reload(&app, &admin, "").await;
    assert!(body["loaded"].as_array().unwrap().is_empty(), "nothing changed: {body}");
    assert!(body["unchanged"].as_array().unwrap().contains(&json!("postgres-store")), "{body}");
    assert_problem(send(&app, &admin, Method::POST, "/admin/plugins/reload?name=nope", None).await, 404, "not-found")
        .await;
}

#[tokio::test]
async fn requests_all_succeed_while_the_storage_plugin_is_reloaded_twenty_times() {
    let versions = Versions::new();
    let app = Arc::new(TestApp::spawn_with(versions.options()).await);
    let user = Arc::new(app.register_user().await);
    let admin = app.create_user("admin").await;
    create_task(&app, &user, json!({ "title": "visible in v1 only" })).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (saw_v1, saw_v2, requests) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (app, user, stop) = (app.clone(), user.clone(), stop.clone());
            let (saw_v1, saw_v2, requests) = (saw_v1.clone(), saw_v2.clone(), requests.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    // `listed` asserts a 200 for every request.
                    match listed(&app, &user).await {
                        0 => saw_v2.fetch_add(1, Ordering::Relaxed),
                        _ => saw_v1.fetch_add(1, Ordering::Relaxed),
                    };
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    for round in 0..20 {
        let version = if round % 2 == 0 { "store-v2" } else { "store-v1" };
        versions.install(version);
        let body = reload(&app, &admin, "?name=postgres-store").await;
        assert_eq!(body["loaded"].as_array().unwrap().len(), 1, "round {round}: {body}");
        let expected = if version == "store-v2" { 0 } else { 1 };
        assert_eq!(listed(&app, &user).await, expected, "round {round}: the new version answers at once");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("every request of the client loop succeeded");
    }
    assert!(saw_v1.load(Ordering::Relaxed) > 0 && saw_v2.load(Ordering::Relaxed) > 0);
    assert!(requests.load(Ordering::Relaxed) >= 100, "{} requests", requests.load(Ordering::Relaxed));
}

#[tokio::test]
async fn a_plugin_that_fails_to_load_leaves_the_serving_version_in_place() {
    let versions = Versions::new();
    let app = TestApp::spawn_with(versions.options()).await;
    let user = app.register_user().await;
    let admin = app.create_user("admin").await;
    create_task(&app, &user, json!({ "title": "still served" })).await;
    let serving = storage_status(&app, &admin).await["sha256"].clone();

    let corrupt = versions.dir.join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm this is not a component").unwrap();
    let handler = versions.dir.join("audit-log.wasm");
    let v1 = versions.dir.join("store-v1.wasm");
    let wrong_sha =
        format!("kind = \"storage\"\nversion = \"0.3.0\"\nsha256 = \"{}\"\n[grants]\nsql = true\n", "0".repeat(64));
    let cases = [
        ("a corrupt module", &corrupt, STORE_MANIFEST.to_string(), "cannot compile"),
        ("a SHA-256 mismatch", &v1, wrong_sha, "but its manifest requires"),
        ("another world", &handler, STORE_MANIFEST.to_string(), "is not a storage plugin"),
    ];
    for (case, wasm, manifest, reason) in cases {
        versions.install_files(wasm, &manifest);
        let body = reload(&app, &admin, "?name=postgres-store").await;
        let failed = body["failed"].as_array().unwrap();
        assert_eq!(failed.len(), 1, "{case}: {body}");
        assert_eq!(failed[0]["name"], "postgres-store");
        assert!(failed[0]["reason"].as_str().unwrap().contains(reason), "{case}: {body}");
        assert_eq!(listed(&app, &user).await, 1, "{case}: the serving version still answers");
        let storage = storage_status(&app, &admin).await;
        assert_eq!((&storage["state"], &storage["sha256"]), (&json!("reload-failed"), &serving), "{case}: {storage}");
    }

    versions.install("store-v1");
    let body = reload(&app, &admin, "?name=postgres-store").await;
    assert_eq!(body["loaded"][0]["name"], "postgres-store", "{body}");
    assert_eq!(storage_status(&app, &admin).await["state"], "serving");
}

#[tokio::test]
async fn rollback_returns_to_the_previous_version() {
    let versions = Versions::new();
    let app = TestApp::spawn_with(versions.options()).await;
    let user = app.register_user().await;
    let admin = app.create_user("admin").await;
    create_task(&app, &user, json!({ "title": "back again" })).await;
    let rollback = || send(&app, &admin, Method::POST, "/admin/plugins/postgres-store/rollback", None);
    assert_problem(rollback().await, 409, "no-previous-version").await;

    versions.install("store-v2");
    assert_eq!(reload(&app, &admin, "").await["loaded"][0]["version"], "0.2.0-empty");
    assert_eq!(listed(&app, &user).await, 0);
    assert_eq!(storage_status(&app, &admin).await["previous"][0]["version"], "0.1.0");

    let (status, body) = status_and_json(rollback().await).await;
    assert_eq!((status, &body["version"]), (200, &json!("0.1.0")), "{body}");
    assert_eq!(listed(&app, &user).await, 1, "the first version serves again");
    assert_problem(rollback().await, 409, "no-previous-version").await;
    assert_problem(
        send(&app, &user, Method::POST, "/admin/plugins/postgres-store/rollback", None).await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn the_compiled_plugins_cache_keeps_within_its_budget_and_removed_artifacts_leave_their_versions_serving() {
    let versions = Versions::new();
    let cache = ScratchDir::new("plugin-cache");
    let options = versions.options().env("PLUGIN_CACHE_DIR", path_str(&cache)).env("PLUGIN_CACHE_MAX_BYTES", "1");
    let app = TestApp::spawn_with(options).await;
    let user = app.register_user().await;
    let admin = app.create_user("admin").await;
    create_task(&app, &user, json!({ "title": "served from a removed artifact" })).await;
    let artifacts = || {
        let entries = std::fs::read_dir(&*cache).unwrap().map(|entry| entry.unwrap().file_name());
        entries.filter(|name| name.to_string_lossy().ends_with(".cwasm")).count()
    };
    assert_eq!(artifacts(), 1);

    // Compiling the second version removes the first's artifact.
    versions.install("store-v2");
    assert_eq!(reload(&app, &admin, "").await["loaded"][0]["version"], "0.2.0-empty");
    assert_eq!(artifacts(), 1, "a budget of one byte keeps only the newest");
    assert_eq!(listed(&app, &user).await, 0);

    // Loading the first version's bytes again compiles them again.
    versions.install("store-v1");
    assert_eq!(reload(&app, &admin, "").await["loaded"][0]["version"], "0.1.0");
    assert_eq!(listed(&app, &user).await, 1);
    assert_eq!(artifacts(), 1);

    // The second version's artifact is gone; what was loaded from it is not.
    let rollback = send(&app, &admin, Method::POST, "/admin/plugins/postgres-store/rollback", None).await;
    assert_eq!(rollback.status(), 200);
    assert_eq!(listed(&app, &user).await, 0, "the second version serves again");
}

#[tokio::test]
async fn a_reload_or_rollback_asked_of_one_replica_reaches_the_others() {
    let versions = Versions::new();
    let shared = versions.options().redis();
    let first = TestApp::spawn_with(shared.clone()).await;
    let second = TestApp::spawn_with(shared).await;
    let (first_admin, second_admin) = (first.create_user("admin").await, second.create_user("admin").await);
    let before = storage_status(&second, &second_admin).await["sha256"].clone();

    versions.install("store-v2");
    let loaded = reload(&first, &first_admin, "?name=postgres-store").await["loaded"][0]["sha256"].clone();
    assert_ne!(loaded, before);
    let followed = eventually("the second replica to load the new version", || async {
        let storage = storage_status(&second, &second_admin).await;
        (storage["sha256"] == loaded).then_some(storage)
    })
    .await;
    assert_eq!(followed["version"], "0.2.0-empty");

    let (status, _) =
        status_and_json(send(&first, &first_admin, Method::POST, "/admin/plugins/postgres-store/rollback", None).await)
            .await;
    assert_eq!(status, 200);
    eventually("the second replica to roll back", || async {
        (storage_status(&second, &second_admin).await["sha256"] == before).then_some(())
    })
    .await;
}

/// What the cache holds was read through the version serving then: a
/// reload or a rollback of the storage plugin outdates all of it.
#[tokio::test]
async fn a_reload_or_rollback_of_the_storage_plugin_flushes_the_cache() {
    let versions = Versions::new();
    let app = TestApp::spawn_with(versions.options().redis()).await;
    let user = app.register_user().await;
    let admin = app.create_user("admin").await;
    create_task(&app, &user, json!({ "title": "cached" })).await;
    let listing = async || {
        let response = send(&app, &user, Method::GET, "/tasks", None).await;
        let hit = response.headers()["cache-status"].to_str().unwrap().ends_with("; hit");
        (status_and_json(response).await.1["items"].as_array().unwrap().len(), hit)
    };
    assert_eq!(listing().await, (1, false));
    assert_eq!(listing().await, (1, true), "the listing is cached");

    versions.install("store-v2");
    assert_eq!(reload(&app, &admin, "").await["loaded"][0]["version"], "0.2.0-empty");
    assert_eq!(listing().await, (0, false), "the new version answers, not the cache");
    assert_eq!(listing().await, (0, true));

    let rollback = send(&app, &admin, Method::POST, "/admin/plugins/postgres-store/rollback", None).await;
    assert_eq!(rollback.status(), 200);
    assert_eq!(listing().await, (1, false), "the restored version answers, not the cache");
}
