//! Concurrent writers: row locking keeps every change, and writes that
//! share a transaction (group commit) each get their own answer.

use std::collections::{BTreeMap, BTreeSet};

use crate::helpers::{HostOptions, TestApp, send, status_and_json};
use reqwest::Method;
use serde_json::{Value, json};

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

#[tokio::test]
async fn writes_sharing_a_transaction_each_get_their_own_answer_and_event() {
    // One transaction at a time, so concurrent writes queue and are grouped.
    let app = TestApp::spawn_with(HostOptions::default().env("WRITE_TRANSACTIONS", "1")).await;
    let user = app.register_user().await;
    let (_, task) =
        status_and_json(send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "shared" }))).await).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());

    // 30 creations, 10 good PATCHes of one task, 5 PATCHes of tasks that do
    // not exist and 5 with a stale If-Match, all at once.
    let mut requests = Vec::new();
    for i in 0..50 {
        let (method, target, if_match, body) = match i % 5 {
            0 | 2 | 4 => (Method::POST, "/tasks".to_string(), None, json!({ "title": format!("created {i}") })),
            1 if i % 10 == 1 => {
                (Method::PATCH, format!("/tasks/{}", uuid::Uuid::now_v7()), None, json!({ "title": "ghost" }))
            }
            1 => (Method::PATCH, path.clone(), Some("\"99\""), json!({ "title": "stale" })),
            _ => (Method::PATCH, path.clone(), None, json!({ "description": format!("patch {i}") })),
        };
        let mut request = app.request(method, &target).header("authorization", user.bearer()).json(&body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        requests.push(async move {
            let response = request.send().await.unwrap();
            let request_id = response.headers()["x-request-id"].to_str().unwrap().to_string();
            let (status, body) = status_and_json(response).await;
            (i, status, body, request_id)
        });
    }
    let answers = futures_join_all(requests).await;

    let mut created = BTreeMap::new();
    let mut versions = BTreeSet::new();
    for (i, status, body, request_id) in answers {
        match i % 5 {
            0 | 2 | 4 => {
                assert_eq!(status, 201, "{body}");
                assert_eq!(body["title"], format!("created {i}"));
                created.insert(body["id"].as_str().unwrap().to_string(), request_id);
            }
            1 if i % 10 == 1 => assert_eq!(status, 404, "{body}"),
            1 => assert_eq!(status, 412, "{body}"),
            _ => {
                assert_eq!(status, 200, "{body}");
                versions.insert(body["version"].as_i64().unwrap());
            }
        }
    }
    assert_eq!(created.len(), 30);
    assert_eq!(versions, (2..=11).collect(), "each good PATCH applied once, none lost");
    let (_, last) = status_and_json(send(&app, &user, Method::GET, &path, None).await).await;
    assert_eq!(last["version"], 11);
    assert_eq!(last["title"], "shared", "no stale or misdirected PATCH applied");

    // Each creation is in the table and announced once, by its own request.
    let mut db = app.db().await;
    let announced: Vec<(String, String)> = sqlx::query_as(
        "SELECT record_key, headers->>'x-request-id' FROM outbox \
         WHERE convert_from(payload, 'UTF8')::jsonb->>'type' = 'task.created' AND record_key = ANY($1)",
    )
    .bind(created.keys().cloned().collect::<Vec<_>>())
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(announced.len(), 30);
    for (task_id, request_id) in announced {
        assert_eq!(created[&task_id], request_id, "the event names the request that made the change");
    }

    // And they were grouped: fewer transactions than writes.
    let metrics = app.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap()
    };
    let (groups, writes) = (sample("task_write_group_size_count"), sample("task_write_group_size_sum"));
    assert_eq!(writes, 51.0, "every write went through group commit");
    assert!(groups < writes, "{groups} groups for {writes} writes: nothing was grouped");
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
