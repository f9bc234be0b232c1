//! The browser app in a real browser: Debian's Chromium driven by
//! Playwright (`web/e2e/`), against a host serving the app it was built
//! into (`TEST_WEB_DIR`, built by `scripts/test`). The host is prepared
//! here — an admin, a plugin whose new version waits on disk, one dead
//! letter whose replay succeeds — and what the browser did is checked
//! underneath afterwards.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::Method;
use serde_json::json;
use sqlx::Row;

use crate::helpers::events::{path_str, plugin_dir_with, unique_prefix};
use crate::helpers::{HostOptions, PASSWORD, TestApp, eventually, send, status_and_json};

const DEAD_LETTER_HANDLER: &str = "second-try";
const RELOADED_PLUGIN: &str = "notifier";
const RELOADED_VERSION: &str = "0.1.1-e2e";

fn web_dir() -> PathBuf {
    let dir = std::env::var("TEST_WEB_DIR").expect("TEST_WEB_DIR is not set: run the tests through scripts/test");
    PathBuf::from(dir)
}

/// The `web/` project, whose Playwright tests run here.
fn web_project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

#[tokio::test]
async fn the_task_app_and_the_operator_console_work_in_a_real_browser() {
    // Fails the event of a task titled "doomed" twice (all its attempts),
    // so it is dead-lettered; its replay, the third attempt, succeeds.
    let manifest = "kind = \"event-handler\"\nversion = \"0.1.0\"\n[grants]\nsql = true\n\
                    [settings]\nfail_attempts = 2\nonly_title = \"doomed\"\n";
    let plugins = plugin_dir_with(&[(DEAD_LETTER_HANDLER, "flaky-handler", manifest)]);
    let prefix = unique_prefix();
    let options = HostOptions::default()
        .kafka(&prefix, &[DEAD_LETTER_HANDLER, RELOADED_PLUGIN])
        .env("PLUGIN_DIR", path_str(&plugins))
        .env("HANDLER_MAX_ATTEMPTS", "2")
        .env("WEB_DIR", path_str(&web_dir()));
    let app = TestApp::spawn_with(options).await;
    let admin = app.create_user("admin").await;
    let someone = app.register_user().await;
    send(&app, &someone, Method::POST, "/tasks", Some(json!({ "title": "doomed" }))).await;
    eventually("the doomed task's event to be dead-lettered", || async {
        let path = format!("/admin/dead-letters?handler={DEAD_LETTER_HANDLER}");
        let (_, page) = status_and_json(send(&app, &admin, Method::GET, &path, None).await).await;
        (page["items"].as_array().is_some_and(|items| items.len() == 1)).then_some(())
    })
    .await;
    bump_version(&plugins.join(format!("{RELOADED_PLUGIN}.toml")));

    let screenshots = std::env::var("SCREENSHOT_DIR").map(PathBuf::from).unwrap_or_else(|_| plugins.join("shots"));
    let status = tokio::process::Command::new("npx")
        .args(["--no-install", "playwright", "test", "--reporter=line"])
        .current_dir(web_project())
        .env("BASE_URL", &app.address)
        .env("ADMIN_EMAIL", &admin.email)
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("E2E_RELOAD_PLUGIN", RELOADED_PLUGIN)
        .env("E2E_RELOAD_VERSION", RELOADED_VERSION)
        .env("E2E_DEAD_LETTER_HANDLER", DEAD_LETTER_HANDLER)
        .env("SCREENSHOT_DIR", &screenshots)
        .stdin(Stdio::null())
        .status()
        .await
        .expect("npx runs (scripts/test installs Node and the web project's packages)");
    assert!(status.success(), "the browser tests failed (their output is above)");

    // Underneath: the replay handled the doomed event exactly once, and the
    // reload put the new version in service.
    // (The app's own tasks' events were handled at once: attempt 1.)
    let rows = sqlx::query("SELECT attempt FROM plugin_second_try.flaky_handled WHERE attempt > 1")
        .fetch_all(&mut app.db().await)
        .await
        .unwrap();
    let doomed: Vec<i32> = rows.iter().map(|row| row.get("attempt")).collect();
    assert_eq!(doomed, [3], "handled once, by the replay");
    let (_, plugins_now) = status_and_json(send(&app, &admin, Method::GET, "/admin/plugins", None).await).await;
    let serving = plugins_now.to_string();
    assert!(serving.contains(RELOADED_VERSION), "{serving}");
    assert!(screenshots.join("task-app.png").is_file() && screenshots.join("console.png").is_file());
}

/// Raises the manifest's version, as a new release dropped in would.
fn bump_version(manifest: &Path) {
    let text = std::fs::read_to_string(manifest).unwrap();
    let bumped = text.replacen("version = \"0.1.0\"", &format!("version = \"{RELOADED_VERSION}\""), 1);
    assert_ne!(text, bumped, "{} has no version 0.1.0", manifest.display());
    std::fs::write(manifest, bumped).unwrap();
}
