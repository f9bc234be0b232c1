//! Which tasks a listing selects: the owner scope and the `task-filter`,
//! with postgres-store's meaning.

use storage_kit::exports::todo::plugin::task_store::TaskFilter;
use storage_kit::todo::plugin::types::Task;

pub struct Selection {
    owner_scope: Option<String>,
    filter: TaskFilter,
    /// `title-contains`, lower-cased once rather than per task.
    title_needle: Option<String>,
}

impl Selection {
    pub fn new(owner_scope: Option<String>, filter: TaskFilter) -> Self {
        let title_needle = filter.title_contains.as_deref().map(str::to_lowercase);
        Self { owner_scope, filter, title_needle }
    }

    /// The owners whose tasks can be selected: `None` for every owner, none
    /// at all when the scope and the owner filter name different owners.
    pub fn owner_ids(&self) -> Option<Vec<&str>> {
        match (self.owner_scope.as_deref(), self.filter.owner_id.as_deref()) {
            (Some(scope), Some(wanted)) if scope != wanted => Some(Vec::new()),
            (Some(owner_id), _) | (None, Some(owner_id)) => Some(vec![owner_id]),
            (None, None) => None,
        }
    }

    /// Whether `task` is selected. A task without a due date matches
    /// neither `due-before` nor `due-after`, as NULL compares in SQL; the
    /// title matches case-insensitively, as ILIKE does.
    pub fn matches(&self, task: &Task) -> bool {
        let filter = &self.filter;
        self.owner_scope.as_ref().is_none_or(|owner_id| *owner_id == task.owner_id)
            && filter.owner_id.as_ref().is_none_or(|owner_id| *owner_id == task.owner_id)
            && filter.status.is_none_or(|status| status == task.status)
            && filter.priority.is_none_or(|priority| priority == task.priority)
            && filter.due_before.is_none_or(|before| task.due_at.is_some_and(|due_at| due_at < before))
            && filter.due_after.is_none_or(|after| task.due_at.is_some_and(|due_at| due_at > after))
            && self.title_needle.as_ref().is_none_or(|needle| task.title.to_lowercase().contains(needle.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, ALICE, BOB, no_filter};
    use storage_kit::todo::plugin::types::{Priority, TaskStatus};

    fn task() -> Task {
        Task {
            title: "Write the Quarterly Report".into(),
            status: TaskStatus::InProgress,
            priority: Priority::High,
            due_at: Some(1_000),
            ..testing::task(10, ALICE)
        }
    }

    fn selects(owner_scope: Option<&str>, filter: TaskFilter, task: &Task) -> bool {
        Selection::new(owner_scope.map(String::from), filter).matches(task)
    }

    #[test]
    fn no_filter_selects_everything_in_scope() {
        assert!(selects(None, no_filter(), &task()));
        assert!(selects(Some(ALICE), no_filter(), &task()));
        assert!(!selects(Some(BOB), no_filter(), &task()));
    }

    #[test]
    fn the_owner_filter_narrows_within_the_scope() {
        assert!(selects(None, TaskFilter { owner_id: Some(ALICE.into()), ..no_filter() }, &task()));
        assert!(!selects(None, TaskFilter { owner_id: Some(BOB.into()), ..no_filter() }, &task()));
        let contradiction =
            Selection::new(Some(ALICE.into()), TaskFilter { owner_id: Some(BOB.into()), ..no_filter() });
        assert_eq!(contradiction.owner_ids(), Some(Vec::new()));
        assert!(!contradiction.matches(&task()));
    }

    #[test]
    fn the_owners_to_read_follow_scope_and_filter() {
        assert_eq!(Selection::new(None, no_filter()).owner_ids(), None);
        assert_eq!(Selection::new(Some(ALICE.into()), no_filter()).owner_ids(), Some(vec![ALICE]));
        let filtered = TaskFilter { owner_id: Some(BOB.into()), ..no_filter() };
        assert_eq!(Selection::new(None, filtered).owner_ids(), Some(vec![BOB]));
    }

    #[test]
    fn status_and_priority_must_be_equal() {
        assert!(selects(None, TaskFilter { status: Some(TaskStatus::InProgress), ..no_filter() }, &task()));
        assert!(!selects(None, TaskFilter { status: Some(TaskStatus::Done), ..no_filter() }, &task()));
        assert!(selects(None, TaskFilter { priority: Some(Priority::High), ..no_filter() }, &task()));
        assert!(!selects(None, TaskFilter { priority: Some(Priority::Low), ..no_filter() }, &task()));
    }

    #[test]
    fn due_bounds_are_exclusive_and_never_select_an_undated_task() {
        assert!(selects(None, TaskFilter { due_before: Some(1_001), ..no_filter() }, &task()));
        assert!(!selects(None, TaskFilter { due_before: Some(1_000), ..no_filter() }, &task()));
        assert!(selects(None, TaskFilter { due_after: Some(999), ..no_filter() }, &task()));
        assert!(!selects(None, TaskFilter { due_after: Some(1_000), ..no_filter() }, &task()));
        let undated = Task { due_at: None, ..task() };
        assert!(!selects(None, TaskFilter { due_before: Some(i64::MAX), ..no_filter() }, &undated));
        assert!(!selects(None, TaskFilter { due_after: Some(i64::MIN), ..no_filter() }, &undated));
    }

    #[test]
    fn the_title_matches_case_insensitively_anywhere() {
        for needle in ["quarterly", "QUARTERLY REP", "write", "", "Report"] {
            assert!(
                selects(None, TaskFilter { title_contains: Some(needle.into()), ..no_filter() }, &task()),
                "{needle}"
            );
        }
        assert!(!selects(None, TaskFilter { title_contains: Some("annual".into()), ..no_filter() }, &task()));
        // No wildcards: postgres-store escapes LIKE's `%` and `_`.
        assert!(!selects(None, TaskFilter { title_contains: Some("w%e".into()), ..no_filter() }, &task()));
    }
}
