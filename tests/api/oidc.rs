//! Tokens of an external identity provider (`OIDC_ISSUER`): a provider of
//! the test's own serves its discovery document and key set (RSA and EC
//! keys made with openssl); its tokens are accepted and their users created
//! on first sight with the role the token carries, and every forgery —
//! another issuer or audience, an unknown key, HS256 with the public key,
//! `alg: none`, an expired token, an ID token — is a 401; a provider whose
//! keys cannot be fetched makes a 503.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::get;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{HostOptions, ScratchDir, TestApp, assert_problem, eventually, status_and_json};

const AUDIENCE: &str = "todo-host";

/// A key of the provider: how it signs and what it publishes.
struct SigningKey {
    kid: &'static str,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    /// A fresh key pair made by openssl (`RSA` or `EC`).
    fn new(kid: &'static str, algorithm: Algorithm, dir: &std::path::Path) -> (Self, String) {
        let pem = dir.join(format!("{kid}.pem"));
        let options: &[&str] = match algorithm {
            Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            _ => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        };
        let made = std::process::Command::new("openssl").arg("genpkey").args(options).arg("-out").arg(&pem).status();
        assert!(made.unwrap().success(), "openssl genpkey failed");
        let private = std::fs::read(&pem).unwrap();
        let public = std::process::Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&pem).output().unwrap();
        let encoding = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private).unwrap(),
            _ => EncodingKey::from_ec_pem(&private).unwrap(),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, algorithm).unwrap();
        jwk.common.key_id = Some(kid.to_string());
        (Self { kid, algorithm, encoding, jwk }, String::from_utf8(public.stdout).unwrap())
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.kid, claims)
    }

    /// Signed with this key, the header naming `kid`.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The provider: its issuer URL, the keys it publishes (changeable), and
/// how often its key set was fetched.
struct Provider {
    issuer: String,
    published: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    async fn start(keys: Vec<Jwk>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/realms/todo", listener.local_addr().unwrap());
        let (published, fetches) = (Arc::new(Mutex::new(keys)), Arc::new(AtomicUsize::new(0)));
        let discovery = json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/protocol/openid-connect/certs") });
        let (keys, count) = (published.clone(), fetches.clone());
        let app = axum::Router::new()
            .route("/realms/todo/.well-known/openid-configuration", get(move || async move { Json(discovery) }))
            .route(
                "/realms/todo/protocol/openid-connect/certs",
                get(move || async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    Json(JwkSet { keys: keys.lock().unwrap().clone() })
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { issuer, published, fetches }
    }

    fn claims(&self, subject: &str, roles: &[&str]) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({
            "iss": self.issuer, "aud": AUDIENCE, "sub": subject, "iat": now, "nbf": now, "exp": now + 300,
            "email": format!("{subject}@example.com"), "email_verified": true, "name": "Keycloak User",
            "realm_access": { "roles": roles }, "typ": "Bearer",
        })
    }
}

async fn get_tasks(app: &TestApp, token: &str) -> reqwest::Response {
    app.request(Method::GET, "/tasks").bearer_auth(token).send().await.unwrap()
}

async fn refused(app: &TestApp, token: &str, why: &str) {
    let problem = assert_problem(get_tasks(app, token).await, 401, "unauthorized").await;
    assert!(problem["detail"].as_str().unwrap().contains(why), "expected «{why}»: {problem}");
}

#[tokio::test]
async fn a_providers_tokens_are_accepted_and_every_forgery_is_refused() {
    let dir = ScratchDir::new("oidc");
    let (rsa, rsa_public_pem) = SigningKey::new("rsa-1", Algorithm::RS256, &dir);
    let (ec, _) = SigningKey::new("ec-1", Algorithm::ES256, &dir);
    let (rotated, _) = SigningKey::new("rsa-2", Algorithm::RS256, &dir);
    let provider = Provider::start(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
    let app = TestApp::spawn_with(
        HostOptions::default()
            .env("OIDC_ISSUER", &provider.issuer)
            .env("OIDC_AUDIENCE", AUDIENCE)
            .env("OIDC_JWKS_REFRESH_SECS", "1"),
    )
    .await;

    // A user of the provider: created on first sight, once.
    let subject = Uuid::new_v4().to_string();
    let token = rsa.sign(&provider.claims(&subject, &[]));
    assert_eq!(get_tasks(&app, &token).await.status(), 200);
    let created = app
        .request(Method::POST, "/tasks")
        .bearer_auth(&token)
        .json(&json!({ "title": "from the provider" }))
        .send()
        .await
        .unwrap();
    let (status, task) = status_and_json(created).await;
    assert_eq!(status, 201, "{task}");
    let mut db = app.db().await;
    let accounts: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, email, role FROM users WHERE external_subject = $1")
            .bind(&subject)
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(accounts.len(), 1, "one account, however many requests");
    assert_eq!(
        (accounts[0].0.to_string(), accounts[0].2.as_str()),
        (task["owner_id"].as_str().unwrap().into(), "user")
    );
    assert_eq!(accounts[0].1, format!("{subject}@example.com"));

    // An email the provider did not verify is not taken: the account gets
    // an undeliverable one of its own.
    let unverified = Uuid::new_v4().to_string();
    let mut claims = provider.claims(&unverified, &[]);
    claims["email_verified"] = json!(false);
    assert_eq!(get_tasks(&app, &rsa.sign(&claims)).await.status(), 200);
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE external_subject = $1")
        .bind(&unverified)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(email.ends_with("@external.invalid"), "{email}");

    // The role comes from the token (Keycloak's realm roles), EC keys too.
    let admin = ec.sign(&provider.claims(&Uuid::new_v4().to_string(), &["offline_access", "todo-admin"]));
    assert_eq!(app.request(Method::GET, "/admin/plugins").bearer_auth(&admin).send().await.unwrap().status(), 200);
    let plain = ec.sign(&provider.claims(&Uuid::new_v4().to_string(), &[]));
    assert_eq!(app.request(Method::GET, "/admin/plugins").bearer_auth(&plain).send().await.unwrap().status(), 403);

    // Forgeries.
    let mut claims = provider.claims(&subject, &[]);
    claims["iss"] = json!("http://127.0.0.1:9/realms/other");
    refused(&app, &rsa.sign(&claims), "").await;
    let mut claims = provider.claims(&subject, &[]);
    claims["aud"] = json!("another-client");
    refused(&app, &rsa.sign(&claims), "not meant for this server").await;
    let mut claims = provider.claims(&subject, &[]);
    claims["exp"] = json!(jsonwebtoken::get_current_timestamp() - 3600);
    refused(&app, &rsa.sign(&claims), "expired").await;
    refused(&app, &rsa.sign_as("not-published", &provider.claims(&subject, &[])), "does not publish").await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(
        &header,
        &provider.claims(&subject, &["todo-admin"]),
        &EncodingKey::from_secret(rsa_public_pem.as_bytes()),
    )
    .unwrap();
    refused(&app, &confused, "not signed with an algorithm").await;
    let unsigned = {
        let encode = |value: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
        format!("{}.{}.", encode(json!({ "alg": "none", "kid": "rsa-1" })), encode(provider.claims(&subject, &[])))
    };
    refused(&app, &unsigned, "malformed").await;
    // The provider's ID token for this audience is no access token.
    let mut claims = provider.claims(&subject, &[]);
    claims["typ"] = json!("ID");
    refused(&app, &rsa.sign(&claims), "not an access token").await;

    // A key the provider rotated in is fetched once a token names it; made-up
    // keys do not make the host fetch the set at every request.
    provider.published.lock().unwrap().push(rotated.jwk.clone());
    let fresh = rotated.sign(&provider.claims(&subject, &[]));
    eventually("the rotated key to be fetched", || async {
        (get_tasks(&app, &fresh).await.status() == 200).then_some(())
    })
    .await;
    let before = provider.fetches.load(Ordering::SeqCst);
    for n in 0..20 {
        let made_up = rsa.sign_as(&format!("made-up-{n}"), &provider.claims(&subject, &[]));
        assert_eq!(get_tasks(&app, &made_up).await.status(), 401);
    }
    assert!(provider.fetches.load(Ordering::SeqCst) - before <= 3, "fetched at most once a second");

    // Sessions of the provider end there; the host's own logins still work.
    let logout = app.request(Method::POST, "/auth/logout").bearer_auth(&token).send().await.unwrap();
    assert_problem(logout, 400, "provider-session").await;
    let own = app.register_user().await;
    assert_eq!(get_tasks(&app, &own.token).await.status(), 200);
}

#[tokio::test]
async fn a_provider_whose_keys_cannot_be_fetched_makes_its_tokens_a_503_not_a_401() {
    let dir = ScratchDir::new("oidc-down");
    let (rsa, _) = SigningKey::new("rsa-1", Algorithm::RS256, &dir);
    let provider = Provider::start(vec![rsa.jwk.clone()]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = TestApp::spawn_with(
        HostOptions::default()
            .env("OIDC_ISSUER", &provider.issuer)
            .env("OIDC_AUDIENCE", AUDIENCE)
            .env("OIDC_JWKS_URL", &format!("http://{closed}/certs")),
    )
    .await;
    let token = rsa.sign(&provider.claims(&Uuid::new_v4().to_string(), &[]));
    let response = get_tasks(&app, &token).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 503, "identity-unavailable").await;
    let own = app.register_user().await;
    assert_eq!(get_tasks(&app, &own.token).await.status(), 200, "the host's own tokens do not depend on it");
}
