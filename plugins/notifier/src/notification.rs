//! Which notifications an event calls for, and whom they go to
//! (docs/events.md, "Notifications").

use serde::{Deserialize, Serialize};

use crate::exports::todo::plugin::handler::Event;
use crate::time;

/// The part of an event's `data` notifications need.
#[derive(Deserialize)]
struct EventData {
    task: TaskFacts,
    changes: Option<Changes>,
}

#[derive(Deserialize)]
struct TaskFacts {
    id: String,
    owner_id: String,
    title: String,
}

/// The changes of a `task.updated` event that notify anyone.
#[derive(Deserialize, Default)]
struct Changes {
    status: Option<Change>,
    owner_id: Option<Change>,
}

#[derive(Deserialize)]
struct Change {
    to: String,
}

/// One record of the `notifications` topic.
#[derive(Serialize)]
pub struct Notification {
    pub kind: &'static str,
    pub recipient_id: String,
    task_id: String,
    title: String,
    event_id: String,
    occurred_at: String,
}

/// The notifications `event` calls for, in the order to publish them (an
/// update may both complete and reassign a task). `Err` describes malformed
/// data; the data of an event that notifies nobody is not read.
pub fn for_event(event: &Event) -> Result<Vec<Notification>, String> {
    match event.type_.as_str() {
        "task.updated" => {
            let data = parse(event)?;
            let changes = data.changes.unwrap_or_default();
            let mut found = Vec::new();
            if changes.status.is_some_and(|status| status.to == "done") {
                found.push(notification(event, &data.task, "task.completed", &data.task.owner_id));
            }
            if let Some(owner) = changes.owner_id {
                found.push(notification(event, &data.task, "task.reassigned", &owner.to));
            }
            Ok(found)
        }
        "task.overdue" => {
            let data = parse(event)?;
            Ok(vec![notification(event, &data.task, "task.overdue", &data.task.owner_id)])
        }
        _ => Ok(Vec::new()),
    }
}

fn parse(event: &Event) -> Result<EventData, String> {
    serde_json::from_str(&event.data).map_err(|error| error.to_string())
}

fn notification(event: &Event, task: &TaskFacts, kind: &'static str, recipient_id: &str) -> Notification {
    Notification {
        kind,
        recipient_id: recipient_id.to_string(),
        task_id: task.id.clone(),
        title: task.title.clone(),
        event_id: event.id.clone(),
        occurred_at: time::rfc3339(event.time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "0193a0b0-0000-7000-8000-000000000001";
    const NEW_OWNER: &str = "0193a0b0-0000-7000-8000-000000000002";

    fn event(kind: &str, changes: &str) -> Event {
        let task =
            format!(r#"{{"id": "t1", "owner_id": "{NEW_OWNER}", "title": "Write the report", "status": "done"}}"#);
        Event {
            id: "e1".into(),
            type_: kind.into(),
            source: "/todo-host/tasks".into(),
            subject: Some("t1".into()),
            time: 1_795_341_600_123_456,
            data: format!(r#"{{"schema_version": 1, "task": {task}{changes}}}"#),
        }
    }

    fn kinds_and_recipients(event: &Event) -> Vec<(&'static str, String)> {
        for_event(event).unwrap().into_iter().map(|n| (n.kind, n.recipient_id)).collect()
    }

    #[test]
    fn an_update_completing_and_reassigning_notifies_twice() {
        let changes = format!(
            r#", "changes": {{"status": {{"from": "todo", "to": "done"}}, "owner_id": {{"from": "{OWNER}", "to": "{NEW_OWNER}"}}}}"#
        );
        let event = event("task.updated", &changes);
        assert_eq!(
            kinds_and_recipients(&event),
            [("task.completed", NEW_OWNER.to_string()), ("task.reassigned", NEW_OWNER.to_string())]
        );
        let payload = serde_json::to_value(&for_event(&event).unwrap()[0]).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({
                "kind": "task.completed",
                "recipient_id": NEW_OWNER,
                "task_id": "t1",
                "title": "Write the report",
                "event_id": "e1",
                "occurred_at": "2026-11-22T10:00:00.123456Z",
            })
        );
    }

    #[test]
    fn other_changes_and_events_notify_nobody() {
        let reopened = event("task.updated", r#", "changes": {"status": {"from": "done", "to": "todo"}}"#);
        assert!(kinds_and_recipients(&reopened).is_empty());
        let created = Event { data: "not json".into(), ..event("task.created", "") };
        assert!(kinds_and_recipients(&created).is_empty());
    }

    #[test]
    fn an_overdue_task_notifies_its_owner() {
        assert_eq!(kinds_and_recipients(&event("task.overdue", "")), [("task.overdue", NEW_OWNER.to_string())]);
    }

    #[test]
    fn malformed_data_is_an_error() {
        let event = event("task.updated", r#", "changes": {"owner_id": {"from": "x"}}"#);
        assert!(matches!(for_event(&event), Err(detail) if detail.contains("missing field `to`")));
    }
}
