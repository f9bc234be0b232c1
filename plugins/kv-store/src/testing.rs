//! What the operations' unit tests share: an in-memory stand-in for the
//! `kv` import (the real one only exists in a Wasm host), and tasks to
//! create.

use storage_kit::exports::todo::plugin::task_store::TaskFilter;
use storage_kit::todo::plugin::types::{CallContext, NewTask, Priority, Task, TaskStatus};

pub const ALICE: &str = "0193a0b0-0000-7000-8000-000000000001";
pub const BOB: &str = "0193a0b0-0000-7000-8000-000000000002";
pub const NOW: i64 = 1_795_341_600_000_000;

pub fn ctx() -> CallContext {
    CallContext { request_id: "test".into(), now: NOW }
}

/// A filter that lets every task through.
pub fn no_filter() -> TaskFilter {
    TaskFilter { owner_id: None, status: None, priority: None, due_before: None, due_after: None, title_contains: None }
}

/// The id of test task `n`.
pub fn id(n: u8) -> String {
    format!("0193a0b0-0000-7000-8000-0000000000{n:02x}")
}

pub fn new_task(n: u8, owner_id: &str) -> NewTask {
    NewTask {
        id: id(n),
        owner_id: owner_id.into(),
        title: format!("Task {n}"),
        description: None,
        status: TaskStatus::Todo,
        priority: Priority::Medium,
        due_at: None,
    }
}

/// Test task `n` of `owner_id`, as created at `NOW`.
pub fn task(n: u8, owner_id: &str) -> Task {
    storage_kit::change::stamp(&ctx(), new_task(n, owner_id))
}

/// The `kv` import, one store per test thread. It models neither the
/// host's key prefix nor the call's transaction.
pub mod kv {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use storage_kit::todo::plugin::kv::KvError;

    thread_local! {
        static STORE: RefCell<BTreeMap<String, Vec<u8>>> = const { RefCell::new(BTreeMap::new()) };
        /// Keys starting with this answer `unavailable`.
        static BROKEN_PREFIX: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        reachable(key)?;
        Ok(STORE.with_borrow(|store| store.get(key).cloned()))
    }

    pub fn get_many(keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        keys.iter().map(|key| get(key)).collect()
    }

    pub fn set(key: &str, value: &[u8], _ttl_ms: Option<u64>) -> Result<(), KvError> {
        reachable(key)?;
        STORE.with_borrow_mut(|store| store.insert(key.to_string(), value.to_vec()));
        Ok(())
    }

    pub fn delete(key: &str) -> Result<bool, KvError> {
        reachable(key)?;
        Ok(STORE.with_borrow_mut(|store| store.remove(key).is_some()))
    }

    /// Every key and its value as text.
    pub fn contents() -> BTreeMap<String, String> {
        STORE.with_borrow(|store| {
            store.iter().map(|(key, value)| (key.clone(), String::from_utf8_lossy(value).into_owned())).collect()
        })
    }

    /// Makes every key starting with `prefix` unavailable.
    pub fn break_keys(prefix: &str) {
        BROKEN_PREFIX.set(Some(prefix.to_string()));
    }

    fn reachable(key: &str) -> Result<(), KvError> {
        match BROKEN_PREFIX.with_borrow(|prefix| prefix.as_ref().is_some_and(|prefix| key.starts_with(prefix.as_str())))
        {
            true => Err(KvError::Unavailable(format!("{key} is unreachable"))),
            false => Ok(()),
        }
    }
}
