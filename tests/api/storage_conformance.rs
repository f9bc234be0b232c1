//! ONE behaviour, every storage strategy: each scenario below runs against
//! each storage plugin named in `conformance!` at the bottom (a new
//! strategy joins by adding its name). Black-box, over HTTP, against real
//! PostgreSQL and Redis.

use std::collections::HashSet;

use crate::helpers::{
    HostOptions, TestApp, TestUser, assert_problem, create_task, send, send_with_header, status_and_json,
};
use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

async fn app_with(plugin: &str) -> TestApp {
    TestApp::spawn_with(HostOptions::default().redis().env("STORAGE_PLUGIN", plugin)).await
}

fn task_path(task: &Value) -> String {
    format!("/tasks/{}", task["id"].as_str().unwrap())
}

async fn get(app: &TestApp, user: &TestUser, path: &str) -> (u16, Value) {
    status_and_json(send(app, user, Method::GET, path, None).await).await
}

fn titles(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|task| task["title"].as_str().unwrap().to_string()).collect()
}

async fn list(app: &TestApp, user: &TestUser, query: &str) -> Value {
    let (status, page) = get(app, user, &format!("/tasks?{query}")).await;
    assert_eq!(status, 200, "{query}: {page}");
    page
}

async fn crud_round_trip(plugin: &str) {
    let app = app_with(plugin).await;
    let user = app.register_user().await;
    let task = create_task(
        &app,
        &user,
        json!({ "title": "Write report", "description": "quarterly", "priority": "high", "due_at": "2031-05-01T09:00:00Z" }),
    )
    .await;
    assert_eq!((&task["version"], &task["status"], &task["owner_id"]), (&json!(1), &json!("todo"), &json!(user.id)));
    let path = task_path(&task);
    let (status, fetched) = get(&app, &user, &path).await;
    assert_eq!((status, &fetched), (200, &task));

    let changes = json!({ "status": "in_progress", "description": null });
    let (status, updated) = status_and_json(send(&app, &user, Method::PATCH, &path, Some(changes)).await).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!((&updated["version"], &updated["status"]), (&json!(2), &json!("in_progress")));
    assert_eq!((&updated["description"], &updated["title"]), (&Value::Null, &json!("Write report")));
    assert_eq!(get(&app, &user, &path).await.1, updated);

    let stale =
        send_with_header(&app, &user, Method::PATCH, &path, ("if-match", "\"1\""), json!({ "title": "x" })).await;
    assert_problem(stale, 412, "version-mismatch").await;
    let (status, _) = status_and_json(send(&app, &user, Method::DELETE, &path, None).await).await;
    assert_eq!(status, 204);
    assert_problem(send(&app, &user, Method::GET, &path, None).await, 404, "not-found").await;
    assert_problem(send(&app, &user, Method::DELETE, &path, None).await, 404, "not-found").await;
}

async fn owners_see_their_own_tasks_only(plugin: &str) {
    let app = app_with(plugin).await;
    let (owner, stranger) = (app.register_user().await, app.register_user().await);
    let (admin, viewer) = (app.create_user("admin").await, app.create_user("viewer").await);
    let task = create_task(&app, &owner, json!({ "title": "private" })).await;
    let path = task_path(&task);
    assert_problem(send(&app, &stranger, Method::GET, &path, None).await, 404, "not-found").await;
    let patch = send(&app, &stranger, Method::PATCH, &path, Some(json!({ "title": "mine now" }))).await;
    assert_problem(patch, 404, "not-found").await;
    assert_problem(send(&app, &stranger, Method::DELETE, &path, None).await, 404, "not-found").await;
    assert!(titles(&list(&app, &stranger, "").await).is_empty());
    assert_eq!(get(&app, &viewer, &path).await.0, 200, "viewers read every task");
    assert_eq!(titles(&list(&app, &admin, &format!("owner={}", owner.id)).await), ["private"]);

    let nobody = json!({ "owner_id": uuid::Uuid::now_v7() });
    let refused = send(&app, &admin, Method::PATCH, &path, Some(nobody.clone())).await;
    assert_eq!(assert_problem(refused, 422, "validation-failed").await["errors"][0]["pointer"], "/owner_id");
    let refused =
        send(&app, &admin, Method::POST, "/tasks", Some(json!({ "title": "orphan", "owner_id": nobody["owner_id"] })))
            .await;
    assert_problem(refused, 422, "validation-failed").await;
    let batch = json!({ "operations": [{ "op": "update", "id": task["id"], "changes": nobody }] });
    let refused = send(&app, &admin, Method::POST, "/tasks/batch", Some(batch)).await;
    let problem = assert_problem(refused, 422, "validation-failed").await;
    assert_eq!(problem["errors"][0]["pointer"], "/operations/0/changes/owner_id", "{problem}");

    let reassigned = json!({ "owner_id": stranger.id });
    let (status, moved) = status_and_json(send(&app, &admin, Method::PATCH, &path, Some(reassigned)).await).await;
    assert_eq!((status, &moved["owner_id"]), (200, &json!(stranger.id)), "{moved}");
    assert!(titles(&list(&app, &owner, "").await).is_empty());
    assert_eq!(titles(&list(&app, &stranger, "").await), ["private"]);
}

const PRIORITIES: [&str; 3] = ["low", "medium", "high"];

async fn filters_sorts_and_pages_agree(plugin: &str) {
    let app = app_with(plugin).await;
    let user = app.register_user().await;
    let fixtures = [
        ("Buy MILK", "todo", "low", Some("2030-01-10T00:00:00Z")),
        ("buy bread", "done", "high", Some("2030-02-10T00:00:00Z")),
        ("Call mum", "in_progress", "medium", None),
        ("file taxes", "todo", "high", Some("2030-03-10T00:00:00Z")),
    ];
    for (title, status, priority, due_at) in fixtures {
        create_task(&app, &user, json!({ "title": title, "status": status, "priority": priority, "due_at": due_at }))
            .await;
    }
    assert_eq!(titles(&list(&app, &user, "status=todo&sort=created_at&order=asc").await), ["Buy MILK", "file taxes"]);
    assert_eq!(
        titles(&list(&app, &user, "priority=high&sort=created_at&order=asc").await),
        ["buy bread", "file taxes"]
    );
    assert_eq!(titles(&list(&app, &user, "q=BUY&sort=created_at&order=asc").await), ["Buy MILK", "buy bread"]);
    assert_eq!(titles(&list(&app, &user, "due_before=2030-02-01T00:00:00Z").await), ["Buy MILK"]);
    assert_eq!(
        titles(&list(&app, &user, "due_after=2030-02-01T00:00:00Z&sort=due_at&order=asc").await),
        ["buy bread", "file taxes"]
    );
    assert_eq!(
        titles(&list(&app, &user, "sort=due_at&order=asc").await),
        ["Buy MILK", "buy bread", "file taxes", "Call mum"]
    );
    assert_eq!(
        titles(&list(&app, &user, "sort=due_at&order=desc").await),
        ["Call mum", "file taxes", "buy bread", "Buy MILK"]
    );
    let by_priority = titles(&list(&app, &user, "sort=priority&order=desc").await);
    assert_eq!(&by_priority[2..], ["Call mum", "Buy MILK"], "{by_priority:?}");

    // Walk 30 more tasks seven at a time while others are being added:
    // every task that existed before the walk is seen exactly once.
    for n in 0..30 {
        create_task(&app, &user, json!({ "title": format!("bulk {n:02}"), "priority": PRIORITIES[n % 3] })).await;
    }
    for sort in ["sort=created_at&order=asc", "sort=priority&order=desc", "sort=due_at&order=asc"] {
        let (mut seen, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let query = match &cursor {
                Some(cursor) => format!("{sort}&limit=7&cursor={cursor}"),
                None => format!("{sort}&limit=7"),
            };
            let page = list(&app, &user, &query).await;
            seen.extend(titles(&page));
            create_task(&app, &user, json!({ "title": "added during the walk", "priority": "high" })).await;
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let existing: Vec<&String> = seen.iter().filter(|title| *title != "added during the walk").collect();
        assert_eq!(existing.len(), 34, "{sort}: {seen:?}");
        assert_eq!(existing.iter().collect::<HashSet<_>>().len(), 34, "{sort}: no duplicates");
    }
    assert_problem(send(&app, &user, Method::GET, "/tasks?cursor=not-a-cursor", None).await, 400, "invalid-query")
        .await;
}

async fn batches_are_all_or_nothing(plugin: &str) {
    let app = app_with(plugin).await;
    let user = app.register_user().await;
    let kept = create_task(&app, &user, json!({ "title": "kept" })).await;
    let batch = json!({ "operations": [
        { "op": "create", "task": { "title": "rolled back" } },
        { "op": "update", "id": kept["id"], "changes": { "title": "rolled back too" } },
        { "op": "delete", "id": uuid::Uuid::now_v7() },
    ]});
    let body =
        assert_problem(send(&app, &user, Method::POST, "/tasks/batch", Some(batch)).await, 404, "batch-failed").await;
    assert_eq!(body["failures"][0]["index"], 2, "{body}");
    assert_eq!(titles(&list(&app, &user, "").await), ["kept"], "nothing was applied");
    assert_eq!(get(&app, &user, &task_path(&kept)).await.1["version"], 1);

    let batch = json!({ "operations": [
        { "op": "create", "task": { "title": "new" } },
        { "op": "update", "id": kept["id"], "changes": { "status": "done" }, "expected_version": 1 },
    ]});
    let (status, body) = status_and_json(send(&app, &user, Method::POST, "/tasks/batch", Some(batch)).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(titles(&list(&app, &user, "sort=created_at&order=asc").await), ["kept", "new"]);
    assert_eq!(get(&app, &user, &task_path(&kept)).await.1["status"], "done");
}

async fn concurrent_updates_of_different_fields_all_survive(plugin: &str) {
    let app = app_with(plugin).await;
    let user = app.register_user().await;
    let task = create_task(&app, &user, json!({ "title": "contended" })).await;
    let path = task_path(&task);
    let changes: Vec<Value> = (0..20)
        .map(|n| match n % 4 {
            0 => json!({ "title": format!("title {n}") }),
            1 => json!({ "description": format!("description {n}") }),
            2 => json!({ "priority": "high" }),
            _ => json!({ "status": "in_progress" }),
        })
        .collect();
    let answers =
        join_all(changes.iter().map(|change| send(&app, &user, Method::PATCH, &path, Some(change.clone())))).await;
    for answer in answers {
        assert_eq!(answer.status(), 200);
    }
    let (_, last) = get(&app, &user, &path).await;
    assert_eq!(last["version"], 21, "every update was applied once: {last}");
    assert!(last["title"].as_str().unwrap().starts_with("title "), "{last}");
    assert!(last["description"].as_str().unwrap().starts_with("description "), "{last}");
    assert_eq!((&last["priority"], &last["status"]), (&json!("high"), &json!("in_progress")));
}

macro_rules! conformance {
    ($($module:ident => $plugin:literal),* $(,)?) => {$(
        mod $module {
            #[tokio::test]
            async fn crud_round_trip() {
                super::crud_round_trip($plugin).await
            }

            #[tokio::test]
            async fn owners_see_their_own_tasks_only() {
                super::owners_see_their_own_tasks_only($plugin).await
            }

            #[tokio::test]
            async fn filters_sorts_and_pages_agree() {
                super::filters_sorts_and_pages_agree($plugin).await
            }

            #[tokio::test]
            async fn batches_are_all_or_nothing() {
                super::batches_are_all_or_nothing($plugin).await
            }

            #[tokio::test]
            async fn concurrent_updates_of_different_fields_all_survive() {
                super::concurrent_updates_of_different_fields_all_survive($plugin).await
            }
        }
    )*};
}

conformance! {
    postgres_store => "postgres-store",
    kv_store => "kv-store",
}
