//! The task model: the API's types and their validation. Plain data — no
//! I/O, no knowledge of plugins or HTTP.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub use crate::validation::FieldError;
use crate::validation::{NO_NUL_RULE, contains_nul, present};

pub const TITLE_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Todo,
    InProgress,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    /// UUIDv7: ids sort by creation time.
    pub id: Uuid,
    pub owner_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub status: TaskStatus,
    pub priority: Priority,
    pub due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Starts at 1 and grows by one per change; the `ETag` of the task.
    pub version: i64,
}

#[cfg(test)]
impl Task {
    /// A new task of `owner_id`, for tests.
    pub fn example(owner_id: Uuid, title: &str) -> Self {
        let now = Utc::now();
        Self {
            id: Uuid::now_v7(),
            owner_id,
            title: title.into(),
            description: None,
            status: TaskStatus::Todo,
            priority: Priority::Medium,
            due_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }
}

/// A task as the JSON a read answers, with the fields the read decides
/// on. A cache hit is served as stored, without a round trip through
/// `Task`: the bytes are `serde_json`'s of the `Task`, as `axum::Json`
/// would have written them.
#[derive(Debug, Clone)]
pub struct TaskJson {
    pub owner_id: Uuid,
    pub version: i64,
    pub json: Vec<u8>,
}

impl TaskJson {
    pub fn new(task: &Task) -> Result<Self, serde_json::Error> {
        Ok(Self { owner_id: task.owner_id, version: task.version, json: serde_json::to_vec(task)? })
    }

    /// Reads the fields a read decides on from stored JSON.
    pub fn parse(json: Vec<u8>) -> Option<Self> {
        #[derive(Deserialize)]
        struct Decisive {
            owner_id: Uuid,
            version: i64,
        }
        let Decisive { owner_id, version } = serde_json::from_slice(&json).ok()?;
        Some(Self { owner_id, version, json })
    }
}

/// One recorded change of a task, as the history plugin answers it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryEntry {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub request_id: Option<String>,
    /// `{field: {from, to}}` for an update.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub changes: Option<serde_json::Value>,
    /// The task after the change (as it was, for a deletion).
    #[schema(value_type = Task)]
    pub task: serde_json::Value,
    /// The task's owner at that change: whom the entry is visible to.
    #[serde(skip)]
    pub owner_id: Uuid,
    /// The task's version after the change: the entries' order.
    #[serde(skip)]
    pub version: i64,
}

/// What a write did to one task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskChange {
    Created(Task),
    Updated {
        before: Task,
        after: Task,
    },
    /// The task as it was.
    Deleted(Task),
}

impl TaskChange {
    /// The task after the change, or as it was before a deletion.
    pub fn task(&self) -> &Task {
        match self {
            TaskChange::Created(task) | TaskChange::Deleted(task) => task,
            TaskChange::Updated { after, .. } => after,
        }
    }
}

/// The body of `POST /tasks` (and of a batch `create`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Write the quarterly report", "priority": "high", "due_at": "2030-01-31T17:00:00Z"}))]
pub struct NewTask {
    /// Not blank.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub title: String,
    /// Without NUL characters.
    #[serde(default)]
    #[schema(max_length = 10000, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    #[serde(default)]
    pub status: Option<TaskStatus>,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub due_at: Option<DateTime<Utc>>,
    /// Admins may create a task for another user.
    #[serde(default)]
    pub owner_id: Option<Uuid>,
}

/// The body of `PATCH /tasks/{id}`: an absent field is left alone, `null`
/// clears a nullable field.
/// At least one field must be given.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "in_progress", "due_at": null}))]
pub struct TaskChanges {
    /// Not blank.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub title: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 10000, pattern = r"^[^\u0000]*$")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = TaskStatus)]
    pub status: Option<Option<TaskStatus>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Priority)]
    pub priority: Option<Option<Priority>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub due_at: Option<Option<DateTime<Utc>>>,
    /// Reassigns the task (admins only).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Uuid)]
    pub owner_id: Option<Option<Uuid>>,
}

/// A validated patch, ready for the store: `None` leaves a field alone,
/// `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<TaskStatus>,
    pub priority: Option<Priority>,
    pub due_at: Option<Option<DateTime<Utc>>>,
    pub owner_id: Option<Uuid>,
}

impl NewTask {
    /// Checks every rule and answers all broken ones at once; timestamps
    /// are truncated to the microseconds the store keeps.
    pub fn validate(mut self) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        check_title(&self.title, &mut errors);
        if let Some(description) = &self.description {
            check_description(description, &mut errors);
        }
        self.due_at = self.due_at.map(|due| due.trunc_subsecs(6));
        if errors.is_empty() { Ok(self) } else { Err(errors) }
    }
}

impl TaskChanges {
    pub fn validate(self) -> Result<TaskPatch, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut required = |field: &str, given: bool| {
            if !given {
                errors.push(FieldError::new(format!("/{field}"), format!("`{field}` cannot be null")));
            }
        };
        if let Some(title) = &self.title {
            required("title", title.is_some());
        }
        if let Some(status) = &self.status {
            required("status", status.is_some());
        }
        if let Some(priority) = &self.priority {
            required("priority", priority.is_some());
        }
        if let Some(owner) = &self.owner_id {
            required("owner_id", owner.is_some());
        }
        if let Some(Some(title)) = &self.title {
            check_title(title, &mut errors);
        }
        if let Some(Some(description)) = &self.description {
            check_description(description, &mut errors);
        }
        let patch = TaskPatch {
            title: self.title.flatten(),
            description: self.description,
            status: self.status.flatten(),
            priority: self.priority.flatten(),
            due_at: self.due_at.map(|due| due.map(|due| due.trunc_subsecs(6))),
            owner_id: self.owner_id.flatten(),
        };
        if patch == TaskPatch::default() && errors.is_empty() {
            errors.push(FieldError::new("", "the patch changes nothing: give at least one field"));
        }
        if errors.is_empty() { Ok(patch) } else { Err(errors) }
    }
}

fn check_title(title: &str, errors: &mut Vec<FieldError>) {
    let length = title.chars().count();
    if title.trim().is_empty() {
        errors.push(FieldError::new("/title", "must not be empty or blank"));
    } else if contains_nul(title) {
        errors.push(FieldError::new("/title", NO_NUL_RULE));
    } else if length > TITLE_MAX_CHARS {
        errors.push(FieldError::new("/title", format!("must be at most {TITLE_MAX_CHARS} characters (got {length})")));
    }
}

fn check_description(description: &str, errors: &mut Vec<FieldError>) {
    let length = description.chars().count();
    if contains_nul(description) {
        errors.push(FieldError::new("/description", NO_NUL_RULE));
    } else if length > DESCRIPTION_MAX_CHARS {
        errors.push(FieldError::new(
            "/description",
            format!("must be at most {DESCRIPTION_MAX_CHARS} characters (got {length})"),
        ));
    }
}

/// Sort orders of `GET /tasks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    #[default]
    CreatedAt,
    DueAt,
    Priority,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    Asc,
    #[default]
    Desc,
}

/// What to list; the owner scope of the caller is added by the service.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskFilter {
    pub owner_id: Option<Uuid>,
    pub status: Option<TaskStatus>,
    pub priority: Option<Priority>,
    pub due_before: Option<DateTime<Utc>>,
    pub due_after: Option<DateTime<Utc>>,
    pub title_contains: Option<String>,
}

/// One page of a listing to read: its order, size and where it starts
/// (the storage plugin's own cursor).
pub struct PageRequest {
    pub sort: SortField,
    pub order: SortOrder,
    pub limit: u32,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskPage {
    pub items: Vec<Task>,
    pub next_cursor: Option<String>,
}

/// One operation of `POST /tasks/batch`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum BatchOperation {
    Create {
        task: NewTask,
    },
    Update {
        id: Uuid,
        changes: TaskChanges,
        #[serde(default)]
        expected_version: Option<i64>,
    },
    Delete {
        id: Uuid,
        #[serde(default)]
        expected_version: Option<i64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_task(title: &str) -> NewTask {
        serde_json::from_value(serde_json::json!({ "title": title })).unwrap()
    }

    #[test]
    fn blank_and_long_titles_are_refused() {
        assert!(new_task("   ").validate().is_err());
        assert!(new_task(&"x".repeat(201)).validate().is_err());
        assert!(new_task(&"é".repeat(200)).validate().is_ok(), "200 characters, 400 bytes");
    }

    #[test]
    fn every_broken_rule_is_listed() {
        let task: NewTask =
            serde_json::from_value(serde_json::json!({ "title": "", "description": "d".repeat(10_001) })).unwrap();
        let errors = task.validate().unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/title", "/description"]);
    }

    #[test]
    fn nul_characters_are_refused_by_field() {
        let task: NewTask =
            serde_json::from_value(serde_json::json!({ "title": "a\u{0}b", "description": "\u{0}" })).unwrap();
        let errors = task.validate().unwrap_err();
        assert_eq!(errors, [FieldError::new("/title", NO_NUL_RULE), FieldError::new("/description", NO_NUL_RULE)]);
    }

    #[test]
    fn patch_tells_null_from_absent() {
        let changes: TaskChanges = serde_json::from_value(serde_json::json!({ "due_at": null })).unwrap();
        let patch = changes.validate().unwrap();
        assert_eq!(patch.due_at, Some(None));
        assert_eq!(patch.title, None);
    }

    #[test]
    fn null_for_a_required_field_is_refused() {
        let changes: TaskChanges = serde_json::from_value(serde_json::json!({ "title": null })).unwrap();
        assert_eq!(changes.validate().unwrap_err()[0].pointer, "/title");
    }

    #[test]
    fn empty_patch_is_refused() {
        assert!(TaskChanges::default().validate().is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error =
            serde_json::from_value::<NewTask>(serde_json::json!({ "title": "a", "colour": "red" })).unwrap_err();
        assert!(error.to_string().contains("colour"));
    }

    #[test]
    fn due_dates_keep_microseconds() {
        let task: NewTask = serde_json::from_value(
            serde_json::json!({ "title": "a", "due_at": "2030-01-01T10:00:00.123456789+02:00" }),
        )
        .unwrap();
        let due = task.validate().unwrap().due_at.unwrap();
        assert_eq!(due.to_rfc3339(), "2030-01-01T08:00:00.123456+00:00");
    }
}
