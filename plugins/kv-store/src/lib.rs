//! kv-store: a second storage strategy, tasks in Redis through the host's
//! `kv` import.
//!
//! # Data layout
//!
//! The host prefixes every key with the plugin's name; the plugin's own keys
//! are:
//!
//! - `task:{id}`: the task, as the JSON of `record::TaskRecord`.
//! - `owner:{owner_id}`: the ids of that owner's tasks, a sorted JSON array.
//!   Absent when the owner has no task.
//! - `owners`: the ids of the owners that have an `owner:` index, a sorted
//!   JSON array.
//!
//! The index is per owner, not one global key, so that an owner's index
//! stays as small as that owner's tasks: every creation and deletion
//! rewrites it whole. `owners` changes only when an owner gets a first task
//! or loses the last one.
//!
//! # Consistency
//!
//! The host runs a plugin's write calls one at a time, each as one
//! transaction (see wit/kv.wit). A write call reads and writes inside it: a task and its
//! index entries change together or not at all, and an operation that fails
//! without a kv error has written nothing (every check comes before the first
//! write). A read call's reads are not transactional: `list` reads the index,
//! then the tasks, and checks every filter — the owner scope included —
//! against the task it fetched, so a task changed meanwhile is listed as it
//! is now, and one deleted meanwhile is left out.
//!
//! # Costs
//!
//! - `get`: one read.
//! - `create`, `delete`, `update` changing the owner: a few reads, and a
//!   rewrite of the owner's index, O(tasks of that owner).
//! - `update` keeping the owner: one read, one write.
//! - `list`: reads the index of the owners in question (every owner when the
//!   call is unscoped and has no owner filter), then every task they own, in
//!   `get-many` calls of `json_kv::MAX_KEYS_PER_READ` keys; it filters and
//!   orders in memory, keeping only one page at a time. A page costs
//!   O(tasks in scope) whatever its position, so walking all pages of a
//!   listing costs O(tasks × pages): fine for small and medium stores, not a
//!   replacement for postgres-store's indexes at scale.
//!
//! An index is one value, so the host's largest value (4 MiB today, ~39
//! bytes an id) bounds the tasks of one owner and the number of owners to
//! about 100,000 each; a write that would exceed it fails as `internal`.
//!
//! # Behaviour shared with postgres-store
//!
//! Owner scope, filters, sorts (undated tasks last in ascending order),
//! cursors (the same `{key}:{id}` text), version checks, patch semantics and
//! batch results follow postgres-store. One difference: the store has no
//! users table, so it accepts any owner id the host passes (on creation and
//! on reassignment); the host refuses owners no account has before a write
//! reaches the store (`TaskService::check_new_owners`).

#[cfg(test)]
mod batch_tests;
mod filter;
mod index;
mod json_kv;
mod list;
mod page;
mod record;
#[cfg(test)]
mod testing;

use std::collections::{BTreeMap, BTreeSet};

use storage_kit::batch::{self, StoreWrites};
use storage_kit::change::{check_version, patched, stamp};
use storage_kit::exports::todo::plugin::task_store::{
    BatchOp, BatchResult, DeleteOp, Guest, PageRequest, StoreError, TaskFilter, TaskPage, TaskUpdate, UpdateOp,
};
use storage_kit::failure::Failure;
use storage_kit::todo::plugin::types::{CallContext, NewTask, Task};

struct KvStore;

impl Guest for KvStore {
    fn create(ctx: CallContext, task: NewTask) -> Result<Task, StoreError> {
        let mut created = create_all(&ctx, vec![task]).map_err(Failure::into_error)?;
        created.pop().ok_or_else(|| StoreError::Internal("creating one task answered no task".into()))
    }

    fn get(_ctx: CallContext, owner_scope: Option<String>, id: String) -> Result<Task, StoreError> {
        get(owner_scope.as_deref(), &id).map_err(Failure::into_error)
    }

    fn list(
        _ctx: CallContext,
        owner_scope: Option<String>,
        filter: TaskFilter,
        page: PageRequest,
    ) -> Result<TaskPage, StoreError> {
        list::list(owner_scope, filter, page).map_err(Failure::into_error)
    }

    fn update(ctx: CallContext, owner_scope: Option<String>, op: UpdateOp) -> Result<TaskUpdate, StoreError> {
        update(&ctx, owner_scope.as_deref(), op).map_err(Failure::into_error)
    }

    fn delete(_ctx: CallContext, owner_scope: Option<String>, op: DeleteOp) -> Result<Task, StoreError> {
        delete(owner_scope.as_deref(), op).map_err(Failure::into_error)
    }

    fn apply_batch(ctx: CallContext, ops: Vec<BatchOp>) -> Result<Vec<Result<BatchResult, StoreError>>, StoreError> {
        batch::apply::<KvStore>(&ctx, ops)
    }
}

impl StoreWrites for KvStore {
    fn create(tasks: &[Task]) -> Result<(), Failure> {
        insert(tasks)
    }

    fn update(ctx: &CallContext, owner_scope: Option<String>, op: UpdateOp) -> Result<TaskUpdate, Failure> {
        update(ctx, owner_scope.as_deref(), op)
    }

    fn delete(owner_scope: Option<String>, op: DeleteOp) -> Result<Task, Failure> {
        delete(owner_scope.as_deref(), op)
    }
}

/// Creates `news` together (see `insert`).
fn create_all(ctx: &CallContext, news: Vec<NewTask>) -> Result<Vec<Task>, Failure> {
    let tasks: Vec<Task> = news.into_iter().map(|new| stamp(ctx, new)).collect();
    insert(&tasks)?;
    Ok(tasks)
}

/// Stores new `tasks` together: one read of their keys, one of their
/// owners' indexes, one write per task and per index. An id that is taken
/// (or given twice) fails the creation, as postgres-store's primary key
/// does, rather than overwriting a task another owner's index may list.
fn insert(tasks: &[Task]) -> Result<(), Failure> {
    let ids: Vec<String> = tasks.iter().map(|task| task.id.clone()).collect();
    let existing = record::read_many(&ids)?;
    let mut seen = BTreeSet::new();
    let mut new_ids_by_owner: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (task, existing) in tasks.iter().zip(existing) {
        if existing.is_some() || !seen.insert(task.id.as_str()) {
            return Err(Failure::internal(format!("task {} already exists", task.id)));
        }
        new_ids_by_owner.entry(task.owner_id.as_str()).or_default().push(task.id.as_str());
    }
    for task in tasks {
        record::write(task)?;
    }
    index::add(&new_ids_by_owner)
}

/// The task `id`, if it exists within `owner_scope`; otherwise `not-found`,
/// whether it is missing or another owner's.
fn get(owner_scope: Option<&str>, id: &str) -> Result<Task, Failure> {
    match record::read(id)? {
        Some(task) if owner_scope.is_none_or(|owner| owner == task.owner_id) => Ok(task),
        _ => Err(Failure::rejected(StoreError::NotFound)),
    }
}

fn update(ctx: &CallContext, owner_scope: Option<&str>, op: UpdateOp) -> Result<TaskUpdate, Failure> {
    let before = get(owner_scope, &op.id)?;
    check_version(op.expected_version, before.version)?;
    let after = patched(&before, op.patch, ctx.now);
    record::write(&after)?;
    if after.owner_id != before.owner_id {
        index::remove(&before.owner_id, &after.id)?;
        index::add(&BTreeMap::from([(after.owner_id.as_str(), vec![after.id.as_str()])]))?;
    }
    Ok(TaskUpdate { before, after })
}

/// Answers the task as it was before deletion.
fn delete(owner_scope: Option<&str>, op: DeleteOp) -> Result<Task, Failure> {
    let task = get(owner_scope, &op.id)?;
    check_version(op.expected_version, task.version)?;
    record::delete(&task.id)?;
    index::remove(&task.owner_id, &task.id)?;
    Ok(task)
}

storage_kit::export!(KvStore with_types_in storage_kit);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ALICE, BOB, NOW, ctx, id, kv, new_task};
    use storage_kit::todo::plugin::types::{TaskPatch, TaskStatus};

    fn patch() -> TaskPatch {
        TaskPatch { title: None, description: None, status: None, priority: None, due_at: None, owner_id: None }
    }

    fn update_op(n: u8, patch: TaskPatch, expected_version: Option<i64>) -> UpdateOp {
        UpdateOp { id: id(n), patch, expected_version }
    }

    fn error<T>(outcome: Result<T, Failure>) -> StoreError {
        outcome.err().expect("the operation should have failed").error
    }

    #[test]
    fn a_creation_stores_the_task_and_indexes_it_under_its_owner() {
        create_all(&ctx(), vec![new_task(1, ALICE), new_task(2, ALICE), new_task(3, BOB)]).unwrap();
        let contents = kv::contents();
        let keys: Vec<&str> = contents.keys().map(String::as_str).collect();
        let task_keys = [id(1), id(2), id(3)].map(|id| format!("task:{id}"));
        let (alice, bob) = (format!("owner:{ALICE}"), format!("owner:{BOB}"));
        let mut expected = vec![alice.as_str(), bob.as_str(), "owners"];
        expected.extend(task_keys.iter().map(String::as_str));
        assert_eq!(keys, expected);
        assert_eq!(contents[&alice], format!(r#"["{}","{}"]"#, id(1), id(2)));
        assert_eq!(contents["owners"], format!(r#"["{ALICE}","{BOB}"]"#));
        let task = get(None, &id(3)).unwrap();
        assert_eq!((task.owner_id.as_str(), task.version, task.created_at), (BOB, 1, NOW));
    }

    #[test]
    fn a_taken_id_fails_the_creation_and_writes_nothing() {
        create_all(&ctx(), vec![new_task(1, ALICE)]).unwrap();
        let before = kv::contents();
        let failure = create_all(&ctx(), vec![new_task(2, BOB), new_task(1, BOB)]).err().unwrap();
        assert!(matches!(&failure.error, StoreError::Internal(message) if message.contains(&id(1))));
        assert!(failure.fails_batch);
        assert!(create_all(&ctx(), vec![new_task(3, BOB), new_task(3, BOB)]).is_err());
        assert_eq!(kv::contents(), before);
    }

    #[test]
    fn another_owners_task_is_not_found() {
        create_all(&ctx(), vec![new_task(1, ALICE)]).unwrap();
        assert!(get(Some(ALICE), &id(1)).is_ok());
        assert!(matches!(error(get(Some(BOB), &id(1))), StoreError::NotFound));
        assert!(matches!(error(get(None, &id(2))), StoreError::NotFound));
        let before = kv::contents();
        assert!(matches!(error(update(&ctx(), Some(BOB), update_op(1, patch(), None))), StoreError::NotFound));
        assert!(matches!(
            error(delete(Some(BOB), DeleteOp { id: id(1), expected_version: None })),
            StoreError::NotFound
        ));
        assert_eq!(kv::contents(), before);
    }

    #[test]
    fn an_update_checks_the_version_and_moves_it_on() {
        create_all(&ctx(), vec![new_task(1, ALICE)]).unwrap();
        let before = kv::contents();
        let stale = update(&ctx(), None, update_op(1, patch(), Some(7)));
        assert!(matches!(error(stale), StoreError::VersionMismatch(1)));
        assert_eq!(kv::contents(), before);

        let later = CallContext { now: NOW + 5, ..ctx() };
        let done = TaskPatch { status: Some(TaskStatus::Done), ..patch() };
        let change = update(&later, Some(ALICE), update_op(1, done, Some(1))).unwrap();
        assert_eq!((change.before.version, change.before.status), (1, TaskStatus::Todo));
        assert_eq!(
            (change.after.version, change.after.status, change.after.updated_at),
            (2, TaskStatus::Done, NOW + 5)
        );
        assert_eq!(get(None, &id(1)).unwrap().status, TaskStatus::Done);
    }

    #[test]
    fn a_reassignment_moves_the_task_between_owner_indexes() {
        create_all(&ctx(), vec![new_task(1, ALICE), new_task(2, BOB)]).unwrap();
        let to_bob = TaskPatch { owner_id: Some(BOB.into()), ..patch() };
        update(&ctx(), Some(ALICE), update_op(1, to_bob, None)).unwrap();
        let contents = kv::contents();
        assert!(!contents.contains_key(&format!("owner:{ALICE}")), "an empty index is removed");
        assert_eq!(contents[&format!("owner:{BOB}")], format!(r#"["{}","{}"]"#, id(1), id(2)));
        assert_eq!(contents["owners"], format!(r#"["{BOB}"]"#));
        assert!(matches!(error(get(Some(ALICE), &id(1))), StoreError::NotFound));
    }

    #[test]
    fn a_deletion_answers_the_task_and_leaves_nothing_behind() {
        create_all(&ctx(), vec![new_task(1, ALICE)]).unwrap();
        let stale = delete(None, DeleteOp { id: id(1), expected_version: Some(2) });
        assert!(matches!(error(stale), StoreError::VersionMismatch(1)));
        let deleted = delete(Some(ALICE), DeleteOp { id: id(1), expected_version: Some(1) }).unwrap();
        assert_eq!(deleted.id, id(1));
        assert!(kv::contents().is_empty());
        assert!(matches!(error(delete(None, DeleteOp { id: id(1), expected_version: None })), StoreError::NotFound));
    }
}
