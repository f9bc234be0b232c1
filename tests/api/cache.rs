//! Cache-aside reads: a second read is a hit, every write path makes the
//! next read fresh, scopes never leak through the cache, and a Redis outage
//! costs nothing but the cache.

use crate::helpers::events::unique_prefix;
use crate::helpers::redis::TestRedis;
use crate::helpers::{HostOptions, TestApp, TestUser, create_task, send, send_with_header, status_and_json};
use reqwest::{Method, Response};
use serde_json::{Value, json};

fn cache_status(response: &Response) -> String {
    response.headers().get("cache-status").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// GET `path`: (status, body, whether it was a cache hit).
async fn read(app: &TestApp, user: &TestUser, path: &str) -> (u16, Value, bool) {
    let response = send(app, user, Method::GET, path, None).await;
    let hit = cache_status(&response).ends_with("; hit");
    let (status, body) = status_and_json(response).await;
    (status, body, hit)
}

async fn create(app: &TestApp, user: &TestUser, title: &str) -> String {
    create_task(app, user, json!({ "title": title })).await["id"].as_str().unwrap().to_string()
}

fn titles(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn the_second_read_is_a_hit_and_every_write_path_makes_the_next_read_fresh() {
    let app = TestApp::spawn_with(HostOptions::default().kafka(&unique_prefix(), &[])).await;
    let user = app.register_user().await;
    let admin = app.create_user("admin").await;
    let id = create(&app, &user, "v1").await;
    let path = format!("/tasks/{id}");

    let answer = |response: Response| async move {
        let (hit, headers) = (cache_status(&response).ends_with("; hit"), response.headers().clone());
        (hit, headers["etag"].clone(), headers["content-type"].clone(), response.bytes().await.unwrap())
    };
    let missed = answer(send(&app, &user, Method::GET, &path, None).await).await;
    assert!(!missed.0, "the first read is a miss");
    let hit = answer(send(&app, &user, Method::GET, &path, None).await).await;
    assert!(hit.0, "the second read is served from the cache");
    assert_eq!(
        (&hit.1, &hit.2, &hit.3),
        (&missed.1, &missed.2, &missed.3),
        "a hit answers the database's bytes, ETag and content type"
    );
    let task: Value = serde_json::from_slice(&hit.3).unwrap();
    assert_eq!(task["title"], "v1");
    let (_, page, _) = read(&app, &user, "/tasks").await;
    assert_eq!(titles(&page), ["v1"]);
    assert!(read(&app, &user, "/tasks").await.2, "the listing is cached too");
    assert!(read(&app, &admin, &path).await.2, "another reader shares the task entry");

    // Sync PATCH: fresh for the writer and for another reader.
    assert_eq!(send(&app, &user, Method::PATCH, &path, Some(json!({ "title": "v2" }))).await.status(), 200);
    let (_, task, hit) = read(&app, &user, &path).await;
    assert_eq!((task["title"].as_str(), hit), (Some("v2"), false));
    assert_eq!(read(&app, &admin, &path).await.1["title"], "v2");
    assert_eq!(titles(&read(&app, &user, "/tasks").await.1), ["v2"]);

    // A batch.
    let batch = json!({ "operations": [
        { "op": "update", "id": id, "changes": { "title": "v3" } },
        { "op": "create", "task": { "title": "second" } },
    ]});
    assert_eq!(send(&app, &user, Method::POST, "/tasks/batch", Some(batch)).await.status(), 200);
    assert_eq!(read(&app, &user, &path).await.1["title"], "v3");
    let mut listed = titles(&read(&app, &user, "/tasks").await.1);
    listed.sort();
    assert_eq!(listed, ["second", "v3"]);
    assert!(read(&app, &admin, "/tasks").await.1["items"].as_array().unwrap().len() == 2);

    // An async command, applied by the consumer.
    let response =
        send_with_header(&app, &user, Method::PATCH, &path, ("prefer", "respond-async"), json!({ "title": "v4" }))
            .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while read(&app, &user, &location).await.1["status"] == "pending" {
        assert!(std::time::Instant::now() < deadline, "the command was not applied");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(read(&app, &user, &path).await.1["title"], "v4");
    assert_eq!(read(&app, &admin, &path).await.1["title"], "v4");

    // A deletion, and a reassignment that moves the task between owners' listings.
    let heir = app.register_user().await;
    assert!(titles(&read(&app, &heir, "/tasks").await.1).is_empty());
    assert!(read(&app, &heir, "/tasks").await.2);
    assert_eq!(send(&app, &admin, Method::PATCH, &path, Some(json!({ "owner_id": heir.id }))).await.status(), 200);
    assert_eq!(titles(&read(&app, &heir, "/tasks").await.1), ["v4"], "the new owner's listing is fresh");
    assert_eq!(titles(&read(&app, &user, "/tasks").await.1), ["second"], "the old owner's listing is fresh");
    assert_eq!(read(&app, &user, &path).await.0, 404, "the old owner no longer sees it");
    assert_eq!(send(&app, &heir, Method::DELETE, &path, None).await.status(), 204);
    assert_eq!(read(&app, &heir, &path).await.0, 404);
    assert_eq!(read(&app, &admin, &path).await.0, 404);
}

#[tokio::test]
async fn a_cached_answer_never_reaches_a_caller_who_could_not_read_it() {
    let app = TestApp::spawn_with(HostOptions::default().redis()).await;
    let owner = app.register_user().await;
    let stranger = app.register_user().await;
    let viewer = app.create_user("viewer").await;
    let id = create(&app, &owner, "private").await;
    let path = format!("/tasks/{id}");
    for _ in 0..2 {
        assert_eq!(read(&app, &owner, &path).await.0, 200);
        read(&app, &owner, "/tasks").await;
        read(&app, &viewer, "/tasks").await;
    }
    assert!(read(&app, &owner, &path).await.2, "the task is cached");

    let (status, _, _) = read(&app, &stranger, &path).await;
    assert_eq!(status, 404, "a cached task is still another user's");
    let (_, page, _) = read(&app, &stranger, "/tasks").await;
    assert!(titles(&page).is_empty(), "another user's cached listing is not served: {page}");
    assert_eq!(titles(&read(&app, &viewer, "/tasks").await.1), ["private"], "viewers read everything");
    let (status, _, _) = read(&app, &viewer, &path).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_redis_outage_costs_only_the_cache() {
    let mut redis = TestRedis::start().await;
    let app = TestApp::spawn_with(HostOptions::default().env("REDIS_URL", &redis.url())).await;
    let user = app.register_user().await;
    let id = create(&app, &user, "before").await;
    let path = format!("/tasks/{id}");
    read(&app, &user, &path).await;
    assert!(read(&app, &user, &path).await.2);

    redis.stop().await;
    let (status, task, hit) = read(&app, &user, &path).await;
    assert_eq!((status, task["title"].as_str(), hit), (200, Some("before"), false));
    assert_eq!(send(&app, &user, Method::PATCH, &path, Some(json!({ "title": "during" }))).await.status(), 200);
    create(&app, &user, "created during").await;
    assert_eq!(read(&app, &user, &path).await.1["title"], "during");
    assert_eq!(read(&app, &user, "/tasks").await.0, 200);

    redis.restart().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, task, hit) = read(&app, &user, &path).await;
        assert_eq!((status, task["title"].as_str()), (200, Some("during")));
        if hit {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the cache did not resume after Redis returned");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Generations live a while after their last use, not forever: Redis does
/// not keep a key per task ever written (under `noeviction` it would grow
/// without bound).
#[tokio::test]
async fn cache_generations_expire() {
    let app = TestApp::spawn_with(HostOptions::default().redis().env("CACHE_TTL_SECS", "30")).await;
    let user = app.register_user().await;
    let id = create(&app, &user, "expiring").await;
    read(&app, &user, &format!("/tasks/{id}")).await;
    let patched = send(&app, &user, Method::PATCH, &format!("/tasks/{id}"), Some(json!({ "title": "again" }))).await;
    assert_eq!(patched.status(), 200);
    read(&app, &user, &format!("/tasks/{id}")).await;

    let client = redis::Client::open(crate::helpers::events::redis_url()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    // Under the database's namespace; each with the WAL position of its
    // last write.
    for suffix in [format!("gen:task:{id}"), format!("gen:scope:{}", user.id)] {
        for pattern in [format!("todo:cache:*:{suffix}"), format!("todo:cache:*:{suffix}:lsn")] {
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut redis).await.unwrap();
            assert_eq!(keys.len(), 1, "{pattern}: {keys:?}");
            let ttl: i64 = redis::cmd("TTL").arg(&keys[0]).query_async(&mut redis).await.unwrap();
            assert!((1..=60).contains(&ttl), "{} expires within twice the entry TTL (TTL {ttl})", keys[0]);
        }
    }
}
