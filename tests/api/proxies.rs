//! Behind a load balancer (`TRUSTED_PROXIES`): a real nginx in front of two
//! replicas. Clients behind the same proxy keep their own rate limits and
//! appear in the logs as themselves; a forwarding header from a peer that is
//! not a trusted proxy is ignored; `Location` stays right behind the proxy.

use reqwest::{Client, Method};
use serde_json::json;

use crate::helpers::server::LocalServer;
use crate::helpers::{HostOptions, PASSWORD, TestApp, is_root};

/// nginx proxying to `upstreams` (round robin), as a site's config would.
async fn nginx(upstreams: &[&TestApp]) -> LocalServer {
    let servers: String = upstreams
        .iter()
        .map(|app| format!("server {};", app.address.trim_start_matches("http://")))
        .collect::<Vec<_>>()
        .join(" ");
    LocalServer::start(
        "nginx",
        |port| format!("http://127.0.0.1:{port}"),
        move |port, dir| {
            let user = if is_root() { "user root;" } else { "" };
            let dir = dir.display();
            let config = format!(
                "{user} worker_processes 1; daemon off; error_log {dir}/error.log; pid {dir}/nginx.pid;
                 events {{ worker_connections 256; }}
                 http {{
                   access_log off;
                   client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
                   uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
                   upstream todo {{ {servers} }}
                   server {{
                     listen 127.0.0.1:{port};
                     location / {{
                       proxy_pass http://todo;
                       proxy_set_header Host $host;
                       proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                     }}
                   }}
                 }}"
            );
            std::fs::write(format!("{dir}/nginx.conf"), config).unwrap();
            let mut command = tokio::process::Command::new("nginx");
            command.args(["-p", &dir.to_string(), "-c", &format!("{dir}/nginx.conf")]);
            command
        },
    )
    .await
}

/// A client whose connections come from `address` (any of 127/8 is this
/// machine's).
fn client_from(address: &str) -> Client {
    Client::builder().local_address(address.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
}

/// The status of a login with a wrong password, sent to `base`.
/// `forged`: a forwarding header the client adds itself.
async fn wrong_login(client: &Client, base: &str, forged: Option<(&str, &str)>) -> u16 {
    let mut request = client
        .post(format!("{base}/auth/login"))
        .json(&json!({ "email": "nobody@example.com", "password": "not the password" }));
    if let Some((name, value)) = forged {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn behind_nginx_each_client_keeps_its_own_limit_and_a_forged_forwarding_header_is_ignored() {
    let shared = HostOptions::default()
        .redis()
        .env("TRUSTED_PROXIES", "127.0.0.1/32")
        .env("AUTH_RATE_LIMIT_PER_MINUTE", "3")
        .env("AUTH_RATE_LIMIT_BURST", "3");
    let first = TestApp::spawn_with(shared.clone()).await;
    let second = TestApp::spawn_with(shared.database(&first.database)).await;
    let proxy = nginx(&[&first, &second]).await;
    let through = proxy.url();

    // Two clients behind the one proxy: each has the quota of /auth/* to itself.
    let (alice, bob) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(wrong_login(&alice, &through, None).await);
    }
    assert_eq!(statuses.iter().filter(|status| **status == 401).count(), 3, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert_eq!(wrong_login(&bob, &through, None).await, 401, "another client behind the proxy is not limited");
    // A client forging the header behind the proxy only adds to the left of the chain.
    let forged = Some(("x-forwarded-for", "198.51.100.7"));
    assert_eq!(wrong_login(&alice, &through, forged).await, 429, "the forged address is not believed");
    // Nor does the header the proxy does not write (it passes it on untouched).
    let other_header = Some(("forwarded", "for=198.51.100.8"));
    assert_eq!(wrong_login(&alice, &through, other_header).await, 429, "a forged Forwarded is not believed");
    let logs = first.logs().join("\n") + &second.logs().join("\n");
    assert!(logs.contains("127.0.0.2"), "the logs name the client, not the proxy");

    // Straight to a replica, from a peer that is no trusted proxy, the header is ignored.
    let mallory = client_from("127.0.0.4");
    let mut direct = Vec::new();
    for n in 0..5 {
        direct.push(wrong_login(&mallory, &first.address, Some(("x-forwarded-for", &format!("203.0.113.{n}")))).await);
    }
    assert_eq!(direct.last(), Some(&429), "every forged address counted as the peer's: {direct:?}");

    // Behind the proxy, a created task's Location is the path to it there.
    let email = format!("proxied-{}@example.com", uuid::Uuid::new_v4().simple());
    let registered =
        bob.post(format!("{through}/auth/register")).json(&json!({ "email": email, "password": PASSWORD }));
    assert_eq!(registered.send().await.unwrap().status(), 201);
    let login = bob.post(format!("{through}/auth/login")).json(&json!({ "email": email, "password": PASSWORD }));
    let token: serde_json::Value = login.send().await.unwrap().json().await.unwrap();
    let created = bob
        .request(Method::POST, format!("{through}/tasks"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&json!({ "title": "behind the proxy" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/tasks/"), "{location}");
    let followed = bob
        .get(format!("{through}{location}"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(followed.status(), 200);
}
