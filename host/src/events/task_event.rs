//! The CloudEvents 1.0 envelope of a task change (structured mode; the
//! schema is in docs/events.md).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::tasks::model::{Task, TaskChange};

pub const SOURCE: &str = "/todo-host/tasks";
pub const SCHEMA_VERSION: u32 = 1;
pub const DATA_SCHEMA: &str = "urn:todo-host:task-event:1";
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// The fields a `task.updated` event reports when they change.
const TRACKED_FIELDS: [&str; 6] = ["title", "description", "status", "priority", "due_at", "owner_id"];

/// The envelope announcing `change`, made at `time`.
pub fn for_change(change: &TaskChange, time: DateTime<Utc>) -> Value {
    match change {
        TaskChange::Created(task) => envelope("task.created", task, None, time),
        TaskChange::Updated { before, after } => envelope("task.updated", after, Some(changes(before, after)), time),
        TaskChange::Deleted(task) => envelope("task.deleted", task, None, time),
    }
}

/// An envelope of `kind` about `task`.
pub fn envelope(kind: &str, task: &Task, changes: Option<Map<String, Value>>, time: DateTime<Utc>) -> Value {
    let mut data = json!({ "schema_version": SCHEMA_VERSION, "task": task });
    if let Some(changes) = changes {
        data["changes"] = Value::Object(changes);
    }
    json!({
        "specversion": "1.0",
        "id": Uuid::now_v7(),
        "source": SOURCE,
        "type": kind,
        "subject": task.id,
        "time": time.to_rfc3339_opts(SecondsFormat::Micros, true),
        "datacontenttype": "application/json",
        "dataschema": DATA_SCHEMA,
        "data": data,
    })
}

/// `{field: {from, to}}` for every tracked field whose value differs.
fn changes(before: &Task, after: &Task) -> Map<String, Value> {
    let (Ok(Value::Object(before)), Ok(Value::Object(after))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return Map::new();
    };
    TRACKED_FIELDS
        .iter()
        .filter_map(|&field| {
            let (from, to) = (before.get(field)?, after.get(field)?);
            (from != to).then(|| (field.to_string(), json!({ "from": from, "to": to })))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::model::{Priority, TaskStatus};

    fn task() -> Task {
        let now = Utc::now();
        Task {
            id: Uuid::now_v7(),
            owner_id: Uuid::now_v7(),
            title: "Write the report".into(),
            description: None,
            status: TaskStatus::Todo,
            priority: Priority::Medium,
            due_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    #[test]
    fn an_update_reports_only_the_fields_that_changed() {
        let before = task();
        let after = Task { status: TaskStatus::Done, description: Some("x".into()), version: 2, ..before.clone() };
        let event = for_change(&TaskChange::Updated { before: before.clone(), after }, Utc::now());
        assert_eq!(event["type"], "task.updated");
        assert_eq!(event["subject"], before.id.to_string());
        assert_eq!(
            event["data"]["changes"],
            json!({ "status": { "from": "todo", "to": "done" }, "description": { "from": null, "to": "x" } })
        );
    }

    #[test]
    fn creation_and_deletion_carry_the_task_and_no_changes() {
        let task = task();
        for (change, kind) in
            [(TaskChange::Created(task.clone()), "task.created"), (TaskChange::Deleted(task.clone()), "task.deleted")]
        {
            let event = for_change(&change, Utc::now());
            assert_eq!(event["type"], kind);
            assert_eq!(event["specversion"], "1.0");
            assert_eq!(event["data"]["task"]["title"], "Write the report");
            assert_eq!(event["data"]["schema_version"], 1);
            assert!(event["data"].get("changes").is_none());
        }
    }
}
