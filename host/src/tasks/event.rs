//! Task events: the CloudEvents 1.0 envelope (structured mode) announcing a
//! task change, and its outbox record. One typed definition, used to write
//! the events and to parse them where they are consumed (docs/events.md).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::model::{Task, TaskChange};
use crate::kafka::topics;
use crate::outbox::OutboxRecord;
use crate::trace::RequestTrace;

pub const SPEC_VERSION: &str = "1.0";
pub const SOURCE: &str = "/todo-host/tasks";
pub const SCHEMA_VERSION: u32 = 1;
pub const DATA_SCHEMA: &str = "urn:todo-host:task-event:1";
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
const DATA_CONTENT_TYPE: &str = "application/json";

/// The fields a `task.updated` event reports when they change.
const TRACKED_FIELDS: [&str; 6] = ["title", "description", "status", "priority", "due_at", "owner_id"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskEventType {
    #[serde(rename = "task.created")]
    Created,
    #[serde(rename = "task.updated")]
    Updated,
    #[serde(rename = "task.deleted")]
    Deleted,
    /// Past `due_at` and not done (announced by the overdue job).
    #[serde(rename = "task.overdue")]
    Overdue,
}

impl TaskEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "task.created",
            Self::Updated => "task.updated",
            Self::Deleted => "task.deleted",
            Self::Overdue => "task.overdue",
        }
    }
}

/// One event of `task-events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub specversion: String,
    pub id: Uuid,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: TaskEventType,
    /// The task id.
    pub subject: Uuid,
    /// When the change was made.
    #[serde(serialize_with = "micros")]
    pub time: DateTime<Utc>,
    pub datacontenttype: String,
    pub dataschema: String,
    pub data: TaskEventData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEventData {
    pub schema_version: u32,
    /// After the change; as it was, for a deletion.
    pub task: Task,
    /// `{field: {from, to}}` of every tracked field an update changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Map<String, Value>>,
}

impl TaskEvent {
    /// The event announcing `change`, made at `time`.
    pub fn for_change(change: &TaskChange, time: DateTime<Utc>) -> Self {
        match change {
            TaskChange::Created(task) => Self::about(TaskEventType::Created, task, None, time),
            TaskChange::Updated { before, after } => {
                Self::about(TaskEventType::Updated, after, Some(changes(before, after)), time)
            }
            TaskChange::Deleted(task) => Self::about(TaskEventType::Deleted, task, None, time),
        }
    }

    /// `task.overdue` about `task`, noticed at `time`.
    pub fn overdue(task: &Task, time: DateTime<Utc>) -> Self {
        Self::about(TaskEventType::Overdue, task, None, time)
    }

    fn about(kind: TaskEventType, task: &Task, changes: Option<Map<String, Value>>, time: DateTime<Utc>) -> Self {
        Self {
            specversion: SPEC_VERSION.into(),
            id: Uuid::now_v7(),
            source: SOURCE.into(),
            kind,
            subject: task.id,
            time,
            datacontenttype: DATA_CONTENT_TYPE.into(),
            dataschema: DATA_SCHEMA.into(),
            data: TaskEventData { schema_version: SCHEMA_VERSION, task: task.clone(), changes },
        }
    }

    /// Reads an event as `task-events` carries it.
    pub fn parse(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// Its record on `task-events`, keyed by task id so that one task's
    /// events keep their order.
    pub fn record(&self, trace: &RequestTrace) -> OutboxRecord {
        let mut headers = trace.headers();
        headers.insert("content-type".into(), CONTENT_TYPE.into());
        OutboxRecord {
            topic: topics::TASK_EVENTS.into(),
            key: Some(self.subject.to_string()),
            payload: serde_json::to_vec(self).unwrap_or_default(),
            headers,
        }
    }
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

/// RFC 3339 with microseconds (what the store keeps) and `Z`.
fn micros<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Micros, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::model::TaskStatus;

    fn task() -> Task {
        Task::example(Uuid::now_v7(), "Write the report")
    }

    fn as_json(event: &TaskEvent) -> Value {
        serde_json::to_value(event).unwrap()
    }

    #[test]
    fn an_update_reports_only_the_fields_that_changed() {
        let before = task();
        let after = Task { status: TaskStatus::Done, description: Some("x".into()), version: 2, ..before.clone() };
        let event = as_json(&TaskEvent::for_change(&TaskChange::Updated { before: before.clone(), after }, Utc::now()));
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
            let event = as_json(&TaskEvent::for_change(&change, Utc::now()));
            assert_eq!(event["type"], kind);
            assert_eq!(event["specversion"], "1.0");
            assert_eq!(event["data"]["task"]["title"], "Write the report");
            assert_eq!(event["data"]["schema_version"], 1);
            assert!(event["data"].get("changes").is_none());
        }
    }

    #[test]
    fn what_is_written_parses_back_as_it_was() {
        let before = task();
        let after = Task { title: "Renamed".into(), version: 2, ..before.clone() };
        let event = TaskEvent::for_change(&TaskChange::Updated { before, after }, Utc::now());
        let record = event.record(&RequestTrace::new("request-1".into(), None));
        let parsed = TaskEvent::parse(&record.payload).unwrap();
        assert_eq!(parsed.id, event.id);
        assert_eq!(parsed.data, event.data);
        assert_eq!(parsed.time.timestamp_micros(), event.time.timestamp_micros());
        assert_eq!(record.key.as_deref(), Some(event.subject.to_string().as_str()));
        assert_eq!(record.headers["content-type"], CONTENT_TYPE);
    }

    #[test]
    fn the_documented_envelope_parses() {
        let documented = json!({
            "specversion": "1.0", "id": "0193a0c4-6f1e-7c3a-9d2e-4b8f0a1c2d3e", "source": "/todo-host/tasks",
            "type": "task.updated", "subject": "0193a0c4-5a00-7b11-8c22-1d2e3f405162",
            "time": "2026-11-22T10:00:00.123456Z", "datacontenttype": "application/json",
            "dataschema": "urn:todo-host:task-event:1",
            "data": { "schema_version": 1, "task": {
                "id": "0193a0c4-5a00-7b11-8c22-1d2e3f405162", "owner_id": "0193a0b0-0000-7000-8000-000000000001",
                "title": "Write the report", "description": null, "status": "done", "priority": "high",
                "due_at": "2026-11-30T17:00:00Z", "created_at": "2026-11-22T09:00:00Z",
                "updated_at": "2026-11-22T10:00:00.123456Z", "version": 4 },
                "changes": { "status": { "from": "in_progress", "to": "done" } } }
        });
        let event = TaskEvent::parse(documented.to_string().as_bytes()).unwrap();
        assert_eq!(event.kind, TaskEventType::Updated);
        assert_eq!(event.data.task.version, 4);
        assert_eq!(as_json(&event), documented);
    }
}
