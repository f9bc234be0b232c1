//! docs/plugins.md, followed step by step for the Rust and the JavaScript
//! event-handler templates: copy one, build and drop it with
//! `scripts/build-plugins "$PLUGIN_DIR"`, see its summaries on its topic;
//! then change it, build and drop again, reload, and see the change. Also:
//! the storage template builds as copied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::events::{TopicReader, path_str, plugin_dir_with, unique_prefix};
use crate::helpers::{HostOptions, ScratchDir, TestApp, TestUser, copy_dir, create_task, send, status_and_json};
use reqwest::Method;
use serde_json::{Value, json};

const NAME: &str = "guide-handler";
const WAIT: Duration = Duration::from_secs(30);

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is a directory of the repository")
}

/// A scratch checkout holding what the guide uses of one: `wit/` and
/// `scripts/`, and `plugins/` for the copied template.
fn checkout() -> ScratchDir {
    let checkout = ScratchDir::new("guide");
    for dir in ["wit", "scripts"] {
        copy_dir(&repository().join(dir), &checkout.join(dir));
    }
    checkout
}

/// "Write": the template copied to `plugins/NAME/`, its manifest (and a
/// Rust crate's package) renamed after the plugin.
fn copy_template(checkout: &Path, template: &str, name: &str) -> PathBuf {
    let dir = checkout.join("plugins").join(name);
    copy_dir(&repository().join("plugins/templates").join(template), &dir);
    if dir.join("Cargo.toml").exists() {
        edit(&dir.join("Cargo.toml"), &format!("name = \"{template}-template\""), &format!("name = \"{name}\""));
    }
    std::fs::rename(dir.join(format!("{template}.toml")), dir.join(format!("{name}.toml"))).unwrap();
    dir
}

/// Replaces `from` by `to` in the file at `path`, which must hold it.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} does not hold `{from}`", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// "Build and drop": `scripts/build-plugins "$PLUGIN_DIR"` in the checkout.
async fn build_and_drop(checkout: &Path, plugin_dir: &Path) {
    let output = tokio::process::Command::new(checkout.join("scripts/build-plugins"))
        .arg(plugin_dir)
        .current_dir(checkout)
        .output()
        .await
        .expect("scripts/build-plugins runs");
    assert!(output.status.success(), "the build failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// The summary the handler published for the task `create`d by `user`.
async fn summary_of_new_task(app: &TestApp, user: &TestUser, summaries: &mut TopicReader) -> Value {
    let task_id = create_task(app, user, json!({ "title": "summarised" })).await["id"].as_str().unwrap().to_string();
    let records =
        summaries.read_until(WAIT, |records| records.iter().any(|r| r.key.as_deref() == Some(&task_id))).await;
    records.iter().find(|r| r.key.as_deref() == Some(&task_id)).unwrap().json()
}

/// The guide for `template`, whose `source` file gets the change `from` →
/// `to` (one more field in the summary: the attempt).
async fn follow_the_guide(template: &str, source: &str, from: &str, to: &str) {
    let checkout = checkout();
    let dir = copy_template(&checkout, template, NAME);
    let plugin_dir = plugin_dir_with(&[]);
    build_and_drop(&checkout, &plugin_dir).await;
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
    edit(&dir.join(source), from, to);
    edit(&dir.join(format!("{NAME}.toml")), "version = \"0.1.0\"", "version = \"0.2.0\"");
    build_and_drop(&checkout, &plugin_dir).await;
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
async fn the_rust_event_handler_template_goes_from_copy_to_reloaded_change() {
    follow_the_guide(
        "event-handler",
        "src/lib.rs",
        "\"handled_at\": ctx.now,",
        "\"handled_at\": ctx.now,\n\"attempt\": attempt,",
    )
    .await;
}

#[tokio::test]
async fn the_javascript_event_handler_template_goes_from_copy_to_reloaded_change() {
    follow_the_guide(
        "event-handler-js",
        "handler.js",
        "`\"handled_at\":${ctx.now.toString()},` +",
        "`\"handled_at\":${ctx.now.toString()},` + `\"attempt\":${attempt},` +",
    )
    .await;
}

#[tokio::test]
async fn the_storage_template_builds_as_copied() {
    let checkout = checkout();
    copy_template(&checkout, "storage", "guide-store");
    let plugin_dir = ScratchDir::new("guide-out");
    build_and_drop(&checkout, &plugin_dir).await;
    assert!(plugin_dir.join("guide-store.wasm").is_file());
}
