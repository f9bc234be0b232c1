//! Keyset pages: the order a listing follows, the cursor naming a page's last
//! task, and picking one page out of tasks offered in any order.
//!
//! Tasks are ordered by (sort key, id) and a cursor names the last task's
//! key, so a page never repeats or skips a task that existed when the walk
//! began, however many tasks are created meanwhile — as in postgres-store,
//! whose cursor text this is too.

use std::cmp::Ordering;

use storage_kit::exports::todo::plugin::task_store::{SortField, SortOrder, StoreError, TaskPage};
use storage_kit::failure::Failure;
use storage_kit::todo::plugin::types::{Priority, Task};

/// Tasks without a due date sort after every dated task (ascending): their
/// sort key is postgres-store's, 9999-12-31T23:59:59.999999Z.
const NO_DUE_DATE: i64 = 253_402_300_799_999_999;

#[derive(Clone, Copy)]
pub struct PageOrder {
    field: SortField,
    order: SortOrder,
}

impl PageOrder {
    pub fn new(field: SortField, order: SortOrder) -> Self {
        Self { field, order }
    }

    fn key(&self, task: &Task) -> i64 {
        match self.field {
            SortField::CreatedAt => task.created_at,
            SortField::DueAt => task.due_at.unwrap_or(NO_DUE_DATE),
            SortField::Priority => priority_rank(task.priority),
        }
    }

    fn position<'t>(&self, task: &'t Task) -> (i64, &'t str) {
        (self.key(task), &task.id)
    }

    /// How two positions compare in listing order: ties of the key are
    /// broken by id, in the listing's direction too.
    fn compare(&self, a: (i64, &str), b: (i64, &str)) -> Ordering {
        match self.order {
            SortOrder::Asc => a.cmp(&b),
            SortOrder::Desc => b.cmp(&a),
        }
    }

    fn compare_tasks(&self, a: &Task, b: &Task) -> Ordering {
        self.compare(self.position(a), self.position(b))
    }
}

/// postgres-store's stored rank: low < medium < high.
fn priority_rank(priority: Priority) -> i64 {
    match priority {
        Priority::Low => 1,
        Priority::Medium => 2,
        Priority::High => 3,
    }
}

/// The position of a page's last task: the next page starts after it.
#[derive(Debug, PartialEq)]
pub struct Cursor {
    key: i64,
    id: String,
}

impl Cursor {
    fn after(order: &PageOrder, task: &Task) -> Self {
        Self { key: order.key(task), id: task.id.clone() }
    }

    fn encode(&self) -> String {
        format!("{}:{}", self.key, self.id)
    }

    pub fn decode(cursor: &str) -> Result<Self, Failure> {
        cursor
            .split_once(':')
            .and_then(|(key, id)| Some(Self { key: key.parse().ok()?, id: id.to_string() }))
            .filter(|cursor| cursor.id.len() == 36)
            .ok_or_else(|| Failure::rejected(StoreError::Invalid("the cursor is malformed".into())))
    }
}

/// Collects the first `limit` tasks after the cursor, in listing order, from
/// tasks offered in any order, keeping no more than twice a page in memory.
pub struct PageBuilder {
    order: PageOrder,
    after: Option<Cursor>,
    limit: usize,
    tasks: Vec<Task>,
}

impl PageBuilder {
    pub fn new(order: PageOrder, after: Option<Cursor>, limit: u32) -> Self {
        let limit = limit.max(1) as usize;
        Self { order, after, limit, tasks: Vec::new() }
    }

    pub fn offer(&mut self, task: Task) {
        if let Some(after) = &self.after
            && self.order.compare(self.order.position(&task), (after.key, &after.id)) != Ordering::Greater
        {
            return;
        }
        self.tasks.push(task);
        if self.tasks.len() >= self.kept().saturating_mul(2) {
            self.keep_first();
        }
    }

    /// One task more than a page: it tells whether another page follows.
    /// (Saturating, as `usize` is 32 bits in Wasm and the limit a `u32`.)
    fn kept(&self) -> usize {
        self.limit.saturating_add(1)
    }

    /// Keeps the first `kept()` tasks.
    fn keep_first(&mut self) {
        let order = self.order;
        self.tasks.sort_by(|a, b| order.compare_tasks(a, b));
        self.tasks.truncate(self.kept());
    }

    pub fn finish(mut self) -> TaskPage {
        self.keep_first();
        let next_cursor = if self.tasks.len() > self.limit {
            self.tasks.truncate(self.limit);
            self.tasks.last().map(|last| Cursor::after(&self.order, last).encode())
        } else {
            None
        };
        TaskPage { items: self.tasks, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, ALICE};

    fn task(n: u8, created_at: i64, due_at: Option<i64>, priority: Priority) -> Task {
        Task { created_at, updated_at: created_at, due_at, priority, ..testing::task(n, ALICE) }
    }

    fn tasks() -> Vec<Task> {
        vec![
            task(1, 30, Some(300), Priority::Low),
            task(2, 10, None, Priority::High),
            task(3, 20, Some(100), Priority::Medium),
            task(4, 20, None, Priority::High),
            task(5, 40, Some(100), Priority::Low),
        ]
    }

    /// The task numbers of one page, and its cursor.
    fn page(order: PageOrder, tasks: &[Task], cursor: Option<&str>, limit: u32) -> (Vec<u8>, Option<String>) {
        let after = cursor.map(|cursor| Cursor::decode(cursor).unwrap());
        let mut builder = PageBuilder::new(order, after, limit);
        for task in tasks.iter().rev() {
            builder.offer(task.clone());
        }
        let page = builder.finish();
        let numbers = page.items.iter().map(|task| u8::from_str_radix(&task.id[34..], 16).unwrap()).collect();
        (numbers, page.next_cursor)
    }

    /// Every task number of a walk through all pages.
    fn walk(order: PageOrder, tasks: &[Task], limit: u32) -> Vec<u8> {
        let (mut seen, mut cursor) = page(order, tasks, None, limit);
        while let Some(next) = cursor {
            let (numbers, following) = page(order, tasks, Some(&next), limit);
            assert!(!numbers.is_empty(), "a cursor was handed out for an empty page");
            seen.extend(numbers);
            cursor = following;
        }
        seen
    }

    #[test]
    fn each_sort_breaks_ties_by_id() {
        let by = |field, order| walk(PageOrder::new(field, order), &tasks(), 2);
        assert_eq!(by(SortField::CreatedAt, SortOrder::Asc), [2, 3, 4, 1, 5]);
        assert_eq!(by(SortField::CreatedAt, SortOrder::Desc), [5, 1, 4, 3, 2]);
        assert_eq!(by(SortField::Priority, SortOrder::Asc), [1, 5, 3, 2, 4]);
        assert_eq!(by(SortField::Priority, SortOrder::Desc), [4, 2, 3, 5, 1]);
    }

    #[test]
    fn undated_tasks_come_last_ascending_and_first_descending() {
        assert_eq!(walk(PageOrder::new(SortField::DueAt, SortOrder::Asc), &tasks(), 2), [3, 5, 1, 2, 4]);
        assert_eq!(walk(PageOrder::new(SortField::DueAt, SortOrder::Desc), &tasks(), 2), [4, 2, 1, 5, 3]);
    }

    #[test]
    fn pages_hold_the_limit_and_the_last_has_no_cursor() {
        let order = PageOrder::new(SortField::CreatedAt, SortOrder::Asc);
        let (first, cursor) = page(order, &tasks(), None, 2);
        assert_eq!((first, cursor.as_deref()), (vec![2, 3], Some("20:0193a0b0-0000-7000-8000-000000000003")));
        let (last, cursor) = page(order, &tasks(), Some("30:0193a0b0-0000-7000-8000-000000000001"), 2);
        assert_eq!((last, cursor), (vec![5], None));
        let (exactly_all, cursor) = page(order, &tasks(), None, 5);
        assert_eq!((exactly_all.len(), cursor), (5, None));
    }

    #[test]
    fn a_limit_of_zero_is_one() {
        let (numbers, cursor) = page(PageOrder::new(SortField::CreatedAt, SortOrder::Asc), &tasks(), None, 0);
        assert_eq!(numbers, [2]);
        assert!(cursor.is_some());
    }

    #[test]
    fn the_largest_limit_takes_everything() {
        let (numbers, cursor) = page(PageOrder::new(SortField::CreatedAt, SortOrder::Asc), &tasks(), None, u32::MAX);
        assert_eq!((numbers.len(), cursor), (5, None));
    }

    #[test]
    fn tasks_created_between_pages_cause_no_repeat_and_no_gap() {
        let order = PageOrder::new(SortField::CreatedAt, SortOrder::Asc);
        let mut tasks = tasks();
        let (first, cursor) = page(order, &tasks, None, 2);
        // One before the cursor (never listed), one tied with the cursor's
        // key but after its id, one at the end.
        tasks.extend([
            task(6, 5, None, Priority::Low),
            task(7, 20, None, Priority::Low),
            task(8, 50, None, Priority::Low),
        ]);
        let (rest, _) = page(order, &tasks, cursor.as_deref(), 10);
        assert_eq!(first, [2, 3]);
        assert_eq!(rest, [4, 7, 1, 5, 8]);
    }

    #[test]
    fn many_more_tasks_than_a_page_still_give_the_first_ones() {
        let many: Vec<Task> = (1..=200).map(|n| task(n, 1000 - i64::from(n), None, Priority::Low)).collect();
        let (numbers, _) = page(PageOrder::new(SortField::CreatedAt, SortOrder::Asc), &many, None, 3);
        assert_eq!(numbers, [200, 199, 198]);
        assert_eq!(
            walk(PageOrder::new(SortField::CreatedAt, SortOrder::Desc), &many, 7),
            (1..=200).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        let task = task(1, -5, None, Priority::Low);
        let cursor = Cursor::after(&PageOrder::new(SortField::CreatedAt, SortOrder::Asc), &task);
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
    }

    #[test]
    fn a_malformed_cursor_is_invalid() {
        for cursor in ["", "12", "x:0193a0b0-0000-7000-8000-000000000001", "12:short"] {
            let failure = Cursor::decode(cursor).unwrap_err();
            assert!(matches!(failure.error, StoreError::Invalid(_)), "{cursor}");
            assert!(!failure.fails_batch);
        }
    }
}
