//! `/health/*`: open to probes without a token.

use reqwest::Method;
use serde_json::json;
use todo_host_tests::{TestApp, status_and_json};

#[tokio::test]
async fn liveness_and_readiness_answer_without_a_token() {
    let app = TestApp::spawn().await;
    let (status, body) = status_and_json(app.request(Method::GET, "/health/live").send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!({ "status": "ok" })));

    let (status, body) = status_and_json(app.request(Method::GET, "/health/ready").send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["postgres"], "up");
    assert_eq!(body["checks"]["storage_plugin"], "postgres-store@0.1.0");
    assert!(!body.to_string().contains("postgres://"), "no connection strings: {body}");
}
