//! Rate limits: per user when authenticated, per IP otherwise, stricter on
//! /auth; over quota → 429 problem+json with Retry-After and RateLimit-*.

use crate::helpers::{HostOptions, PASSWORD, TestApp, assert_problem, send};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn each_user_has_a_quota_and_429_says_when_to_retry() {
    let app =
        TestApp::spawn_with(HostOptions::default().env("RATE_LIMIT_PER_SECOND", "1").env("RATE_LIMIT_BURST", "5"))
            .await;
    let ann = app.register_user().await;
    let bob = app.register_user().await;

    for _ in 0..5 {
        assert_eq!(send(&app, &ann, Method::GET, "/tasks", None).await.status(), 200);
    }
    let response = send(&app, &ann, Method::GET, "/tasks", None).await;
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(response.headers()["ratelimit-limit"], "5");
    assert_eq!(response.headers()["ratelimit-remaining"], "0");
    assert!(response.headers().contains_key("ratelimit-reset"));
    assert!(response.headers()["ratelimit-policy"].to_str().unwrap().starts_with("5;w="));
    let body = assert_problem(response, 429, "rate-limited").await;
    assert!(body["detail"].as_str().unwrap().contains("retry in"));
    // Writes count against the same quota.
    assert_eq!(send(&app, &ann, Method::POST, "/tasks", Some(json!({ "title": "x" }))).await.status(), 429);

    // Another user from the same address still has a full quota.
    assert_eq!(send(&app, &bob, Method::GET, "/tasks", None).await.status(), 200);

    // The quota comes back with time.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(send(&app, &ann, Method::GET, "/tasks", None).await.status(), 200);
}

#[tokio::test]
async fn auth_routes_are_limited_per_address_more_strictly() {
    let app = TestApp::spawn_with(
        HostOptions::default().env("AUTH_RATE_LIMIT_PER_MINUTE", "1").env("AUTH_RATE_LIMIT_BURST", "3"),
    )
    .await;
    let login = || {
        app.request(Method::POST, "/auth/login")
            .json(&json!({ "email": "nobody@example.com", "password": PASSWORD }))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(login().await.unwrap().status(), 401);
    }
    let response = login().await.unwrap();
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 30, "one request a minute: {retry_after}");
    assert_problem(response, 429, "rate-limited").await;
    let register = app
        .request(Method::POST, "/auth/register")
        .json(&json!({ "email": "new@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 429, "the /auth quota is shared by its routes");
    // Anonymous requests elsewhere count against the (laxer) API quota.
    assert_eq!(app.request(Method::GET, "/health/live").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn replicas_share_one_quota_per_user_through_redis() {
    let options = || HostOptions::default().redis().env("RATE_LIMIT_PER_SECOND", "1").env("RATE_LIMIT_BURST", "5");
    let first = TestApp::spawn_with(options()).await;
    let second = TestApp::spawn_with(options().database(&first.database)).await;
    let ann = first.register_user().await;

    for _ in 0..5 {
        assert_eq!(send(&first, &ann, Method::GET, "/tasks", None).await.status(), 200);
    }
    // The second replica's own limiter has not seen Ann, but the cluster has.
    let response = send(&second, &ann, Method::GET, "/tasks", None).await;
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(response.headers()["ratelimit-limit"], "5");
    assert_problem(response, 429, "rate-limited").await;
}

/// Wrong passwords are counted per account on every replica, whatever
/// address they come from: guesses spread over replicas (or addresses) are
/// held too, and the answer does not tell whether the account exists.
#[tokio::test]
async fn failed_logins_are_limited_per_account_across_replicas() {
    let options = || HostOptions::default().redis().env("LOGIN_FAILURE_LIMIT", "3");
    let first = TestApp::spawn_with(options()).await;
    let second = TestApp::spawn_with(options().database(&first.database)).await;
    let ann = first.register_user().await;
    let login = |app: &TestApp, email: &str, password: &str| {
        app.request(Method::POST, "/auth/login").json(&json!({ "email": email, "password": password })).send()
    };
    let nobody = format!("nobody-{}@example.com", uuid::Uuid::new_v4().simple());
    for (app, email) in [(&first, &ann.email), (&second, &ann.email), (&first, &ann.email), (&first, &nobody)] {
        assert_eq!(login(app, email, "wrong password 1").await.unwrap().status(), 401);
    }
    for (app, email) in [(&second, &ann.email), (&first, &ann.email.to_uppercase())] {
        let response = login(app, email, PASSWORD).await.unwrap();
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry_after), "{retry_after}");
        assert_problem(response, 429, "login-locked-out").await;
    }
    // Another account, and an unknown email, keep their own counts.
    let bob = first.register_user().await;
    assert_eq!(login(&second, &bob.email, PASSWORD).await.unwrap().status(), 200);
    assert_eq!(login(&second, &nobody, "wrong password 2").await.unwrap().status(), 401);
}
