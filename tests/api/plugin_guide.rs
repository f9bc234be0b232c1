//! docs/plugins.md, followed step by step for the event-handler template:
//! copy it, build it, install it, see its summaries on its topic; then
//! change it, rebuild, drop it into the running server's plugin directory,
//! reload, and see the change. Also: the storage template builds as copied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::events::{TopicReader, path_str, plugin_dir_with, unique_prefix};
use crate::helpers::{HostOptions, TestApp, TestUser, create_task, send, status_and_json};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

const NAME: &str = "guide-handler";
const WAIT: Duration = Duration::from_secs(30);

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is a directory of the repository")
}

/// "Write": the template copied to `plugins/NAME/` of a checkout — here a
/// scratch one holding only `wit/`, which is all the copy needs — with its
/// package and manifest renamed after the plugin.
fn copy_template(world: &str, name: &str) -> PathBuf {
    let checkout = std::env::temp_dir().join(format!("todo-host-guide-{}", Uuid::new_v4().simple()));
    copy_dir(&repository().join("wit"), &checkout.join("wit"));
    let crate_dir = checkout.join("plugins").join(name);
    copy_dir(&repository().join("plugins/templates").join(world), &crate_dir);
    edit(&crate_dir.join("Cargo.toml"), &format!("name = \"{world}-template\""), &format!("name = \"{name}\""));
    std::fs::rename(crate_dir.join(format!("{world}.toml")), crate_dir.join(format!("{name}.toml"))).unwrap();
    crate_dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Replaces `from` by `to` in the file at `path`, which must hold it.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} does not hold `{from}`", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// "Build": the guide's command, in the crate. The target directory is
/// scripts/build-plugins' so that compiled dependencies are reused. Answers
/// the component.
async fn build(crate_dir: &Path) -> PathBuf {
    let home = std::env::var("HOME").expect("HOME is set");
    let target_dir = PathBuf::from(home).join(".cache/todo-host/plugins-target");
    let output = tokio::process::Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .await
        .expect("cargo runs");
    assert!(output.status.success(), "the build failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let name = crate_dir.file_name().unwrap().to_str().unwrap().replace('-', "_");
    target_dir.join(format!("wasm32-wasip2/release/{name}.wasm"))
}

/// "Drop": `NAME.toml`, then `NAME.wasm`, each copied under a temporary
/// name and renamed into place, so the server never reads half a file.
fn install(crate_dir: &Path, wasm: &Path, plugin_dir: &Path) {
    for (from, file) in
        [(crate_dir.join(format!("{NAME}.toml")), format!("{NAME}.toml")), (wasm.into(), format!("{NAME}.wasm"))]
    {
        let staged = plugin_dir.join(format!("{file}.tmp"));
        std::fs::copy(from, &staged).unwrap();
        std::fs::rename(staged, plugin_dir.join(file)).unwrap();
    }
}

/// The summary the handler published for the task `create`d by `user`.
async fn summary_of_new_task(app: &TestApp, user: &TestUser, summaries: &mut TopicReader) -> Value {
    let task_id = create_task(app, user, json!({ "title": "summarised" })).await["id"].as_str().unwrap().to_string();
    let records =
        summaries.read_until(WAIT, |records| records.iter().any(|r| r.key.as_deref() == Some(&task_id))).await;
    records.iter().find(|r| r.key.as_deref() == Some(&task_id)).unwrap().json()
}

#[tokio::test]
async fn the_event_handler_template_goes_from_copy_to_reloaded_change() {
    let crate_dir = copy_template("event-handler", NAME);
    let wasm = build(&crate_dir).await;
    let plugin_dir = plugin_dir_with(&[]);
    install(&crate_dir, &wasm, &plugin_dir);
    let prefix = unique_prefix();
    let app =
        TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[NAME]).env("PLUGIN_DIR", path_str(&plugin_dir)))
            .await;
    let user = app.register_user().await;
    // The host created the topic the handler is granted.
    let mut summaries = TopicReader::new(&format!("{prefix}task-summaries"));

    let summary = summary_of_new_task(&app, &user, &mut summaries).await;
    assert_eq!(summary["type"], "task.created", "{summary}");
    assert!(summary["handled_at"].is_i64(), "{summary}");
    assert!(summary.get("attempt").is_none(), "{summary}");

    // "Make a change": one more field in the summary, and a new version.
    edit(
        &crate_dir.join("src/lib.rs"),
        "\"handled_at\": ctx.now,",
        "\"handled_at\": ctx.now,\n    \"attempt\": attempt,",
    );
    edit(&crate_dir.join(format!("{NAME}.toml")), "version = \"0.1.0\"", "version = \"0.2.0\"");
    let wasm = build(&crate_dir).await;
    install(&crate_dir, &wasm, &plugin_dir);
    let admin = app.create_user("admin").await;
    let path = format!("/admin/plugins/reload?name={NAME}");
    let (status, report) = status_and_json(send(&app, &admin, Method::POST, &path, None).await).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["loaded"][0]["name"], &report["loaded"][0]["version"]),
        (&json!(NAME), &json!("0.2.0")),
        "{report}"
    );
    let (_, plugins) = status_and_json(send(&app, &admin, Method::GET, "/admin/plugins", None).await).await;
    let serving = plugins.as_array().unwrap().iter().find(|plugin| plugin["name"] == NAME).unwrap();
    assert_eq!((&serving["version"], &serving["state"]), (&json!("0.2.0"), &json!("serving")), "{serving}");

    let summary = summary_of_new_task(&app, &user, &mut summaries).await;
    assert_eq!(summary["attempt"], 1, "{summary}");
}

#[tokio::test]
async fn the_storage_template_builds_as_copied() {
    let crate_dir = copy_template("storage", "guide-store");
    assert!(build(&crate_dir).await.is_file());
}
