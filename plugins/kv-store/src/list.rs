//! `list`: filtered, keyset-paginated task listing, by reading every task the
//! selection's owners have and keeping one page of them.

use crate::filter::Selection;
use crate::page::{Cursor, PageBuilder, PageOrder};
use crate::{index, json_kv, record};
use storage_kit::exports::todo::plugin::task_store::{PageRequest, TaskFilter, TaskPage};
use storage_kit::failure::Failure;

pub fn list(owner_scope: Option<String>, filter: TaskFilter, page: PageRequest) -> Result<TaskPage, Failure> {
    let after = page.cursor.as_deref().map(Cursor::decode).transpose()?;
    let selection = Selection::new(owner_scope, filter);
    let ids = index::task_ids(selection.owner_ids())?;
    let mut builder = PageBuilder::new(PageOrder::new(page.sort, page.order), after, page.limit);
    // Chunk by chunk, so that memory holds one chunk and one page, not the
    // store.
    for chunk in ids.chunks(json_kv::MAX_KEYS_PER_READ) {
        // A task deleted since the index was read is missing: left out.
        for task in record::read_many(chunk)?.into_iter().flatten() {
            if selection.matches(&task) {
                builder.offer(task);
            }
        }
    }
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ALICE, BOB, NOW, id, kv, new_task, no_filter};
    use storage_kit::exports::todo::plugin::task_store::{SortField, SortOrder, StoreError};
    use storage_kit::todo::plugin::types::{CallContext, NewTask, TaskStatus};

    /// Creates test task `n` for `owner_id`, created at `NOW + n`.
    fn create(n: u8, owner_id: &str, status: TaskStatus) {
        let ctx = CallContext { request_id: "test".into(), now: NOW + i64::from(n) };
        crate::create_all(&ctx, vec![NewTask { status, ..new_task(n, owner_id) }]).unwrap();
    }

    fn request(cursor: Option<String>, limit: u32) -> PageRequest {
        PageRequest { sort: SortField::CreatedAt, order: SortOrder::Asc, limit, cursor }
    }

    /// Every task number of a walk through all pages, taking `between`
    /// after each page.
    fn walk(owner_scope: Option<&str>, filter: TaskFilter, limit: u32, mut between: impl FnMut()) -> Vec<u8> {
        let (mut seen, mut cursor) = (Vec::new(), None);
        loop {
            let page = list(owner_scope.map(String::from), filter.clone(), request(cursor, limit)).unwrap();
            seen.extend(page.items.iter().map(|task| u8::from_str_radix(&task.id[34..], 16).unwrap()));
            between();
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return seen,
            }
        }
    }

    fn setup() {
        for n in 1..=5 {
            create(n, ALICE, if n % 2 == 0 { TaskStatus::Done } else { TaskStatus::Todo });
        }
        create(6, BOB, TaskStatus::Todo);
        create(7, BOB, TaskStatus::Done);
    }

    #[test]
    fn an_unscoped_listing_walks_every_owners_tasks() {
        setup();
        assert_eq!(walk(None, no_filter(), 3, || {}), [1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn a_scoped_listing_sees_only_the_owners_tasks() {
        setup();
        assert_eq!(walk(Some(BOB), no_filter(), 1, || {}), [6, 7]);
        let someone_else = TaskFilter { owner_id: Some(ALICE.into()), ..no_filter() };
        assert_eq!(walk(Some(BOB), someone_else, 10, || {}), Vec::<u8>::new());
        let done = TaskFilter { status: Some(TaskStatus::Done), ..no_filter() };
        assert_eq!(walk(Some(ALICE), done.clone(), 1, || {}), [2, 4]);
        assert_eq!(walk(None, done, 2, || {}), [2, 4, 7]);
    }

    #[test]
    fn tasks_created_during_a_walk_are_listed_once_or_not_at_all() {
        setup();
        let mut next = 8;
        let seen = walk(None, no_filter(), 2, || {
            create(next, if next % 2 == 0 { ALICE } else { BOB }, TaskStatus::Todo);
            next += 1;
        });
        // Each page takes two tasks and one more is created after it: the
        // sixth page reaches the newest task, and the walk ends there.
        assert_eq!(seen, (1..=12).collect::<Vec<_>>());
    }

    #[test]
    fn a_task_gone_since_the_index_was_read_is_left_out() {
        setup();
        kv::delete(&format!("task:{}", id(3))).unwrap();
        assert_eq!(walk(Some(ALICE), no_filter(), 10, || {}), [1, 2, 4, 5]);
    }

    #[test]
    fn a_malformed_cursor_is_refused() {
        let error = list(None, no_filter(), request(Some("not a cursor".into()), 10)).unwrap_err().error;
        assert!(matches!(error, StoreError::Invalid(_)));
    }
}
