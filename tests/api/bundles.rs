//! Plugins delivered to every replica: a bundle uploaded to one replica
//! (`PUT /admin/plugins/{name}`) is stored in PostgreSQL and serves on every
//! replica, those started later included, each from its own plugin
//! directory; a rollback reaches them all; a corrupt upload is refused and
//! changes nothing.

use std::path::Path;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Connection;

use crate::helpers::events::{path_str, plugin_dir_with};
use crate::helpers::{HostOptions, ScratchDir, TestApp, TestUser, assert_problem, eventually, send, status_and_json};

const UPLOADED_MANIFEST: &str =
    "kind = \"storage\"\nversion = \"0.1.1-uploaded\"\n[grants]\nsql = true\n\n[database]\nshares = [\"tasks\"]\n";

/// postgres-store's module and migrations from `dir`, under `manifest`.
fn bundle(dir: &Path, manifest: &str, module: Vec<u8>, sha256: &str) -> Form {
    let mut form = Form::new()
        .part("manifest", Part::text(manifest.to_string()).file_name("postgres-store.toml"))
        .part("module", Part::bytes(module).file_name("postgres-store.wasm"))
        .text("sha256", sha256.to_string());
    for entry in std::fs::read_dir(dir.join("postgres-store.migrations")).unwrap() {
        let path = entry.unwrap().path();
        let file_name = path.file_name().unwrap().to_str().unwrap().to_string();
        form = form.part("migration", Part::text(std::fs::read_to_string(&path).unwrap()).file_name(file_name));
    }
    form
}

fn module(dir: &Path) -> (Vec<u8>, String) {
    let module = std::fs::read(dir.join("postgres-store.wasm")).unwrap();
    let sha256 = hex::encode(Sha256::digest(&module));
    (module, sha256)
}

async fn upload(app: &TestApp, admin: &TestUser, form: Form) -> reqwest::Response {
    app.request(Method::PUT, "/admin/plugins/postgres-store")
        .header("authorization", admin.bearer())
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn plugins(app: &TestApp, admin: &TestUser) -> Value {
    let (status, body) = status_and_json(send(app, admin, Method::GET, "/admin/plugins", None).await).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn storage_version(app: &TestApp, admin: &TestUser) -> String {
    let body = plugins(app, admin).await;
    let storage = body.as_array().unwrap().iter().find(|plugin| plugin["kind"] == "storage").unwrap();
    storage["version"].as_str().unwrap().to_string()
}

fn manifest_version(dir: &Path) -> String {
    let manifest = std::fs::read_to_string(dir.join("postgres-store.toml")).unwrap();
    manifest.lines().find(|line| line.starts_with("version")).unwrap().to_string()
}

/// A replica on `database` with a plugin directory of its own.
async fn replica(shared: &HostOptions, database: Option<&str>) -> (TestApp, ScratchDir) {
    let dir = plugin_dir_with(&[]);
    let mut options = shared.clone().env("PLUGIN_DIR", path_str(&dir)).env("PLUGIN_SYNC_SECS", "1");
    if let Some(database) = database {
        options = options.database(database);
    }
    (TestApp::spawn_with(options).await, dir)
}

#[tokio::test]
async fn a_bundle_uploaded_to_one_replica_serves_on_every_replica_and_a_rollback_reaches_them_all() {
    let shared = HostOptions::default().redis();
    let (first, first_dir) = replica(&shared, None).await;
    let (second, second_dir) = replica(&shared, Some(&first.database)).await;
    let (first_admin, second_admin) = (first.create_user("admin").await, second.create_user("admin").await);
    let (module, sha256) = module(&first_dir);

    let response = upload(&first, &first_admin, bundle(&first_dir, UPLOADED_MANIFEST, module, &sha256)).await;
    let (status, report) = status_and_json(response).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["loaded"][0]["version"], "0.1.1-uploaded", "{report}");
    eventually("the second replica to serve the upload", || async {
        (storage_version(&second, &second_admin).await == "0.1.1-uploaded").then_some(())
    })
    .await;
    assert_eq!(manifest_version(&second_dir), "version = \"0.1.1-uploaded\"", "installed into its own directory");
    let listed = eventually("both replicas to be listed with the upload", || async {
        let body = plugins(&first, &first_admin).await;
        let replicas = body[0]["replicas"].as_array().unwrap().clone();
        let uploaded = replicas.iter().filter(|replica| replica["version"] == "0.1.1-uploaded").count();
        (uploaded == 2).then_some(replicas)
    })
    .await;
    assert_ne!(listed[0]["replica"], listed[1]["replica"]);

    // A replica that starts now serves the upload from its start, though
    // its directory holds the version before.
    let (third, _third_dir) = replica(&shared, Some(&first.database)).await;
    let third_admin = third.create_user("admin").await;
    assert_eq!(storage_version(&third, &third_admin).await, "0.1.1-uploaded");

    let (status, restored) = status_and_json(
        send(&second, &second_admin, Method::POST, "/admin/plugins/postgres-store/rollback", None).await,
    )
    .await;
    assert_eq!((status, &restored["version"]), (200, &Value::from("0.1.0")), "{restored}");
    for (app, admin) in [(&first, &first_admin), (&third, &third_admin)] {
        eventually("every replica to roll back", || async {
            (storage_version(app, admin).await == "0.1.0").then_some(())
        })
        .await;
    }
    assert_eq!(manifest_version(&first_dir), "version = \"0.1.0\"", "the directory serves the restored version too");
}

#[tokio::test]
async fn a_corrupt_or_mismatched_upload_is_refused_and_changes_nothing() {
    let (app, dir) = replica(&HostOptions::default().redis(), None).await;
    let admin = app.create_user("admin").await;
    let user = app.register_user().await;
    let (module, sha256) = module(&dir);
    let manifest_before = std::fs::read(dir.join("postgres-store.toml")).unwrap();

    let damaged = [module.as_slice(), b"!"].concat();
    let response = upload(&app, &admin, bundle(&dir, UPLOADED_MANIFEST, damaged, &sha256)).await;
    assert_problem(response, 422, "digest-mismatch").await;

    let garbage = b"not a component".to_vec();
    let garbage_sha256 = hex::encode(Sha256::digest(&garbage));
    let response = upload(&app, &admin, bundle(&dir, UPLOADED_MANIFEST, garbage, &garbage_sha256)).await;
    let problem = assert_problem(response, 422, "plugin-rejected").await;
    assert!(problem["detail"].as_str().unwrap().contains("compile"), "{problem}");

    let no_digest = Form::new().text("manifest", UPLOADED_MANIFEST).part("module", Part::bytes(module.clone()));
    assert_problem(upload(&app, &admin, no_digest).await, 400, "invalid-bundle").await;
    let bad_manifest = bundle(&dir, "kind = \"storage\"\nunknown = true\n", module.clone(), &sha256);
    assert_problem(upload(&app, &admin, bad_manifest).await, 422, "plugin-rejected").await;
    let other_kind = bundle(&dir, "kind = \"event-handler\"\nversion = \"9.9.9\"\n", module.clone(), &sha256);
    let problem = assert_problem(upload(&app, &admin, other_kind).await, 422, "plugin-rejected").await;
    assert!(problem["detail"].as_str().unwrap().contains("serves as a storage plugin"), "{problem}");
    let not_admin = upload(&app, &user, bundle(&dir, UPLOADED_MANIFEST, module.clone(), &sha256)).await;
    assert_problem(not_admin, 403, "forbidden").await;
    let bad_name = app
        .request(Method::PUT, "/admin/plugins/Bad.Name")
        .header("authorization", admin.bearer())
        .multipart(bundle(&dir, UPLOADED_MANIFEST, module, &sha256))
        .send()
        .await
        .unwrap();
    assert_problem(bad_name, 400, "invalid-bundle").await;

    assert_eq!(storage_version(&app, &admin).await, "0.1.0");
    assert_eq!(std::fs::read(dir.join("postgres-store.toml")).unwrap(), manifest_before);
    let mut db = app.db().await;
    for table in ["plugin_files", "plugin_releases", "plugin_deployments"] {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut db).await.unwrap();
        assert_eq!(count, 0, "{table} holds nothing of a refused upload");
    }
    db.close().await.unwrap();
}
