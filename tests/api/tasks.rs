//! Task CRUD over HTTP: success paths, roles and scopes, versions.

use crate::helpers::{TestApp, assert_problem, create_task, send, send_with_header, status_and_json};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn create_answers_201_with_location_etag_and_defaults() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let response = send(
        &app,
        &user,
        Method::POST,
        "/tasks",
        Some(json!({ "title": "Write the report", "due_at": "2030-05-01T09:30:00.123456789+02:00" })),
    )
    .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let task: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/tasks/{}", task["id"].as_str().unwrap()));
    assert_eq!(task["title"], "Write the report");
    assert_eq!(task["status"], "todo");
    assert_eq!(task["priority"], "medium");
    assert_eq!(task["description"], Value::Null);
    assert_eq!(task["owner_id"], user.id.to_string());
    assert_eq!(task["version"], 1);
    assert_eq!(task["due_at"], "2030-05-01T07:30:00.123456Z");
    assert_eq!(task["created_at"], task["updated_at"]);
    let id: uuid::Uuid = task["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 7, "ids are UUIDv7");

    let (status, fetched) = status_and_json(send(&app, &user, Method::GET, &location, None).await).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, task, "GET answers exactly what POST stored");
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_advances_the_version() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let task =
        create_task(&app, &user, json!({ "title": "t", "description": "d", "due_at": "2030-01-01T00:00:00Z" })).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());

    let response =
        send(&app, &user, Method::PATCH, &path, Some(json!({ "status": "in_progress", "due_at": null }))).await;
    assert_eq!(response.headers()["etag"], "\"2\"");
    let (status, updated) = status_and_json(response).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["status"], "in_progress");
    assert_eq!(updated["due_at"], Value::Null, "null clears a nullable field");
    assert_eq!(updated["description"], "d", "absent fields are kept");
    assert_eq!(updated["title"], "t");
    assert_eq!(updated["version"], 2);
    assert_ne!(updated["updated_at"], task["updated_at"]);
    assert_eq!(updated["created_at"], task["created_at"]);

    // merge-patch+json is accepted too.
    let response = app
        .request(Method::PATCH, &path)
        .header("authorization", user.bearer())
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"priority":"high"}"#)
        .send()
        .await
        .unwrap();
    let (status, updated) = status_and_json(response).await;
    assert_eq!((status, updated["priority"].as_str()), (200, Some("high")));
}

#[tokio::test]
async fn if_match_guards_writes_and_if_none_match_saves_a_download() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let task = create_task(&app, &user, json!({ "title": "t" })).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());

    let stale = |method: Method, body: Option<Value>| {
        let mut request = app.request(method, &path).header("authorization", user.bearer()).header("if-match", "\"7\"");
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let body =
        assert_problem(stale(Method::PATCH, Some(json!({ "title": "x" }))).await.unwrap(), 412, "version-mismatch")
            .await;
    assert_eq!(body["current_version"], 1);
    assert_problem(stale(Method::DELETE, None).await.unwrap(), 412, "version-mismatch").await;

    let response =
        send_with_header(&app, &user, Method::PATCH, &path, ("if-match", "\"1\""), json!({ "title": "x" })).await;
    assert_eq!(response.status(), 200);

    let response = app
        .request(Method::GET, &path)
        .header("authorization", user.bearer())
        .header("if-none-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    let response = app
        .request(Method::GET, &path)
        .header("authorization", user.bearer())
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let response = app
        .request(Method::DELETE, &path)
        .header("authorization", user.bearer())
        .header("if-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_problem(send(&app, &user, Method::GET, &path, None).await, 404, "not-found").await;
}

#[tokio::test]
async fn delete_answers_204_then_the_task_is_gone() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let task = create_task(&app, &user, json!({ "title": "t" })).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());
    let response = send(&app, &user, Method::DELETE, &path, None).await;
    assert_eq!(response.status(), 204);
    assert_problem(send(&app, &user, Method::DELETE, &path, None).await, 404, "not-found").await;
    assert_problem(send(&app, &user, Method::PATCH, &path, Some(json!({ "title": "x" }))).await, 404, "not-found")
        .await;
}

#[tokio::test]
async fn another_users_task_is_not_found_for_every_method() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let stranger = app.register_user().await;
    let task = create_task(&app, &owner, json!({ "title": "private" })).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());

    let missing = format!("/tasks/{}", uuid::Uuid::now_v7());
    for target in [&path, &missing] {
        let get = assert_problem(send(&app, &stranger, Method::GET, target, None).await, 404, "not-found").await;
        let patch = assert_problem(
            send(&app, &stranger, Method::PATCH, target, Some(json!({ "title": "x" }))).await,
            404,
            "not-found",
        )
        .await;
        let delete = assert_problem(send(&app, &stranger, Method::DELETE, target, None).await, 404, "not-found").await;
        // A stranger's task and a missing task answer the same bodies.
        assert_eq!(
            (get["detail"].clone(), patch["detail"].clone()),
            (delete["detail"].clone(), delete["detail"].clone())
        );
    }
    let (_, list) = status_and_json(send(&app, &stranger, Method::GET, "/tasks", None).await).await;
    assert_eq!(list["items"], json!([]));

    let (status, unchanged) = status_and_json(send(&app, &owner, Method::GET, &path, None).await).await;
    assert_eq!((status, unchanged["version"].as_i64()), (200, Some(1)));
}

#[tokio::test]
async fn viewers_read_everything_and_change_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let viewer = app.create_user("viewer").await;
    let task = create_task(&app, &owner, json!({ "title": "visible" })).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());

    let (status, fetched) = status_and_json(send(&app, &viewer, Method::GET, &path, None).await).await;
    assert_eq!((status, &fetched["title"]), (200, &json!("visible")));
    let (_, list) = status_and_json(send(&app, &viewer, Method::GET, "/tasks", None).await).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    assert_problem(send(&app, &viewer, Method::POST, "/tasks", Some(json!({ "title": "x" }))).await, 403, "forbidden")
        .await;
    assert_problem(send(&app, &viewer, Method::PATCH, &path, Some(json!({ "title": "x" }))).await, 403, "forbidden")
        .await;
    assert_problem(send(&app, &viewer, Method::DELETE, &path, None).await, 403, "forbidden").await;
    let batch = json!({ "operations": [{ "op": "delete", "id": task["id"] }] });
    assert_problem(send(&app, &viewer, Method::POST, "/tasks/batch", Some(batch)).await, 403, "forbidden").await;

    let (_, after) = status_and_json(send(&app, &owner, Method::GET, &path, None).await).await;
    assert_eq!(after, task, "nothing changed");
}

#[tokio::test]
async fn admins_manage_every_task_and_may_reassign() {
    let app = TestApp::spawn().await;
    let owner = app.register_user().await;
    let other = app.register_user().await;
    let admin = app.create_user("admin").await;
    let task = create_task(&app, &owner, json!({ "title": "t" })).await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());

    let (status, moved) =
        status_and_json(send(&app, &admin, Method::PATCH, &path, Some(json!({ "owner_id": other.id }))).await).await;
    assert_eq!((status, moved["owner_id"].as_str()), (200, Some(other.id.to_string().as_str())));
    assert_problem(send(&app, &owner, Method::GET, &path, None).await, 404, "not-found").await;
    let (status, _) = status_and_json(send(&app, &other, Method::GET, &path, None).await).await;
    assert_eq!(status, 200);

    // Users may not give tasks away or create them for others.
    let own = create_task(&app, &other, json!({ "title": "mine" })).await;
    let own_path = format!("/tasks/{}", own["id"].as_str().unwrap());
    assert_problem(
        send(&app, &other, Method::PATCH, &own_path, Some(json!({ "owner_id": owner.id }))).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        send(&app, &other, Method::POST, "/tasks", Some(json!({ "title": "x", "owner_id": owner.id }))).await,
        403,
        "forbidden",
    )
    .await;
    let created_for = create_task(&app, &admin, json!({ "title": "for you", "owner_id": owner.id })).await;
    assert_eq!(created_for["owner_id"], owner.id.to_string());

    // Reassigning to nobody is refused and changes nothing.
    let response = send(&app, &admin, Method::PATCH, &path, Some(json!({ "owner_id": uuid::Uuid::now_v7() }))).await;
    assert_problem(response, 422, "validation-failed").await;
    let response = send(&app, &admin, Method::DELETE, &path, None).await;
    assert_eq!(response.status(), 204);
}
