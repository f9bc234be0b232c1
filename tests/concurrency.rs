//! Concurrent writers of one task: row locking keeps every change.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};
use todo_host_tests::{TestApp, send, status_and_json};

#[tokio::test]
async fn twenty_concurrent_patches_of_different_fields_lose_nothing() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let (_, task) =
        status_and_json(send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "start" }))).await).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());

    // Each PATCH changes one field to a value no other PATCH uses.
    let patches: Vec<Value> = (0..20)
        .map(|i| match i % 5 {
            0 => json!({ "title": format!("title {i}") }),
            1 => json!({ "description": format!("description {i}") }),
            2 => json!({ "status": (["todo", "in_progress", "done", "in_progress"][i / 5]) }),
            3 => json!({ "priority": (["low", "medium", "high", "low"][i / 5]) }),
            _ => json!({ "due_at": format!("2031-0{}-01T00:00:00Z", i / 5 + 1) }),
        })
        .collect();
    let requests = patches.iter().map(|patch| {
        let request = app.request(Method::PATCH, &path).header("authorization", user.bearer()).json(patch);
        async move { status_and_json(request.send().await.unwrap()).await }
    });
    let answers = futures_join_all(requests).await;

    // Every PATCH succeeded, each saw a distinct version: 2..=21.
    let mut applied: BTreeMap<i64, Value> = BTreeMap::new();
    for ((status, body), patch) in answers.into_iter().zip(&patches) {
        assert_eq!(status, 200, "{body}");
        applied.insert(body["version"].as_i64().unwrap(), patch.clone());
    }
    assert_eq!(applied.keys().copied().collect::<Vec<_>>(), (2..=21).collect::<Vec<_>>());

    // Replaying the patches in the order they were applied gives the final
    // task: no PATCH undid a field another one set.
    let mut expected = task.as_object().unwrap().clone();
    for patch in applied.values() {
        for (field, value) in patch.as_object().unwrap() {
            expected.insert(field.clone(), value.clone());
        }
    }
    let (_, last) = status_and_json(send(&app, &user, Method::GET, &path, None).await).await;
    assert_eq!(last["version"], 21);
    for field in ["title", "description", "status", "priority", "due_at"] {
        assert_eq!(last[field], expected[field], "{field}");
    }
}

/// Runs the futures concurrently and answers their outputs in order.
async fn futures_join_all<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}
