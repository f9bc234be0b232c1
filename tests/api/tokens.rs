//! The token lifecycle over HTTP: refresh rotation, reuse detection,
//! logout across replicas, and what happens without Redis.

use std::time::Duration;

use crate::helpers::redis::TestRedis;
use crate::helpers::{HostOptions, PASSWORD, TestApp, assert_problem, decode_claims, status_and_json};
use futures::future::join_all;
use reqwest::{Method, Response};
use serde_json::{Value, json};

/// What a login or a refresh hands out.
struct Tokens {
    access: String,
    refresh: String,
}

impl Tokens {
    fn from_body(body: &Value) -> Self {
        Self {
            access: body["access_token"].as_str().expect("an access token").to_string(),
            refresh: body["refresh_token"].as_str().expect("a refresh token").to_string(),
        }
    }
}

async fn redis_app() -> TestApp {
    TestApp::spawn_with(HostOptions::default().redis()).await
}

async fn login(app: &TestApp, email: &str) -> Response {
    app.request(Method::POST, "/auth/login")
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
}

/// A fresh account's first login.
async fn new_session(app: &TestApp) -> (String, Tokens) {
    let email = app.register_user().await.email;
    let (status, body) = status_and_json(login(app, &email).await).await;
    assert_eq!(status, 200, "{body}");
    (email, Tokens::from_body(&body))
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.request(Method::POST, "/auth/refresh").json(&json!({ "refresh_token": refresh_token })).send().await.unwrap()
}

/// Refreshes, expecting success.
async fn rotate(app: &TestApp, refresh_token: &str) -> Tokens {
    let response = refresh(app, refresh_token).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 200, "{body}");
    Tokens::from_body(&body)
}

async fn list_tasks(app: &TestApp, access_token: &str) -> Response {
    app.request(Method::GET, "/tasks").header("authorization", format!("Bearer {access_token}")).send().await.unwrap()
}

async fn logout(app: &TestApp, access_token: &str) -> Response {
    app.request(Method::POST, "/auth/logout")
        .header("authorization", format!("Bearer {access_token}"))
        .send()
        .await
        .unwrap()
}

async fn assert_invalid_refresh(app: &TestApp, refresh_token: &str) {
    assert_problem(refresh(app, refresh_token).await, 401, "invalid-refresh-token").await;
}

async fn assert_revoked(app: &TestApp, access_token: &str) {
    let body = assert_problem(list_tasks(app, access_token).await, 401, "unauthorized").await;
    assert!(body["detail"].as_str().unwrap().contains("revoked"), "{body}");
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_on_every_use() {
    let app = redis_app().await;
    let email = app.register_user().await.email;
    let (status, body) = status_and_json(login(&app, &email).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refresh_expires_in"], 30 * 24 * 60 * 60);
    let first = Tokens::from_body(&body);
    assert_eq!(first.refresh.len(), 43, "256 bits in unpadded base64url: {}", first.refresh);
    let family = decode_claims(&first.access)["fam"].clone();
    assert!(family.is_string(), "the access token names its refresh family");

    let second = rotate(&app, &first.refresh).await;
    assert_ne!(second.refresh, first.refresh);
    let claims = decode_claims(&second.access);
    assert_eq!(claims["fam"], family, "a refresh stays in the login's family");
    assert_ne!(claims["jti"], decode_claims(&first.access)["jti"]);
    assert_eq!(list_tasks(&app, &second.access).await.status(), 200);

    let third = rotate(&app, &second.refresh).await;
    assert_invalid_refresh(&app, &first.refresh).await;
    assert_eq!(decode_claims(&third.access)["fam"], family);
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_its_whole_family() {
    let app = redis_app().await;
    let (email, first) = new_session(&app).await;
    let second = rotate(&app, &first.refresh).await;

    // The first token again: stolen, or a client racing itself.
    let body = assert_problem(refresh(&app, &first.refresh).await, 401, "invalid-refresh-token").await;
    assert_invalid_refresh(&app, &second.refresh).await;
    assert_revoked(&app, &second.access).await;
    assert_revoked(&app, &first.access).await;

    // Another login of the same account is another family, untouched.
    let (_, other) = status_and_json(login(&app, &email).await).await;
    let other = rotate(&app, &Tokens::from_body(&other).refresh).await;
    assert_eq!(list_tasks(&app, &other.access).await.status(), 200);

    // Unknown and reused tokens answer alike.
    let (_, garbage) = status_and_json(refresh(&app, "garbage").await).await;
    assert_eq!(body, garbage);
}

#[tokio::test]
async fn concurrent_uses_of_a_refresh_token_let_exactly_one_win() {
    let app = redis_app().await;
    let (_, session) = new_session(&app).await;
    let attempts = join_all((0..5).map(|_| refresh(&app, &session.refresh))).await;
    let mut winners = Vec::new();
    for response in attempts {
        let (status, body) = status_and_json(response).await;
        match status {
            200 => winners.push(Tokens::from_body(&body)),
            401 => assert_eq!(body["type"], "/problems/invalid-refresh-token", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent refresh succeeds");
    // The losers count as reuse: the winner's family is revoked with them.
    assert_invalid_refresh(&app, &winners[0].refresh).await;
}

#[tokio::test]
async fn logout_revokes_the_access_token_on_every_replica() {
    let first = redis_app().await;
    let second = TestApp::spawn_with(HostOptions::default().redis().database(&first.database)).await;
    let (email, session) = new_session(&first).await;
    let (_, other) = status_and_json(login(&first, &email).await).await;
    let other = Tokens::from_body(&other);
    assert_eq!(list_tasks(&second, &session.access).await.status(), 200);

    let response = logout(&first, &session.access).await;
    assert_eq!(response.status(), 204);
    assert_revoked(&second, &session.access).await;
    assert_revoked(&first, &session.access).await;
    assert_problem(logout(&second, &session.access).await, 401, "unauthorized").await;

    // The account's other session is not logged out.
    assert_eq!(list_tasks(&second, &other.access).await.status(), 200);
}

#[tokio::test]
async fn logout_also_revokes_the_refresh_family() {
    let app = redis_app().await;
    let (_, first) = new_session(&app).await;
    let second = rotate(&app, &first.refresh).await;

    assert_eq!(logout(&app, &second.access).await.status(), 204);
    assert_invalid_refresh(&app, &second.refresh).await;
    // An older access token of the same login dies with its family.
    assert_revoked(&app, &first.access).await;
}

#[tokio::test]
async fn garbage_refresh_tokens_are_unauthorized() {
    let app = redis_app().await;
    let (_, session) = new_session(&app).await;
    let longer = format!("{}x", session.refresh);
    for garbage in ["garbage", "", session.access.as_str(), longer.as_str()] {
        assert_invalid_refresh(&app, garbage).await;
    }
    let response = app.request(Method::POST, "/auth/refresh").json(&json!({ "token": "x" })).send().await.unwrap();
    assert_problem(response, 422, "invalid-body").await;
    // None of that touched the real token.
    rotate(&app, &session.refresh).await;
}

#[tokio::test]
async fn refresh_tokens_expire() {
    let app = TestApp::spawn_with(HostOptions::default().redis().env("REFRESH_TOKEN_TTL_SECS", "1")).await;
    let (_, session) = new_session(&app).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_invalid_refresh(&app, &session.refresh).await;
}

#[tokio::test]
async fn without_redis_login_works_and_refresh_and_logout_answer_503() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let (status, body) = status_and_json(login(&app, &user.email).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none() && body.get("refresh_expires_in").is_none(), "{body}");
    assert!(decode_claims(&user.token).get("fam").is_none());

    assert_problem(refresh(&app, "anything").await, 503, "redis-unavailable").await;
    assert_problem(logout(&app, &user.token).await, 503, "redis-unavailable").await;
    assert_eq!(list_tasks(&app, &user.token).await.status(), 200);
}

#[tokio::test]
async fn a_redis_outage_fails_revocation_checks_open_and_refresh_closed() {
    let mut redis = TestRedis::start().await;
    let app = TestApp::spawn_with(HostOptions::default().env("REDIS_URL", &redis.url())).await;
    let (email, session) = new_session(&app).await;
    redis.stop().await;

    assert_eq!(list_tasks(&app, &session.access).await.status(), 200, "access tokens stay usable");
    let response = refresh(&app, &session.refresh).await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_problem(response, 503, "redis-unavailable").await;
    assert_problem(logout(&app, &session.access).await, 503, "redis-unavailable").await;
    let (status, body) = status_and_json(login(&app, &email).await).await;
    assert_eq!(status, 200, "a login survives the outage: {body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
}
