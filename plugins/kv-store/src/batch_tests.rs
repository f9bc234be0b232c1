//! `apply-batch` over kv-store's writes (`storage_kit::batch`): every
//! operation sees the writes of those before it (the call's kv transaction
//! reads its own writes), and a run of creations reads and rewrites each
//! owner's index once.

#[cfg(test)]
mod tests {
    use storage_kit::batch::Results;
    use storage_kit::exports::todo::plugin::task_store::{
        BatchAction, BatchOp, BatchResult, DeleteOp, StoreError, UpdateOp,
    };
    use storage_kit::todo::plugin::types::{CallContext, TaskPatch, TaskStatus};

    use crate::KvStore;
    use crate::testing::{ALICE, BOB, ctx, id, kv, new_task};

    fn apply(ctx: &CallContext, ops: Vec<BatchOp>) -> Result<Results, StoreError> {
        storage_kit::batch::apply::<KvStore>(ctx, ops)
    }

    fn create(n: u8, owner_id: &str) -> BatchOp {
        BatchOp { owner_scope: None, action: BatchAction::Create(new_task(n, owner_id)) }
    }

    fn update(owner_scope: Option<&str>, n: u8, patch: TaskPatch, expected_version: Option<i64>) -> BatchOp {
        let op = UpdateOp { id: id(n), patch, expected_version };
        BatchOp { owner_scope: owner_scope.map(String::from), action: BatchAction::Update(op) }
    }

    fn delete(n: u8) -> BatchOp {
        BatchOp { owner_scope: None, action: BatchAction::Delete(DeleteOp { id: id(n), expected_version: None }) }
    }

    fn patch() -> TaskPatch {
        TaskPatch { title: None, description: None, status: None, priority: None, due_at: None, owner_id: None }
    }

    /// What each result is, in short.
    fn outline(results: &Results) -> Vec<String> {
        results
            .iter()
            .map(|result| match result {
                Ok(BatchResult::Created(task)) => format!("created {}", task.title),
                Ok(BatchResult::Updated(update)) => {
                    format!("updated {} to v{}", update.after.title, update.after.version)
                }
                Ok(BatchResult::Deleted(task)) => format!("deleted {}", task.title),
                Err(error) => format!("{error:?}"),
            })
            .collect()
    }

    #[test]
    fn operations_run_in_order_and_see_each_others_writes() {
        let done = TaskPatch { status: Some(TaskStatus::Done), ..patch() };
        let ops = vec![create(1, ALICE), create(2, ALICE), update(None, 1, done, Some(1)), delete(2), create(3, BOB)];
        let results = apply(&ctx(), ops).unwrap();
        assert_eq!(
            outline(&results),
            ["created Task 1", "created Task 2", "updated Task 1 to v2", "deleted Task 2", "created Task 3"]
        );
        let contents = kv::contents();
        assert_eq!(contents[&format!("owner:{ALICE}")], format!(r#"["{}"]"#, id(1)));
        assert_eq!(contents[&format!("owner:{BOB}")], format!(r#"["{}"]"#, id(3)));
        assert!(!contents.contains_key(&format!("task:{}", id(2))));
    }

    #[test]
    fn a_refused_operation_changes_nothing_and_the_batch_goes_on() {
        apply(&ctx(), vec![create(1, ALICE)]).unwrap();
        let before = kv::contents();
        let retitle = TaskPatch { title: Some("Renamed".into()), ..patch() };
        let ops =
            vec![update(Some(BOB), 1, retitle.clone(), None), update(None, 1, retitle.clone(), Some(5)), delete(9)];
        let results = apply(&ctx(), ops).unwrap();
        assert_eq!(
            outline(&results),
            ["StoreError::NotFound", "StoreError::VersionMismatch(1)", "StoreError::NotFound"]
        );
        assert_eq!(kv::contents(), before);
        let results = apply(&ctx(), vec![update(Some(ALICE), 1, retitle, Some(1))]).unwrap();
        assert_eq!(outline(&results), ["updated Renamed to v2"]);
    }

    #[test]
    fn a_kv_error_fails_the_batch_naming_the_operation() {
        apply(&ctx(), vec![create(1, ALICE)]).unwrap();
        // The task is written before the indexes fail: only failing the
        // whole call lets the host discard that write.
        kv::break_keys("owner:");
        let to_bob = TaskPatch { owner_id: Some(BOB.into()), ..patch() };
        let error = apply(&ctx(), vec![delete(9), update(None, 1, to_bob, None)]).unwrap_err();
        assert!(
            matches!(&error, StoreError::Unavailable(message) if message.starts_with("operation 1: reading owner:"))
        );
    }

    #[test]
    fn a_taken_id_fails_the_batch_naming_the_run_of_creations() {
        apply(&ctx(), vec![create(1, ALICE)]).unwrap();
        let error = apply(&ctx(), vec![delete(9), create(2, BOB), create(1, BOB), delete(1)]).unwrap_err();
        assert!(matches!(&error, StoreError::Internal(message) if message.starts_with("operations 1 to 2: task")));
    }
}
