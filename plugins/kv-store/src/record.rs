//! Tasks at `task:{id}`: the stored JSON and its mapping to the WIT task.
//!
//! The stored shape is the plugin's own, not the WIT record's, so that the
//! data in Redis does not change when the bindings do.

use serde::{Deserialize, Serialize};

use crate::json_kv;
use storage_kit::failure::Failure;
use storage_kit::todo::plugin::types::{Priority, Task, TaskStatus};

/// A task as stored; timestamps in microseconds since the Unix epoch.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct TaskRecord {
    id: String,
    owner_id: String,
    title: String,
    description: Option<String>,
    status: StatusName,
    priority: PriorityName,
    due_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    version: i64,
}

/// Spelled as postgres-store's `status` column.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StatusName {
    Todo,
    InProgress,
    Done,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PriorityName {
    Low,
    Medium,
    High,
}

pub fn key(id: &str) -> String {
    format!("task:{id}")
}

pub fn read(id: &str) -> Result<Option<Task>, Failure> {
    Ok(json_kv::read::<TaskRecord>(&key(id))?.map(Task::from))
}

/// The tasks `ids`, in their order; `None` for a missing one.
pub fn read_many(ids: &[String]) -> Result<Vec<Option<Task>>, Failure> {
    let keys: Vec<String> = ids.iter().map(|id| key(id)).collect();
    Ok(json_kv::read_many::<TaskRecord>(&keys)?.into_iter().map(|record| record.map(Task::from)).collect())
}

pub fn write(task: &Task) -> Result<(), Failure> {
    json_kv::write(&key(&task.id), &TaskRecord::from(task))
}

pub fn delete(id: &str) -> Result<(), Failure> {
    json_kv::delete(&key(id))
}

impl From<&Task> for TaskRecord {
    fn from(task: &Task) -> Self {
        Self {
            id: task.id.clone(),
            owner_id: task.owner_id.clone(),
            title: task.title.clone(),
            description: task.description.clone(),
            status: match task.status {
                TaskStatus::Todo => StatusName::Todo,
                TaskStatus::InProgress => StatusName::InProgress,
                TaskStatus::Done => StatusName::Done,
            },
            priority: match task.priority {
                Priority::Low => PriorityName::Low,
                Priority::Medium => PriorityName::Medium,
                Priority::High => PriorityName::High,
            },
            due_at: task.due_at,
            created_at: task.created_at,
            updated_at: task.updated_at,
            version: task.version,
        }
    }
}

impl From<TaskRecord> for Task {
    fn from(record: TaskRecord) -> Self {
        Self {
            id: record.id,
            owner_id: record.owner_id,
            title: record.title,
            description: record.description,
            status: match record.status {
                StatusName::Todo => TaskStatus::Todo,
                StatusName::InProgress => TaskStatus::InProgress,
                StatusName::Done => TaskStatus::Done,
            },
            priority: match record.priority {
                PriorityName::Low => Priority::Low,
                PriorityName::Medium => Priority::Medium,
                PriorityName::High => Priority::High,
            },
            due_at: record.due_at,
            created_at: record.created_at,
            updated_at: record.updated_at,
            version: record.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, ALICE};

    fn task() -> Task {
        Task {
            status: TaskStatus::InProgress,
            priority: Priority::High,
            due_at: Some(1_795_341_600_123_456),
            version: 3,
            ..testing::task(10, ALICE)
        }
    }

    #[test]
    fn a_task_survives_its_stored_json() {
        let json = serde_json::to_vec(&TaskRecord::from(&task())).unwrap();
        let back: TaskRecord = serde_json::from_slice(&json).unwrap();
        // The WIT task has no `PartialEq`: compare what it turns back into.
        assert_eq!(TaskRecord::from(&Task::from(back)), TaskRecord::from(&task()));
    }

    #[test]
    fn the_stored_json_spells_status_and_priority_as_words() {
        let json = serde_json::to_value(TaskRecord::from(&task())).unwrap();
        assert_eq!(json["status"], "in_progress");
        assert_eq!(json["priority"], "high");
        assert_eq!(json["description"], serde_json::Value::Null);
        assert_eq!(json["due_at"], 1_795_341_600_123_456_i64);
    }
}
