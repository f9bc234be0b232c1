//! `GET /tasks/events`: task events as server-sent events, on every
//! replica, resumable with `Last-Event-ID`.

use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::events::unique_prefix;
use crate::helpers::{HostOptions, TestApp, TestUser, assert_problem, create_titled, send};

const WAIT: Duration = Duration::from_secs(30);

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: String,
    data: Value,
}

/// Reads a `text/event-stream` response event by event.
struct Stream {
    response: Response,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, user: &TestUser, last_event_id: Option<&str>) -> Response {
        let mut request = app.request(Method::GET, "/tasks/events").bearer_auth(&user.token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.unwrap()
    }

    async fn new(app: &TestApp, user: &TestUser, last_event_id: Option<&str>) -> Self {
        let response = Self::open(app, user, last_event_id).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { response, buffer: String::new() }
    }

    /// The next event (comments skipped), or `None` when `wait` passes first.
    async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block.lines().find_map(|line| line.strip_prefix(name).map(|value| value.trim_start().to_string()))
                };
                let Some(event) = field("event:") else { continue };
                let data = field("data:").map_or(Value::Null, |data| serde_json::from_str(&data).unwrap());
                return Some(Sse { event, id: field("id:").unwrap_or_default(), data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?.unwrap()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `task` event, panicking on anything else.
    async fn task_event(&mut self) -> Sse {
        let event = self.next(WAIT).await.expect("a task event");
        assert_eq!(event.event, "task", "{event:?}");
        event
    }
}

/// Creates tasks of `user` until `stream` shows one: the process follows
/// the topic from its end, from a moment after it started.
async fn warm_up(app: &TestApp, user: &TestUser, stream: &mut Stream) -> Sse {
    for _ in 0..30 {
        create_titled(app, user, "warm-up").await;
        if let Some(event) = stream.next(Duration::from_secs(1)).await {
            return event;
        }
    }
    panic!("no live event arrived");
}

fn live_app(prefix: &str) -> HostOptions {
    HostOptions::default().kafka(prefix, &[]).env("LIVE_STREAMS_PER_USER", "3")
}

#[tokio::test]
async fn a_change_made_on_one_replica_reaches_the_streams_of_those_who_may_see_it_on_another() {
    let prefix = unique_prefix();
    let first = TestApp::spawn_with(live_app(&prefix)).await;
    let second = TestApp::spawn_with(live_app(&prefix).database(&first.database)).await;
    let (ann, bob, admin) =
        (first.register_user().await, first.register_user().await, first.create_user("admin").await);
    let mut anns = Stream::new(&second, &ann, None).await;
    let mut admins = Stream::new(&second, &admin, None).await;
    warm_up(&first, &ann, &mut anns).await;
    while admins.next(Duration::from_secs(2)).await.is_some() {}

    create_titled(&first, &bob, "bob's").await;
    let (task, _) = create_titled(&first, &ann, "ann's").await;
    let event = anns.task_event().await;
    assert_eq!(event.data["type"], "task.created");
    assert_eq!(event.data["subject"], task["id"], "bob's task is not ann's to see");
    assert_eq!(event.data["data"]["task"]["title"], "ann's");
    let admin_saw: Vec<Value> = [admins.task_event().await, admins.task_event().await]
        .iter()
        .map(|event| event.data["data"]["task"]["title"].clone())
        .collect();
    assert_eq!(admin_saw.len(), 2);
    assert!(admin_saw.contains(&json!("bob's")) && admin_saw.contains(&json!("ann's")), "{admin_saw:?}");

    // Given away, a task's update still reaches the one who gave it.
    let path = format!("/tasks/{}", task["id"].as_str().unwrap());
    let body = json!({ "owner_id": bob.id });
    assert_eq!(send(&first, &admin, Method::PATCH, &path, Some(body)).await.status(), 200);
    let given = anns.task_event().await;
    assert_eq!(given.data["type"], "task.updated");
    assert_eq!(given.data["data"]["task"]["owner_id"], bob.id.to_string());
}

#[tokio::test]
async fn a_stream_resumes_after_the_last_event_seen_and_an_unknown_position_resets() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(live_app(&prefix)).await;
    let user = app.register_user().await;
    let mut stream = Stream::new(&app, &user, None).await;
    let seen = warm_up(&app, &user, &mut stream).await;
    drop(stream);

    for title in ["missed one", "missed two"] {
        create_titled(&app, &user, title).await;
    }
    let mut resumed = Stream::new(&app, &user, Some(&seen.id)).await;
    let mut titles = Vec::new();
    while titles.len() < 2 {
        let event = resumed.task_event().await;
        if event.data["data"]["task"]["title"] != "warm-up" {
            titles.push(event.data["data"]["task"]["title"].clone());
        }
    }
    assert_eq!(titles, [json!("missed one"), json!("missed two")], "in order, after the one seen");

    let mut lost = Stream::new(&app, &user, Some("0:999999999")).await;
    let reset = lost.next(WAIT).await.unwrap();
    assert_eq!(reset.event, "reset", "{reset:?}");
    create_titled(&app, &user, "after the reset").await;
    assert_eq!(lost.task_event().await.data["data"]["task"]["title"], "after the reset");
}

#[tokio::test]
async fn a_user_holds_a_bounded_number_of_streams_and_anonymous_callers_none() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(live_app(&prefix)).await;
    let user = app.register_user().await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Stream::new(&app, &user, None).await);
    }
    assert_problem(Stream::open(&app, &user, None).await, 429, "too-many-streams").await;
    drop(open.pop());
    // The server notices the closed stream when it next writes to it.
    crate::helpers::eventually("a slot to free", || async {
        create_titled(&app, &user, "nudge").await;
        (Stream::open(&app, &user, None).await.status() == 200).then_some(())
    })
    .await;

    let anonymous = app.request(Method::GET, "/tasks/events").send().await.unwrap();
    assert_problem(anonymous, 401, "unauthorized").await;

    let without_broker = TestApp::spawn().await;
    let someone = without_broker.register_user().await;
    assert_problem(Stream::open(&without_broker, &someone, None).await, 503, "live-events-unavailable").await;
}

#[tokio::test]
async fn a_stream_ends_soon_after_its_account_is_disabled() {
    let prefix = unique_prefix();
    let app = TestApp::spawn_with(live_app(&prefix)).await;
    let admin = app.create_user("admin").await;
    let user = app.register_user().await;
    let mut stream = Stream::new(&app, &user, None).await;
    let path = format!("/users/{}", user.id);
    assert_eq!(send(&app, &admin, Method::PATCH, &path, Some(json!({ "disabled": true }))).await.status(), 200);

    // The stream re-checks its token every 15 s; then it ends.
    let ended = tokio::time::timeout(Duration::from_secs(40), async {
        while stream.response.chunk().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the disabled account's stream went on");
    assert_problem(Stream::open(&app, &user, None).await, 401, "unauthorized").await;
}
