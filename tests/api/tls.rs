//! TLS to every dependency and HTTPS, with certificates the tests make: a
//! PostgreSQL and a Redis of the test's own speaking TLS, Kafka behind a
//! TLS terminator (stunnel; Tansu has no TLS of its own), each verified
//! against the right CA and refused, clearly, with a wrong one; and the
//! host's own HTTPS listener, HTTP/2 by ALPN, picking up a renewed
//! certificate without a restart.

use reqwest::Method;
use serde_json::json;
use sqlx::Connection;

use crate::helpers::events::{TestBroker, unique_prefix};
use crate::helpers::postgres::TestPostgres;
use crate::helpers::redis::TestRedis;
use crate::helpers::tls::TestCa;
use crate::helpers::{HostOptions, ScratchDir, TestApp, create_task, eventually, send, spawn_failure, status_and_json};

fn path(path: &std::path::Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test]
async fn postgresql_over_tls_is_verified_against_the_ca_given_and_refused_with_another() {
    let dir = ScratchDir::new("tls-postgres");
    let ca = TestCa::new("todo-host test CA");
    let server = ca.issue(&dir, "postgres");
    let postgres = TestPostgres::start_tls(&server).await;
    let (right, wrong) = (ca.write(&dir.join("ca.pem")), TestCa::new("another CA").write(&dir.join("other.pem")));
    let url = |ca: &std::path::Path| {
        format!("{}?sslmode=verify-full&sslrootcert={}", TestPostgres::app_url(&postgres), path(ca))
    };

    let app = TestApp::spawn_with(HostOptions::default().env("DATABASE_URL", &url(&right))).await;
    let user = app.register_user().await;
    create_task(&app, &user, json!({ "title": "over TLS" })).await;
    let mut admin = sqlx::PgConnection::connect(&postgres.url()).await.unwrap();
    let encrypted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename <> 'postgres' AND ssl",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(encrypted > 0, "the host's and the plugins' sessions are encrypted");

    let refused = spawn_failure(HostOptions::default().env("DATABASE_URL", &url(&wrong))).await;
    assert!(refused.contains("cannot connect to PostgreSQL"), "{refused}");
    assert!(refused.to_lowercase().contains("certificate"), "the error says why: {refused}");
}

#[tokio::test]
async fn redis_over_tls_is_verified_against_the_ca_given_and_refused_with_another() {
    let dir = ScratchDir::new("tls-redis");
    let ca = TestCa::new("todo-host test CA");
    let ca_file = ca.write(&dir.join("ca.pem"));
    let redis = TestRedis::start_tls(&ca.issue(&dir, "redis"), &ca_file).await;
    let options = HostOptions::default().env("REDIS_URL", &redis.url()).env("PLUGIN_ANNOUNCE_CHANNEL", "tls-test");

    let app = TestApp::spawn_with(options.clone().env("REDIS_CA_FILE", path(&ca_file))).await;
    let user = app.register_user().await;
    let login = app
        .request(Method::POST, "/auth/login")
        .json(&json!({ "email": user.email, "password": crate::helpers::PASSWORD }))
        .send()
        .await
        .unwrap();
    let (_, tokens) = status_and_json(login).await;
    assert!(tokens["refresh_token"].is_string(), "refresh tokens live in the TLS Redis: {tokens}");
    let (_, health) = status_and_json(app.request(Method::GET, "/health").send().await.unwrap()).await;
    assert_eq!(health["checks"]["redis"]["status"], "up", "{health}");

    let other = TestCa::new("another CA").write(&dir.join("other.pem"));
    let refused = spawn_failure(options.env("REDIS_CA_FILE", path(&other))).await;
    assert!(refused.contains("cannot connect to Redis"), "{refused}");
}

#[tokio::test]
async fn kafka_over_tls_carries_commands_and_events_and_is_refused_with_another_ca() {
    let dir = ScratchDir::new("tls-kafka");
    let ca = TestCa::new("todo-host test CA");
    let ca_file = ca.write(&dir.join("ca.pem"));
    let (_broker, stunnel) = TestBroker::behind_tls(&ca.issue(&dir, "kafka")).await;
    let over_tls = |ca: &std::path::Path| {
        HostOptions::default()
            .kafka_on(&stunnel.url(), &unique_prefix(), &["audit-log"])
            .env("KAFKA_SECURITY_PROTOCOL", "ssl")
            .env("KAFKA_SSL_CA_FILE", path(ca))
    };

    let app = TestApp::spawn_with(over_tls(&ca_file)).await;
    let user = app.register_user().await;
    let accepted = app
        .request(Method::POST, "/tasks")
        .header("authorization", user.bearer())
        .header("prefer", "respond-async")
        .json(&json!({ "title": "through the TLS broker" }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202, "the command went to the broker");
    let location = accepted.headers()["location"].to_str().unwrap().to_string();
    let applied = eventually("the command to be applied", || async {
        let (_, command) = crate::helpers::command(&app, &user, &location).await;
        (command["status"] == "applied").then_some(command)
    })
    .await;
    let id = applied["result"]["task"]["id"].as_str().unwrap().to_string();
    eventually("audit-log to record the change, read from the TLS broker", || async {
        let (status, history) = crate::helpers::history(&app, &user, &id).await;
        (status == 200 && history["items"].as_array().is_some_and(|items| !items.is_empty())).then_some(())
    })
    .await;

    let other = TestCa::new("another CA").write(&dir.join("other.pem"));
    let refused = spawn_failure(over_tls(&other)).await;
    assert!(refused.contains("cannot create the Kafka topics"), "{refused}");
    assert!(refused.contains("certificate verify failed"), "the error says why: {refused}");
}

#[tokio::test]
async fn https_serves_the_configured_certificate_over_http2_and_a_renewed_one_without_a_restart() {
    let dir = ScratchDir::new("tls-https");
    let ca = TestCa::new("todo-host test CA");
    let first = ca.issue(&dir, "first");
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let app = TestApp::spawn_with(
        HostOptions::default()
            .env("TLS_CERT_FILE", path(&cert))
            .env("TLS_KEY_FILE", path(&key))
            .env("TLS_RELOAD_SECS", "1")
            .trusting(&ca.pem),
    )
    .await;
    assert!(app.address.starts_with("https://"), "{}", app.address);
    let client = || {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
            .tls_info(true)
            .build()
            .unwrap()
    };
    let served = |response: &reqwest::Response| {
        response.extensions().get::<reqwest::tls::TlsInfo>().and_then(|info| info.peer_certificate()).unwrap().to_vec()
    };
    let response = client().get(app.url("/health/live")).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.version()), (200, reqwest::Version::HTTP_2));
    assert_eq!(served(&response), first.der, "the configured certificate");
    let user = app.register_user().await;
    assert_eq!(send(&app, &user, Method::GET, "/tasks", None).await.status(), 200);

    let renewed = ca.issue(&dir, "renewed");
    for (from, to) in [(&renewed.key, &key), (&renewed.cert, &cert)] {
        std::fs::copy(from, dir.join("staged")).unwrap();
        std::fs::rename(dir.join("staged"), to).unwrap();
    }
    eventually("a new connection to get the renewed certificate", || async {
        let response = client().get(app.url("/health/live")).send().await.ok()?;
        (served(&response) == renewed.der).then_some(())
    })
    .await;

    let plain = reqwest::Client::new().get(app.url("/health/live").replace("https://", "http://")).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200, "no plain HTTP on the HTTPS listener");
}
