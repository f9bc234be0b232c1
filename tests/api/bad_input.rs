//! Malformed requests get a clear problem+json, and nothing is written.

use crate::helpers::{HostOptions, TestApp, assert_problem, send, send_with_header};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn malformed_bodies_are_refused_with_the_right_status() {
    let app = TestApp::spawn_with(HostOptions::default().env("MAX_BODY_BYTES", "4096")).await;
    let user = app.register_user().await;
    let post = |content_type: &'static str, body: String| {
        app.request(Method::POST, "/tasks")
            .header("authorization", user.bearer())
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let body =
        assert_problem(post("application/json", "{\"title\": ".into()).await.unwrap(), 400, "malformed-json").await;
    assert!(body["detail"].is_string());
    let body = assert_problem(
        post("application/json", r#"{"title":"a","colour":"red"}"#.into()).await.unwrap(),
        422,
        "invalid-body",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("colour"), "{body}");
    assert_problem(post("application/json", r#"{"title": 5}"#.into()).await.unwrap(), 422, "invalid-body").await;
    assert_problem(
        post("application/json", r#"{"title":"a","status":"finished"}"#.into()).await.unwrap(),
        422,
        "invalid-body",
    )
    .await;
    assert_problem(
        post("application/json", r#"{"title":"a","due_at":"next week"}"#.into()).await.unwrap(),
        422,
        "invalid-body",
    )
    .await;
    assert_problem(post("text/plain", r#"{"title":"a"}"#.into()).await.unwrap(), 415, "unsupported-media-type").await;
    let huge = json!({ "title": "a", "description": "x".repeat(5000) }).to_string();
    assert_problem(post("application/json", huge).await.unwrap(), 413, "body-too-large").await;

    assert_eq!(app.task_rows().await, 0, "nothing was written");
}

#[tokio::test]
async fn validation_lists_each_broken_field() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let response = send(
        &app,
        &user,
        Method::POST,
        "/tasks",
        Some(json!({ "title": "x".repeat(201), "description": "y".repeat(10_001) })),
    )
    .await;
    let body = assert_problem(response, 422, "validation-failed").await;
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body}");
    assert_eq!(errors[0]["pointer"], "/title");
    assert_eq!(errors[1]["pointer"], "/description");
    assert!(errors[0]["detail"].as_str().unwrap().contains("200"));

    let (_, task) = crate::helpers::status_and_json(
        send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "ok" }))).await,
    )
    .await;
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());
    for patch in [json!({}), json!({ "title": null }), json!({ "status": null }), json!({ "title": "   " })] {
        assert_problem(send(&app, &user, Method::PATCH, &path, Some(patch)).await, 422, "validation-failed").await;
    }
}

#[tokio::test]
async fn nul_characters_are_refused_by_field_never_as_a_server_error() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let body = assert_problem(
        send(&app, &user, Method::POST, "/tasks", Some(json!({ "title": "a\u{0}b" }))).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(body["errors"][0]["pointer"], "/title");
    assert_problem(send(&app, &user, Method::GET, "/tasks?q=a%00b", None).await, 400, "invalid-query").await;

    let register = |body: serde_json::Value| app.request(Method::POST, "/auth/register").json(&body).send();
    let response = register(json!({ "email": "nul\u{0}@example.com", "password": "long-enough-1" })).await.unwrap();
    let body = assert_problem(response, 422, "validation-failed").await;
    assert_eq!(body["errors"][0]["pointer"], "/email");
    let response =
        register(json!({ "email": "nul@example.com", "password": "long-enough-1", "display_name": "\u{0}" }))
            .await
            .unwrap();
    let body = assert_problem(response, 422, "validation-failed").await;
    assert_eq!(body["errors"][0]["pointer"], "/display_name");
    let login = json!({ "email": "nul\u{0}@example.com", "password": "long-enough-1" });
    let response = app.request(Method::POST, "/auth/login").json(&login).send().await.unwrap();
    assert_problem(response, 401, "invalid-credentials").await;
    assert_eq!(app.task_rows().await, 0, "nothing was written");
}

#[tokio::test]
async fn invalid_ids_routes_and_methods_are_problems() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let body = assert_problem(send(&app, &user, Method::GET, "/tasks/not-a-uuid", None).await, 400, "invalid-id").await;
    assert_eq!(body["detail"], "the id in the path must be a UUID");
    assert_problem(send(&app, &user, Method::DELETE, "/tasks/123", None).await, 400, "invalid-id").await;
    assert_problem(send(&app, &user, Method::GET, "/nowhere", None).await, 404, "not-found").await;
    assert_problem(send(&app, &user, Method::PUT, "/tasks", None).await, 405, "method-not-allowed").await;
    let response = send_with_header(
        &app,
        &user,
        Method::PATCH,
        &format!("/tasks/{}", uuid::Uuid::now_v7()),
        ("if-match", "W/\"1\""),
        json!({"title":"x"}),
    )
    .await;
    assert_problem(response, 400, "invalid-precondition").await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let response = app.request(Method::GET, "/tasks").header("x-request-id", "client-chosen-42").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-42");
    let response = app.request(Method::GET, "/health/live").send().await.unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok());
}
