//! `GET /tasks`: filters, sort orders and keyset pagination.

use std::collections::HashSet;

use crate::helpers::{TestApp, TestUser, assert_problem, send, status_and_json};
use reqwest::Method;
use serde_json::{Value, json};

async fn list(app: &TestApp, user: &TestUser, query: &str) -> Value {
    let (status, body) = status_and_json(send(app, user, Method::GET, &format!("/tasks?{query}"), None).await).await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

fn titles(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|t| t["title"].as_str().unwrap().to_string()).collect()
}

/// Creates tasks through one batch (fast) and answers their ids in order.
async fn seed(app: &TestApp, user: &TestUser, tasks: Vec<Value>) -> Vec<String> {
    let operations: Vec<Value> = tasks.into_iter().map(|task| json!({ "op": "create", "task": task })).collect();
    let (status, body) =
        status_and_json(send(app, user, Method::POST, "/tasks/batch", Some(json!({ "operations": operations }))).await)
            .await;
    assert_eq!(status, 200, "{body}");
    body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn filters_narrow_the_listing() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    seed(
        &app,
        &user,
        vec![
            json!({ "title": "Buy MILK", "status": "todo", "priority": "high", "due_at": "2030-01-10T00:00:00Z" }),
            json!({ "title": "milk the cow", "status": "done", "priority": "low", "due_at": "2030-01-20T00:00:00Z" }),
            json!({ "title": "100% done_ish", "status": "in_progress", "priority": "medium" }),
        ],
    )
    .await;

    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(titles(&list(&app, &user, "q=milk").await)), ["Buy MILK", "milk the cow"]);
    assert_eq!(titles(&list(&app, &user, "q=%25").await), ["100% done_ish"], "LIKE wildcards are literal");
    assert_eq!(titles(&list(&app, &user, "q=o_i").await), Vec::<String>::new());
    assert_eq!(titles(&list(&app, &user, "status=done").await), ["milk the cow"]);
    assert_eq!(titles(&list(&app, &user, "priority=high").await), ["Buy MILK"]);
    assert_eq!(titles(&list(&app, &user, "due_before=2030-01-15T00:00:00Z").await), ["Buy MILK"]);
    assert_eq!(titles(&list(&app, &user, "due_after=2030-01-15T00:00:00Z").await), ["milk the cow"]);
    assert_eq!(titles(&list(&app, &user, "q=milk&status=todo&priority=high").await), ["Buy MILK"]);
}

#[tokio::test]
async fn sort_orders_are_honoured() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    seed(
        &app,
        &user,
        vec![
            json!({ "title": "a", "priority": "low", "due_at": "2030-03-01T00:00:00Z" }),
            json!({ "title": "b", "priority": "high" }),
            json!({ "title": "c", "priority": "medium", "due_at": "2030-01-01T00:00:00Z" }),
        ],
    )
    .await;
    assert_eq!(titles(&list(&app, &user, "sort=created_at&order=asc").await), ["a", "b", "c"]);
    assert_eq!(titles(&list(&app, &user, "").await), ["c", "b", "a"], "newest first by default");
    assert_eq!(titles(&list(&app, &user, "sort=priority&order=desc").await), ["b", "c", "a"]);
    assert_eq!(titles(&list(&app, &user, "sort=due_at&order=asc").await), ["c", "a", "b"], "undated last");
    assert_eq!(titles(&list(&app, &user, "sort=due_at&order=desc").await), ["b", "a", "c"]);
}

#[tokio::test]
async fn only_admins_filter_by_owner_and_users_see_their_own() {
    let app = TestApp::spawn().await;
    let ann = app.register_user().await;
    let bob = app.register_user().await;
    let admin = app.create_user("admin").await;
    seed(&app, &ann, vec![json!({ "title": "ann's" })]).await;
    seed(&app, &bob, vec![json!({ "title": "bob's" })]).await;

    assert_eq!(titles(&list(&app, &ann, "").await), ["ann's"]);
    assert_eq!(titles(&list(&app, &admin, "").await).len(), 2);
    assert_eq!(titles(&list(&app, &admin, &format!("owner={}", bob.id)).await), ["bob's"]);
    let response = send(&app, &ann, Method::GET, &format!("/tasks?owner={}", bob.id), None).await;
    assert_problem(response, 403, "forbidden").await;
}

#[tokio::test]
async fn bad_listing_parameters_are_clear_errors() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    for query in [
        "limit=0",
        "limit=101",
        "status=finished",
        "sort=title",
        "due_before=tomorrow",
        "colour=red",
        "cursor=%21%21",
        "cursor=",
    ] {
        let response = send(&app, &user, Method::GET, &format!("/tasks?{query}"), None).await;
        assert_problem(response, 400, "invalid-query").await;
    }
}

#[tokio::test]
async fn a_cursor_only_continues_its_own_listing() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    seed(&app, &user, (0..3).map(|i| json!({ "title": format!("t{i}"), "status": "todo" })).collect()).await;
    let page = list(&app, &user, "limit=1&status=todo").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    list(&app, &user, &format!("limit=1&status=todo&cursor={cursor}")).await;
    let response = send(&app, &user, Method::GET, &format!("/tasks?limit=1&status=done&cursor={cursor}"), None).await;
    let body = assert_problem(response, 400, "invalid-query").await;
    assert!(body["detail"].as_str().unwrap().contains("other filters"), "{body}");
}

/// A cursor is sealed: one altered to carry another position (here one the
/// storage plugin cannot even parse) is the client's error, not an outage.
#[tokio::test]
async fn a_forged_cursor_is_refused_as_bad_input() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    seed(&app, &user, (0..2).map(|i| json!({ "title": format!("t{i}") })).collect()).await;
    let page = list(&app, &user, "limit=1").await;
    let (payload, tag) = page["next_cursor"].as_str().unwrap().split_once('.').unwrap();
    let mut sealed: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    for position in
        ["99999999999999999999:00000000-0000-0000-0000-000000000000", "1:not-a-uuid-but-36-characters-long!!"]
    {
        sealed["c"] = json!(position);
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(sealed.to_string()));
        let response = send(&app, &user, Method::GET, &format!("/tasks?limit=1&cursor={forged}"), None).await;
        let body = assert_problem(response, 400, "invalid-query").await;
        assert!(body["detail"].as_str().unwrap().contains("not one this server issued"), "{body}");
    }
}

/// Walks every page of `query` and answers the ids in the order seen.
async fn walk(app: &TestApp, user: &TestUser, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_query = match &cursor {
            Some(cursor) => format!("{query}&cursor={cursor}"),
            None => query.to_string(),
        };
        let page = list(app, user, &page_query).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 20);
        ids.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn pagination_neither_repeats_nor_skips_while_tasks_are_inserted() {
    let app = TestApp::spawn().await;
    let user = app.register_user().await;
    let mut originals = Vec::new();
    for chunk in 0..3 {
        let size = if chunk < 2 { 100 } else { 50 };
        let tasks = (0..size)
            .map(|i| {
                let priority = ["low", "medium", "high"][i % 3];
                json!({ "title": format!("task {chunk}-{i}"), "priority": priority, "due_at": format!("2030-01-{:02}T00:00:00Z", i % 28 + 1) })
            })
            .collect();
        originals.extend(seed(&app, &user, tasks).await);
    }
    assert_eq!(originals.len(), 250);

    for query in
        ["limit=20&sort=created_at&order=asc", "limit=20", "limit=20&sort=priority&order=desc", "limit=20&sort=due_at"]
    {
        // A writer keeps inserting while the reader walks the pages.
        let writer = {
            let (client, url, bearer) = (app.client.clone(), app.url("/tasks"), user.bearer());
            tokio::spawn(async move {
                for i in 0..40 {
                    let response = client
                        .post(&url)
                        .header("authorization", &bearer)
                        .json(&json!({ "title": format!("concurrent {i}"), "priority": "high" }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201);
                }
            })
        };
        let seen = walk(&app, &user, query).await;
        writer.await.unwrap();

        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{query}: a task appeared twice");
        let missing: Vec<&String> = originals.iter().filter(|id| !unique.contains(id)).collect();
        assert!(missing.is_empty(), "{query}: {} original tasks were skipped", missing.len());
    }
}
