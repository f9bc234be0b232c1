//! The accounts API: `/users/me`, password change and reset, and the
//! admins' `/users`.

use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::events::{TopicReader, unique_prefix};
use crate::helpers::{HostOptions, PASSWORD, TestApp, TestUser, assert_problem, create_titled, send, status_and_json};

const NEW_PASSWORD: &str = "a fresh passphrase 7";

async fn login_with(app: &TestApp, email: &str, password: &str) -> Response {
    app.request(Method::POST, "/auth/login")
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

/// A login's access and refresh tokens.
async fn session(app: &TestApp, email: &str) -> (String, String) {
    let (status, body) = status_and_json(login_with(app, email, PASSWORD).await).await;
    assert_eq!(status, 200, "{body}");
    (body["access_token"].as_str().unwrap().into(), body["refresh_token"].as_str().unwrap().into())
}

async fn get_with(app: &TestApp, token: &str, path: &str) -> Response {
    app.request(Method::GET, path).bearer_auth(token).send().await.unwrap()
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.request(Method::POST, "/auth/refresh").json(&json!({ "refresh_token": refresh_token })).send().await.unwrap()
}

#[tokio::test]
async fn a_user_reads_and_renames_their_own_account() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;

    let (status, me) = status_and_json(send(&app, &user, Method::GET, "/users/me", None).await).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], user.id.to_string());
    assert_eq!(me["email"], user.email);
    assert_eq!(me["disabled"], false);
    assert!(!me.to_string().contains("argon2"), "{me}");

    let renamed = send(&app, &user, Method::PATCH, "/users/me", Some(json!({ "display_name": "  Ann  " }))).await;
    let (status, body) = status_and_json(renamed).await;
    assert_eq!((status, &body["display_name"]), (200, &json!("Ann")), "{body}");
    let cleared = send(&app, &user, Method::PATCH, "/users/me", Some(json!({ "display_name": null }))).await;
    assert_eq!(status_and_json(cleared).await.1["display_name"], Value::Null);

    let refused = send(&app, &user, Method::PATCH, "/users/me", Some(json!({ "role": "admin" }))).await;
    assert_problem(refused, 422, "invalid-body").await;
    let (_, me) = status_and_json(send(&app, &user, Method::GET, "/users/me", None).await).await;
    assert_eq!(me["role"], "user", "a user cannot make themself an admin");
    let long = "x".repeat(300);
    let refused = send(&app, &user, Method::PATCH, "/users/me", Some(json!({ "display_name": long }))).await;
    let problem = assert_problem(refused, 422, "validation-failed").await;
    assert_eq!(problem["errors"][0]["pointer"], "/display_name", "{problem}");
}

#[tokio::test]
async fn a_password_change_ends_every_other_session_and_the_old_password() {
    let app = TestApp::spawn_with(HostOptions::default().redis()).await;
    let user = app.register_user().await;
    let (phone_access, phone_refresh) = session(&app, &user.email).await;
    let (laptop_access, _) = session(&app, &user.email).await;

    let wrong = json!({ "current_password": "not the password 1", "new_password": NEW_PASSWORD });
    let response = app.request(Method::POST, "/users/me/password").bearer_auth(&laptop_access).json(&wrong);
    assert_problem(response.send().await.unwrap(), 403, "wrong-password").await;
    assert_eq!(get_with(&app, &phone_access, "/users/me").await.status(), 200, "a wrong guess changes nothing");

    let weak = json!({ "current_password": PASSWORD, "new_password": "short" });
    let response = app.request(Method::POST, "/users/me/password").bearer_auth(&laptop_access).json(&weak);
    let problem = assert_problem(response.send().await.unwrap(), 422, "validation-failed").await;
    assert_eq!(problem["errors"][0]["pointer"], "/new_password", "{problem}");

    let change = json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD });
    let response = app.request(Method::POST, "/users/me/password").bearer_auth(&laptop_access).json(&change);
    let (status, tokens) = status_and_json(response.send().await.unwrap()).await;
    assert_eq!(status, 200, "{tokens}");
    let new_access = tokens["access_token"].as_str().unwrap();

    assert_problem(get_with(&app, &phone_access, "/users/me").await, 401, "unauthorized").await;
    assert_problem(get_with(&app, &laptop_access, "/users/me").await, 401, "unauthorized").await;
    assert_problem(refresh(&app, &phone_refresh).await, 401, "invalid-refresh-token").await;
    assert_eq!(get_with(&app, new_access, "/users/me").await.status(), 200, "the answer's session goes on");
    let fresh_refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&app, fresh_refresh).await.status(), 200);

    assert_eq!(login_with(&app, &user.email, PASSWORD).await.status(), 401, "the old password is gone");
    assert_eq!(login_with(&app, &user.email, NEW_PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_disabled_account_is_refused_at_once_on_every_replica_until_enabled() {
    let first = TestApp::spawn_with(HostOptions::default().redis()).await;
    let second = TestApp::spawn_with(HostOptions::default().redis().database(&first.database)).await;
    let admin = first.create_user("admin").await;
    let user = first.register_user().await;
    let (_, user_refresh) = session(&first, &user.email).await;
    assert_eq!(get_with(&second, &user.token, "/tasks").await.status(), 200);

    let path = format!("/users/{}", user.id);
    let disabled = send(&first, &admin, Method::PATCH, &path, Some(json!({ "disabled": true }))).await;
    let (status, body) = status_and_json(disabled).await;
    assert_eq!((status, &body["disabled"]), (200, &json!(true)), "{body}");

    assert_problem(get_with(&second, &user.token, "/tasks").await, 401, "unauthorized").await;
    assert_problem(get_with(&first, &user.token, "/users/me").await, 401, "unauthorized").await;
    assert_problem(refresh(&second, &user_refresh).await, 401, "invalid-refresh-token").await;
    assert_problem(login_with(&second, &user.email, PASSWORD).await, 403, "account-disabled").await;

    let enabled = send(&second, &admin, Method::PATCH, &path, Some(json!({ "disabled": false }))).await;
    assert_eq!(enabled.status(), 200);
    let (access, _) = session(&first, &user.email).await;
    assert_eq!(get_with(&second, &access, "/tasks").await.status(), 200, "enabled again, a new login works");
    assert_eq!(get_with(&second, &user.token, "/tasks").await.status(), 401, "the tokens of before stay refused");
}

#[tokio::test]
async fn admins_list_search_and_page_the_accounts_and_no_one_else_does() {
    let app = TestApp::spawn().await;
    let admin = app.create_user("admin").await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let mut named = Vec::new();
    for n in 0..3 {
        let user = app.register_user().await;
        let body = json!({ "display_name": format!("Team {marker} {n}") });
        assert_eq!(send(&app, &user, Method::PATCH, "/users/me", Some(body)).await.status(), 200);
        named.push(user);
    }

    let search = format!("/users?search=TEAM%20{marker}&limit=2");
    let (status, first) = status_and_json(send(&app, &admin, Method::GET, &search, None).await).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["items"].as_array().unwrap().len(), 2, "{first}");
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let next = format!("{search}&cursor={cursor}");
    let (_, second) = status_and_json(send(&app, &admin, Method::GET, &next, None).await).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["next_cursor"], Value::Null);
    let mut emails: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|user| user["email"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = named.iter().map(|user| user.email.as_str()).collect();
    expected.sort();
    assert_eq!(emails, expected, "by email, each once");
    emails.dedup();

    let (_, wildcard) = status_and_json(send(&app, &admin, Method::GET, "/users?search=%25_", None).await).await;
    assert_eq!(wildcard["items"], json!([]), "`%` and `_` are searched for, not wildcards");
    let forged = send(&app, &admin, Method::GET, "/users?cursor=%%%", None).await;
    assert_problem(forged, 400, "invalid-query").await;

    let user = &named[0];
    assert_problem(send(&app, user, Method::GET, "/users", None).await, 403, "forbidden").await;
    let other = format!("/users/{}", named[1].id);
    assert_problem(send(&app, user, Method::GET, &other, None).await, 403, "forbidden").await;
    let own = format!("/users/{}", user.id);
    let promote = send(&app, user, Method::PATCH, &own, Some(json!({ "role": "admin" }))).await;
    assert_problem(promote, 403, "forbidden").await;
    assert_problem(send(&app, user, Method::DELETE, &other, None).await, 403, "forbidden").await;
    let unknown = format!("/users/{}", uuid::Uuid::now_v7());
    assert_problem(send(&app, &admin, Method::GET, &unknown, None).await, 404, "not-found").await;
}

#[tokio::test]
async fn an_admin_cannot_lock_themself_out() {
    let app = TestApp::spawn().await;
    let admin = app.create_user("admin").await;
    let own = format!("/users/{}", admin.id);
    let disable = send(&app, &admin, Method::PATCH, &own, Some(json!({ "disabled": true }))).await;
    assert_problem(disable, 409, "self-lockout").await;
    let demote = send(&app, &admin, Method::PATCH, &own, Some(json!({ "role": "viewer" }))).await;
    assert_problem(demote, 409, "self-lockout").await;
    assert_problem(send(&app, &admin, Method::DELETE, &own, None).await, 409, "self-lockout").await;
    let (_, me) = status_and_json(send(&app, &admin, Method::GET, "/users/me", None).await).await;
    assert_eq!((&me["role"], &me["disabled"]), (&json!("admin"), &json!(false)));
}

#[tokio::test]
async fn deleting_an_account_deletes_its_tasks_and_ends_its_access() {
    let app = TestApp::spawn_with(HostOptions::default().redis()).await;
    let admin = app.create_user("admin").await;
    let leaving = app.register_user().await;
    let staying = app.register_user().await;
    for title in ["one", "two", "three"] {
        create_titled(&app, &leaving, title).await;
    }
    let (kept, _) = create_titled(&app, &staying, "kept").await;
    assert_eq!(app.task_rows().await, 4);

    let path = format!("/users/{}", leaving.id);
    assert_eq!(send(&app, &admin, Method::DELETE, &path, None).await.status(), 204);
    assert_eq!(app.task_rows().await, 1, "the account's tasks went with it");
    let (_, listed) = status_and_json(send(&app, &staying, Method::GET, "/tasks", None).await).await;
    assert_eq!(listed["items"][0]["id"], kept["id"]);
    assert_problem(send(&app, &leaving, Method::GET, "/tasks", None).await, 401, "unauthorized").await;
    assert_problem(send(&app, &admin, Method::GET, &path, None).await, 404, "not-found").await;
    assert_problem(send(&app, &admin, Method::DELETE, &path, None).await, 404, "not-found").await;
    assert_eq!(login_with(&app, &leaving.email, PASSWORD).await.status(), 401);
}

/// The tokens of `password-reset` notifications sent to `email` so far.
fn reset_tokens(records: &[crate::helpers::events::Record], email: &str) -> Vec<String> {
    records
        .iter()
        .map(|record| record.json())
        .filter(|note| note["kind"] == "password-reset" && note["email"] == email)
        .map(|note| note["token"].as_str().unwrap().to_string())
        .collect()
}

async fn confirm(app: &TestApp, token: &str, password: &str) -> Response {
    let body = json!({ "token": token, "new_password": password });
    app.request(Method::POST, "/auth/password-reset/confirm").json(&body).send().await.unwrap()
}

async fn ask_reset(app: &TestApp, email: &str) -> (u16, Value) {
    let response =
        app.request(Method::POST, "/auth/password-reset").json(&json!({ "email": email })).send().await.unwrap();
    status_and_json(response).await
}

#[tokio::test]
async fn a_reset_token_sets_a_new_password_once_ends_the_sessions_and_expires() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(HostOptions::default().kafka(&prefix, &[])).await;
    let user = app.register_user().await;
    let late = app.register_user().await;
    let mut notifications = TopicReader::new(&format!("{prefix}notifications"));

    let known = ask_reset(&app, &user.email.to_uppercase()).await;
    let unknown = ask_reset(&app, "nobody-at-all@example.com").await;
    assert_eq!(known.0, 202);
    assert_eq!(known, unknown, "the answer does not tell whether the account exists");
    assert_eq!(ask_reset(&app, &late.email).await.0, 202);
    assert_eq!(ask_reset(&app, &user.email).await.0, 202, "asked twice within a minute");

    notifications.read_until(Duration::from_secs(60), |records| !reset_tokens(records, &late.email).is_empty()).await;
    let records = notifications.read_for(Duration::from_secs(2)).await.to_vec();
    let tokens = reset_tokens(&records, &user.email);
    assert_eq!(tokens.len(), 1, "one token a minute per account: {records:?}");
    assert!(
        records.iter().all(|record| !String::from_utf8_lossy(&record.payload).contains("nobody-at-all")),
        "{records:?}"
    );
    let note = records.iter().map(|record| record.json()).find(|note| note["email"] == user.email).unwrap();
    assert_eq!(note["recipient_id"], user.id.to_string());
    let stored: (Vec<u8>,) = sqlx::query_as("SELECT token_hash FROM password_reset_tokens WHERE user_id = $1")
        .bind(user.id)
        .fetch_one(&mut app.db().await)
        .await
        .unwrap();
    assert_ne!(stored.0, tokens[0].as_bytes(), "only the token's hash is kept");

    let weak = confirm(&app, &tokens[0], "weak").await;
    assert_problem(weak, 422, "validation-failed").await;
    assert_eq!(confirm(&app, &tokens[0], NEW_PASSWORD).await.status(), 204, "a weak password did not use it up");
    assert_problem(send(&app, &user, Method::GET, "/tasks", None).await, 401, "unauthorized").await;
    assert_eq!(login_with(&app, &user.email, NEW_PASSWORD).await.status(), 200);
    assert_eq!(login_with(&app, &user.email, PASSWORD).await.status(), 401);
    let again = confirm(&app, &tokens[0], "another passphrase 9").await;
    assert_problem(again, 400, "invalid-reset-token").await;
    assert_problem(confirm(&app, "made-up", NEW_PASSWORD).await, 400, "invalid-reset-token").await;

    // An expired token: as if PASSWORD_RESET_TTL_SECS had passed.
    let late_token = &reset_tokens(&records, &late.email)[0];
    sqlx::query("UPDATE password_reset_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1")
        .bind(late.id)
        .execute(&mut app.db().await)
        .await
        .unwrap();
    assert_problem(confirm(&app, late_token, NEW_PASSWORD).await, 400, "invalid-reset-token").await;
    assert_eq!(login_with(&app, &late.email, PASSWORD).await.status(), 200, "the expired token changed nothing");
}

#[tokio::test]
async fn password_resets_are_held_by_the_auth_limits_and_account_routes_refuse_anonymous_callers() {
    let app = TestApp::spawn_with(
        HostOptions::default().env("AUTH_RATE_LIMIT_PER_MINUTE", "2").env("AUTH_RATE_LIMIT_BURST", "2"),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(ask_reset(&app, "someone@example.com").await.0, 202);
    }
    assert_eq!(ask_reset(&app, "someone@example.com").await.0, 429);
    assert_problem(confirm(&app, "x", NEW_PASSWORD).await, 429, "rate-limited").await;

    let anonymous = TestUser { id: uuid::Uuid::nil(), email: String::new(), token: "not-a-token".into() };
    for (method, path) in [(Method::GET, "/users/me"), (Method::GET, "/users"), (Method::POST, "/users/me/password")] {
        assert_problem(send(&app, &anonymous, method, path, Some(json!({}))).await, 401, "unauthorized").await;
    }
}
