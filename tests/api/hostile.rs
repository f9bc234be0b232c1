//! Hostile input: forged and replayed tokens, bodies and strings built to
//! break a parser or an SQL statement, abused headers and paths, slow
//! clients. Every answer is a clear 4xx problem, never a 5xx, nothing is
//! written by a refused request, and the server is healthy and bounded in
//! memory afterwards.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::helpers::{JWT_SECRET, TestApp, TestUser, create_task, send, status_and_json};

/// A refusal a client can act on: 4xx, problem+json, with a slug.
async fn assert_refused(response: Response, what: &str) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let (_, body) = status_and_json(response).await;
    assert!((400..500).contains(&status), "{what}: {status} {body}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{what}: {body}");
    assert!(body["type"].as_str().is_some_and(|slug| slug.starts_with("/problems/")), "{what}: {body}");
    (status, body)
}

fn signed(algorithm: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// A token whose header says `alg` but which is signed with HMAC-SHA256 of
/// the server's secret: the classic algorithm confusion.
fn confused(alg: &str, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": alg, "typ": "JWT" }).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn forged_and_stale_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let now = chrono::Utc::now().timestamp();
    let claims = |changes: Value| {
        let mut claims = json!({ "sub": user.id, "role": "admin", "iat": now, "exp": now + 600, "jti": Uuid::new_v4(), "iss": "todo-host" });
        for (name, value) in changes.as_object().unwrap() {
            match value {
                Value::Null => claims.as_object_mut().unwrap().remove(name),
                value => claims.as_object_mut().unwrap().insert(name.clone(), value.clone()),
            };
        }
        claims
    };
    let secret = JWT_SECRET.as_bytes();
    let tokens = [
        ("HS512 with the right secret", signed(Algorithm::HS512, secret, &claims(json!({})))),
        ("RS256 header, HMAC signature", confused("RS256", &claims(json!({})))),
        ("alg none, no signature", confused("none", &claims(json!({}))).rsplit_once('.').unwrap().0.to_string() + "."),
        ("not yet valid", signed(Algorithm::HS256, secret, &claims(json!({ "nbf": now + 3600 })))),
        (
            "issued in the future",
            signed(Algorithm::HS256, secret, &claims(json!({ "iat": now + 3600, "exp": now + 7200 }))),
        ),
        ("expired", signed(Algorithm::HS256, secret, &claims(json!({ "iat": now - 7200, "exp": now - 3600 })))),
        ("without exp", signed(Algorithm::HS256, secret, &claims(json!({ "exp": null })))),
        ("another issuer", signed(Algorithm::HS256, secret, &claims(json!({ "iss": "evil" })))),
        ("a role that does not exist", signed(Algorithm::HS256, secret, &claims(json!({ "role": "root" })))),
        ("a subject that is not an id", signed(Algorithm::HS256, secret, &claims(json!({ "sub": "1 OR 1=1" })))),
        ("another secret", signed(Algorithm::HS256, b"not the server's secret, but 32+ bytes", &claims(json!({})))),
        ("20 KB of token", format!("{}.{}.x", "a".repeat(10_000), "b".repeat(10_000))),
    ];
    for (what, token) in tokens {
        let response = app.request(Method::GET, "/tasks").header("authorization", format!("Bearer {token}")).send();
        let (status, _) = assert_refused(response.await.unwrap(), what).await;
        assert_eq!(status, 401, "{what}");
    }

    // A revoked token and a replayed refresh token stay refused too.
    let redis_app = TestApp::spawn_with(crate::helpers::HostOptions::default().redis()).await;
    let ann = redis_app.register_user().await;
    let login = redis_app
        .request(Method::POST, "/auth/login")
        .json(&json!({ "email": ann.email, "password": crate::helpers::PASSWORD }))
        .send();
    let (_, tokens) = status_and_json(login.await.unwrap()).await;
    let refresh = |token: &Value| {
        redis_app.request(Method::POST, "/auth/refresh").json(&json!({ "refresh_token": token })).send()
    };
    assert_eq!(refresh(&tokens["refresh_token"]).await.unwrap().status(), 200);
    assert_refused(refresh(&tokens["refresh_token"]).await.unwrap(), "a spent refresh token").await;
    // The replay revoked the whole login: its access token too.
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let after = redis_app.request(Method::GET, "/tasks").header("authorization", &bearer).send();
    assert_refused(after.await.unwrap(), "an access token of a revoked login").await;
}

#[tokio::test]
async fn strings_built_to_break_sql_are_stored_and_searched_as_text() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let hostile = [
        "'; DROP TABLE tasks; --",
        "\" OR \"1\"=\"1",
        "' OR '1'='1' /*",
        "%_\\%",
        "$$; SELECT pg_sleep(10); $$",
        "1); DELETE FROM users; --",
    ];
    for text in hostile {
        let task = create_task(&app, &user, json!({ "title": text, "description": text })).await;
        assert_eq!((&task["title"], &task["description"]), (&json!(text), &json!(text)));
    }
    create_task(&app, &user, json!({ "title": "an ordinary task" })).await;
    for text in hostile {
        let query = format!("/tasks?q={}", urlencode(text));
        let (status, page) = status_and_json(send(&app, &user, Method::GET, &query, None).await).await;
        assert_eq!(status, 200, "{text}: {page}");
        let titles: Vec<&str> =
            page["items"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap()).collect();
        assert!(!titles.is_empty() && titles.iter().all(|title| title.contains(text)), "{text}: {titles:?}");
    }
    assert_eq!(app.task_rows().await, hostile.len() as i64 + 1, "nothing dropped, nothing deleted");

    let filters = [
        "status=todo'--",
        "owner=';DROP%20TABLE%20tasks",
        "sort=created_at;DROP",
        "order=desc%20NULLS%20FIRST",
        "limit=-1",
        "limit=99999999999999999999",
        "due_before=2026-13-45T00:00:00Z",
        "q=a%00b",
        "cursor=%27%20OR%201%3D1",
    ];
    for filter in filters {
        assert_refused(send(&app, &user, Method::GET, &format!("/tasks?{filter}"), None).await, filter).await;
    }
}

fn urlencode(text: &str) -> String {
    text.bytes().map(|byte| format!("%{byte:02X}")).collect()
}

#[tokio::test]
async fn bodies_headers_and_paths_built_to_break_the_parser_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let post = |body: Vec<u8>| {
        app.request(Method::POST, "/tasks")
            .header("authorization", user.bearer())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let deep = format!("{{\"title\": {}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies = [
        ("100,000 nested arrays", deep.into_bytes()),
        ("a lone surrogate", br#"{"title":"\ud800"}"#.to_vec()),
        ("invalid UTF-8", b"{\"title\":\"\xff\xfe\"}".to_vec()),
        ("a number past f64 as priority", br#"{"title":"a","priority":1e400}"#.to_vec()),
        ("a title of 100,000 characters", json!({ "title": "x".repeat(100_000) }).to_string().into_bytes()),
        ("an array for an object", b"[1,2,3]".to_vec()),
        ("the key twice", br#"{"title":"a","title":"b"}"#.to_vec()),
    ];
    for (what, body) in bodies {
        assert_refused(post(body).await.unwrap(), what).await;
    }
    let task = create_task(&app, &user, json!({ "title": "target" })).await;
    let id = task["id"].as_str().unwrap();
    let with = |name: &'static str, value: String| {
        app.request(Method::PATCH, format!("/tasks/{id}").as_str())
            .header("authorization", user.bearer())
            .header(name, value)
            .json(&json!({ "title": "changed" }))
            .send()
    };
    for (name, value) in
        [("if-match", "\"not a version\"".to_string()), ("if-match", "\"99999999999999999999999\"".to_string())]
    {
        assert_refused(with(name, value).await.unwrap(), name).await;
    }
    let keyed = app
        .request(Method::POST, "/tasks")
        .header("authorization", user.bearer())
        .header("idempotency-key", "k".repeat(10_000))
        .json(&json!({ "title": "keyed" }))
        .send();
    assert_refused(keyed.await.unwrap(), "an Idempotency-Key of 10,000 characters").await;
    for path in [
        "/tasks/..%2Fadmin%2Fplugins",
        "/tasks/%00",
        &format!("/tasks/{}", "9".repeat(5_000)),
        "/tasks/00000000-0000-0000-0000-000000000000%27%20OR%201=1",
        "/admin/plugins/..%2F..%2Fetc%2Fpasswd/rollback",
    ] {
        assert_refused(send(&app, &user, Method::GET, path, None).await, path).await;
    }
    let (_, unchanged) = status_and_json(send(&app, &user, Method::GET, &format!("/tasks/{id}"), None).await).await;
    assert_eq!(unchanged["title"], "target", "no refused request changed it");
}

/// Clients that send their headers a byte at a time, or never finish them,
/// hold a connection each, not the server: everyone else is served, and
/// after a burst of abuse the server is ready and its memory bounded.
#[tokio::test]
async fn slow_and_abusive_clients_leave_the_server_healthy_and_bounded() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let address = app.url("").trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n").await.unwrap();
        slow.push(stream);
    }
    let (status, _) = status_and_json(send(&app, &user, Method::GET, "/tasks", None).await).await;
    assert_eq!(status, 200, "served while 200 connections dawdle");

    let before = app.proc_number("status", "VmRSS");
    let abuse = (0..2_000).map(|n| abusive_request(&app, &user, n));
    for response in futures::future::join_all(abuse).await {
        let status = response.unwrap().status().as_u16();
        assert!((400..500).contains(&status), "abuse answered {status}");
    }
    drop(slow);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = app.proc_number("status", "VmRSS");
    assert!(after < before + 64 * 1024, "memory grew from {before} to {after} KiB");
    let ready = app.request(Method::GET, "/health/ready").send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

fn abusive_request(app: &TestApp, user: &TestUser, n: usize) -> impl Future<Output = reqwest::Result<Response>> {
    let request = match n % 4 {
        0 => app.request(Method::POST, "/tasks").header("authorization", user.bearer()).body("{\"title\":"),
        1 => app.request(Method::GET, "/tasks?limit=0").header("authorization", user.bearer()),
        2 => app.request(Method::GET, "/tasks").header("authorization", "Bearer a.b.c"),
        _ => app.request(Method::DELETE, &format!("/tasks/{n}")).header("authorization", user.bearer()),
    };
    request.send()
}
