//! `POST /tasks/batch`: all or nothing, with per-operation results.

use crate::helpers::{TestApp, TestUser, assert_problem, create_task, send, status_and_json};
use reqwest::Method;
use serde_json::{Value, json};

async fn create(app: &TestApp, user: &TestUser, title: &str) -> Value {
    create_task(app, user, json!({ "title": title })).await
}

#[tokio::test]
async fn a_batch_applies_every_operation_and_reports_each() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let first = create(&app, &user, "first").await;
    let second = create(&app, &user, "second").await;
    let batch = json!({ "operations": [
        { "op": "create", "task": { "title": "new", "priority": "high" } },
        { "op": "update", "id": first["id"], "changes": { "status": "done" }, "expected_version": 1 },
        { "op": "delete", "id": second["id"] },
    ]});
    let (status, body) = status_and_json(send(&app, &user, Method::POST, "/tasks/batch", Some(batch)).await).await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!((results[0]["op"].as_str(), results[0]["status"].as_u64()), (Some("create"), Some(201)));
    assert_eq!(results[0]["task"]["priority"], "high");
    assert_eq!((results[1]["op"].as_str(), results[1]["status"].as_u64()), (Some("update"), Some(200)));
    assert_eq!(results[1]["task"]["status"], "done");
    assert_eq!(results[1]["task"]["version"], 2);
    assert_eq!((results[2]["op"].as_str(), results[2]["status"].as_u64()), (Some("delete"), Some(204)));
    assert_eq!(results[2]["id"], second["id"]);
    assert!(results[2].get("task").is_none());

    let created = format!("/tasks/{}", results[0]["id"].as_str().unwrap());
    assert_eq!(send(&app, &user, Method::GET, &created, None).await.status(), 200);
    let deleted = format!("/tasks/{}", second["id"].as_str().unwrap());
    assert_eq!(send(&app, &user, Method::GET, &deleted, None).await.status(), 404);
}

#[tokio::test]
async fn one_invalid_operation_applies_nothing() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let kept = create(&app, &user, "kept").await;
    let before = app.task_rows().await;

    // Invalid input: caught before the store is touched, every rule listed.
    let batch = json!({ "operations": [
        { "op": "create", "task": { "title": "fine" } },
        { "op": "create", "task": { "title": "" } },
        { "op": "update", "id": kept["id"], "changes": { "title": "x".repeat(201) } },
    ]});
    let body =
        assert_problem(send(&app, &user, Method::POST, "/tasks/batch", Some(batch)).await, 422, "validation-failed")
            .await;
    let pointers: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/operations/1/task/title", "/operations/2/changes/title"]);
    assert_eq!(app.task_rows().await, before);

    // A failure only the store can see: the earlier operations, already
    // executed inside the transaction, are rolled back.
    let missing = uuid::Uuid::now_v7();
    let batch = json!({ "operations": [
        { "op": "create", "task": { "title": "rolled back" } },
        { "op": "update", "id": kept["id"], "changes": { "title": "rolled back too" } },
        { "op": "delete", "id": missing },
        { "op": "update", "id": kept["id"], "changes": { "status": "done" }, "expected_version": 99 },
    ]});
    let body =
        assert_problem(send(&app, &user, Method::POST, "/tasks/batch", Some(batch)).await, 404, "batch-failed").await;
    let failures = body["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2, "{body}");
    assert_eq!((failures[0]["index"].as_u64(), failures[0]["status"].as_u64()), (Some(2), Some(404)));
    assert_eq!((failures[1]["index"].as_u64(), failures[1]["status"].as_u64()), (Some(3), Some(412)));

    assert_eq!(app.task_rows().await, before);
    let (_, unchanged) = status_and_json(
        send(&app, &user, Method::GET, &format!("/tasks/{}", kept["id"].as_str().unwrap()), None).await,
    )
    .await;
    assert_eq!(unchanged, kept);
}

#[tokio::test]
async fn batches_are_bounded_and_scoped() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let stranger = app.register_user().await;

    let too_many: Vec<Value> =
        (0..101).map(|i| json!({ "op": "create", "task": { "title": format!("t{i}") } })).collect();
    for operations in [json!([]), json!(too_many)] {
        let response = send(&app, &user, Method::POST, "/tasks/batch", Some(json!({ "operations": operations }))).await;
        let body = assert_problem(response, 422, "validation-failed").await;
        assert_eq!(body["errors"][0]["pointer"], "/operations");
    }

    let hundred: Vec<Value> =
        (0..100).map(|i| json!({ "op": "create", "task": { "title": format!("t{i}") } })).collect();
    let (status, _) =
        status_and_json(send(&app, &user, Method::POST, "/tasks/batch", Some(json!({ "operations": hundred }))).await)
            .await;
    assert_eq!(status, 200);

    // Another user's task is invisible inside a batch too.
    let task = create(&app, &user, "mine").await;
    let batch = json!({ "operations": [{ "op": "delete", "id": task["id"] }] });
    let body =
        assert_problem(send(&app, &stranger, Method::POST, "/tasks/batch", Some(batch)).await, 404, "batch-failed")
            .await;
    assert_eq!(body["failures"][0]["type"], "/problems/not-found");

    let unknown_op = json!({ "operations": [{ "op": "archive", "id": task["id"] }] });
    assert_problem(send(&app, &user, Method::POST, "/tasks/batch", Some(unknown_op)).await, 422, "invalid-body").await;
}
