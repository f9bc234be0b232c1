//! Accounts and access tokens, over HTTP.

use std::time::Duration;

use crate::helpers::{HostOptions, JWT_SECRET, PASSWORD, TestApp, assert_problem, decode_claims, status_and_json};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test]
async fn register_answers_the_account_without_any_password() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "/auth/register")
        .json(&json!({ "email": "  Ann@Example.com ", "password": PASSWORD, "display_name": "Ann" }))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["email"], "ann@example.com");
    assert_eq!(body["display_name"], "Ann");
    assert_eq!(body["role"], "user");
    let text = body.to_string();
    assert!(!text.contains("password") && !text.contains("argon2"), "{text}");

    let stored: (String,) = sqlx::query_as("SELECT password_hash FROM users WHERE email = 'ann@example.com'")
        .fetch_one(&mut app.db().await)
        .await
        .unwrap();
    assert!(stored.0.starts_with("$argon2id$"), "{}", stored.0);
}

#[tokio::test]
async fn a_taken_email_is_a_conflict() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let response = app
        .request(Method::POST, "/auth/register")
        .json(&json!({ "email": user.email.to_uppercase(), "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_problem(response, 409, "email-taken").await;
}

#[tokio::test]
async fn the_password_policy_lists_every_broken_rule() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "/auth/register")
        .json(&json!({ "email": "not-an-email", "password": "short" }))
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, 422, "validation-failed").await;
    let errors = body["errors"].as_array().unwrap();
    let pointers: Vec<&str> = errors.iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert!(pointers.contains(&"/email"), "{body}");
    assert_eq!(pointers.iter().filter(|p| **p == "/password").count(), 2, "too short and no digit: {body}");
}

#[tokio::test]
async fn login_issues_a_bearer_jwt_with_the_standard_claims() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let response = app
        .request(Method::POST, "/auth/login")
        .json(&json!({ "email": user.email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let claims = decode_claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], user.id.to_string());
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    assert!(claims["jti"].as_str().unwrap().parse::<Uuid>().is_ok());
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_answer_alike() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    for (email, password) in [(user.email.as_str(), "wrong password 1"), ("nobody@example.com", PASSWORD)] {
        let response = app
            .request(Method::POST, "/auth/login")
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap();
        let body = assert_problem(response, 401, "invalid-credentials").await;
        assert_eq!(body["detail"], "the email or the password is wrong");
    }
}

#[tokio::test]
async fn the_user_create_command_makes_the_first_admin() {
    let app = TestApp::spawn().await;
    let admin = app.create_user("admin").await;
    assert_eq!(decode_claims(&admin.token)["role"], "admin");
}

fn token_with(secret: &[u8], header: Header, claims: Value) -> String {
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn claims_for(user: Uuid, issued: i64, expires: i64) -> Value {
    json!({ "sub": user, "role": "admin", "iat": issued, "exp": expires, "jti": Uuid::new_v4(), "iss": "todo-host" })
}

#[tokio::test]
async fn bad_tokens_are_unauthorized() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let now = chrono::Utc::now().timestamp();

    let expired =
        token_with(JWT_SECRET.as_bytes(), Header::new(Algorithm::HS256), claims_for(user.id, now - 3600, now - 60));
    let other_key = token_with(
        b"another secret that is 32+ bytes long!!",
        Header::new(Algorithm::HS256),
        claims_for(user.id, now, now + 600),
    );
    // The same payload re-signed is valid; flip one claim without re-signing.
    let mut parts: Vec<String> = user.token.split('.').map(String::from).collect();
    let mut claims = decode_claims(&user.token);
    claims["role"] = json!("admin");
    use base64::Engine as _;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = parts.join(".");
    let unsigned = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims_for(user.id, now, now + 600).to_string())
    );

    let cases = [
        (None, "needs `Authorization"),
        (Some("Basic dXNlcjpwYXNz".to_string()), "must be `Bearer"),
        (Some(format!("Bearer {expired}")), "expired"),
        (Some(format!("Bearer {other_key}")), "signature"),
        (Some(format!("Bearer {tampered}")), "signature"),
        (Some(format!("Bearer {unsigned}")), ""),
        (Some("Bearer not.a.jwt".to_string()), "malformed"),
    ];
    for (authorization, detail) in cases {
        let mut request = app.request(Method::GET, "/tasks");
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        let body = assert_problem(response, 401, "unauthorized").await;
        assert!(body["detail"].as_str().unwrap().contains(detail), "{authorization:?}: {body}");
    }

    // The untampered token still works.
    let response = app.request(Method::GET, "/tasks").header("authorization", user.bearer()).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_server_refuses_to_start_without_a_secret_unless_in_dev_mode() {
    let database = crate::helpers::create_database().await;
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(crate::helpers::host_binary())
            .arg("serve")
            .env_clear()
            .env("DATABASE_URL", crate::helpers::database_url(&database))
            .env("PLUGIN_DIR", std::env::var("TEST_PLUGIN_DIR").unwrap())
            .env("TODO_LISTEN", "127.0.0.1:0")
            .output(),
    )
    .await
    .expect("the host exits by itself")
    .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("JWT_SECRET is not set"));

    let dev_mode = HostOptions::default().database(&database).unset("JWT_SECRET").env("TODO_DEV_MODE", "true");
    let app = TestApp::spawn_with(dev_mode).await;
    let user = app.register_user().await;
    let response = app.request(Method::GET, "/tasks").header("authorization", user.bearer()).send().await.unwrap();
    assert_eq!(response.status(), 200, "a dev-mode host signs and accepts its own tokens");
}
