//! How writes change a task: stamping a creation, checking the version an
//! update or deletion expects, applying a patch.

use crate::exports::todo::plugin::task_store::StoreError;
use crate::failure::Failure;
use crate::todo::plugin::types::{CallContext, NewTask, Task, TaskPatch};

/// The task a creation stores: version 1, created and updated now.
pub fn stamp(ctx: &CallContext, new: NewTask) -> Task {
    Task {
        id: new.id,
        owner_id: new.owner_id,
        title: new.title,
        description: new.description,
        status: new.status,
        priority: new.priority,
        due_at: new.due_at,
        created_at: ctx.now,
        updated_at: ctx.now,
        version: 1,
    }
}

/// `version-mismatch(current)` when the caller expects another version.
pub fn check_version(expected: Option<i64>, current: i64) -> Result<(), Failure> {
    match expected {
        Some(expected) if expected != current => Err(Failure::rejected(StoreError::VersionMismatch(current))),
        _ => Ok(()),
    }
}

/// `task` with `patch` applied, one version further and updated `now`. A
/// field the patch leaves `none` keeps its value; `some(none)` clears a
/// nullable one.
pub fn patched(task: &Task, patch: TaskPatch, now: i64) -> Task {
    let mut task = task.clone();
    if let Some(title) = patch.title {
        task.title = title;
    }
    if let Some(description) = patch.description {
        task.description = description;
    }
    if let Some(status) = patch.status {
        task.status = status;
    }
    if let Some(priority) = patch.priority {
        task.priority = priority;
    }
    if let Some(due_at) = patch.due_at {
        task.due_at = due_at;
    }
    if let Some(owner_id) = patch.owner_id {
        task.owner_id = owner_id;
    }
    task.updated_at = now;
    task.version += 1;
    task
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::todo::plugin::types::{Priority, TaskStatus};

    const ALICE: &str = "0193a0b0-0000-7000-8000-000000000001";
    const BOB: &str = "0193a0b0-0000-7000-8000-000000000002";
    const NOW: i64 = 1_795_341_600_000_000;

    fn ctx() -> CallContext {
        CallContext { request_id: "test".into(), now: NOW }
    }

    fn new_task(n: u8, owner_id: &str) -> NewTask {
        NewTask {
            id: format!("0193a0b0-0000-7000-8000-0000000000{n:02x}"),
            owner_id: owner_id.into(),
            title: format!("Task {n}"),
            description: None,
            status: TaskStatus::Todo,
            priority: Priority::Medium,
            due_at: None,
        }
    }

    fn task() -> Task {
        Task {
            description: Some("By Friday".into()),
            due_at: Some(NOW + 1),
            created_at: NOW - 10,
            updated_at: NOW - 5,
            version: 4,
            ..stamp(&ctx(), new_task(10, ALICE))
        }
    }

    fn empty_patch() -> TaskPatch {
        TaskPatch { title: None, description: None, status: None, priority: None, due_at: None, owner_id: None }
    }

    #[test]
    fn a_creation_is_version_one_created_and_updated_now() {
        let task = stamp(&ctx(), new_task(11, ALICE));
        assert_eq!((task.version, task.created_at, task.updated_at), (1, NOW, NOW));
    }

    #[test]
    fn an_empty_patch_only_moves_the_version_and_the_update_time() {
        let (before, after) = (task(), patched(&task(), empty_patch(), NOW));
        assert_eq!((after.version, after.updated_at), (5, NOW));
        assert_eq!((&after.id, &after.owner_id, &after.title), (&before.id, &before.owner_id, &before.title));
        assert_eq!(
            (after.description, after.status, after.priority),
            (before.description, before.status, before.priority)
        );
        assert_eq!((after.due_at, after.created_at), (before.due_at, before.created_at));
    }

    #[test]
    fn a_patch_sets_the_fields_it_names() {
        let patch = TaskPatch {
            title: Some("Ship the report".into()),
            status: Some(TaskStatus::Done),
            priority: Some(Priority::High),
            due_at: Some(Some(NOW + 99)),
            owner_id: Some(BOB.into()),
            ..empty_patch()
        };
        let after = patched(&task(), patch, NOW);
        assert_eq!(after.title, "Ship the report");
        assert_eq!(after.description.as_deref(), Some("By Friday"));
        assert_eq!((after.status, after.priority), (TaskStatus::Done, Priority::High));
        assert_eq!(after.due_at, Some(NOW + 99));
        assert_eq!(after.owner_id, BOB);
        assert_eq!(after.created_at, task().created_at);
    }

    #[test]
    fn some_none_clears_a_nullable_field() {
        let after = patched(&task(), TaskPatch { description: Some(None), due_at: Some(None), ..empty_patch() }, NOW);
        assert_eq!((after.description, after.due_at), (None, None));
    }

    #[test]
    fn a_stale_expected_version_answers_the_current_one() {
        assert!(check_version(None, 4).is_ok());
        assert!(check_version(Some(4), 4).is_ok());
        let failure = check_version(Some(3), 4).unwrap_err();
        assert!(matches!(failure.error, StoreError::VersionMismatch(4)));
        assert!(!failure.fails_batch);
    }
}
