//! The owner indexes: `owner:{owner_id}` holds the ids of the owner's
//! tasks, `owners` the owners that have an index. Both are sorted JSON
//! arrays; an owner without tasks has neither an index nor a place in
//! `owners`, so that the store holds nothing for an owner who left.

use std::collections::{BTreeMap, BTreeSet};

use crate::json_kv;
use storage_kit::failure::Failure;

const OWNERS: &str = "owners";

type Ids = BTreeSet<String>;

fn key(owner_id: &str) -> String {
    format!("owner:{owner_id}")
}

/// Adds task ids to their owners' indexes, one read and one write per
/// owner (plus `owners` when an owner is new).
pub fn add(new_ids_by_owner: &BTreeMap<&str, Vec<&str>>) -> Result<(), Failure> {
    let keys: Vec<String> = new_ids_by_owner.keys().map(|owner_id| key(owner_id)).collect();
    let indexes = json_kv::read_many::<Ids>(&keys)?;
    let mut new_owners = Vec::new();
    for ((owner_id, new_ids), (key, index)) in new_ids_by_owner.iter().zip(keys.iter().zip(indexes)) {
        let mut index = index.unwrap_or_else(|| {
            new_owners.push(owner_id.to_string());
            Ids::new()
        });
        index.extend(new_ids.iter().map(|id| id.to_string()));
        json_kv::write(key, &index)?;
    }
    if !new_owners.is_empty() {
        let mut owners = json_kv::read::<Ids>(OWNERS)?.unwrap_or_default();
        owners.extend(new_owners);
        json_kv::write(OWNERS, &owners)?;
    }
    Ok(())
}

/// Removes a task id from its owner's index, and the index itself (with its
/// place in `owners`) once it is empty.
pub fn remove(owner_id: &str, id: &str) -> Result<(), Failure> {
    let key = key(owner_id);
    let mut index = json_kv::read::<Ids>(&key)?.unwrap_or_default();
    index.remove(id);
    if !index.is_empty() {
        return json_kv::write(&key, &index);
    }
    json_kv::delete(&key)?;
    let mut owners = json_kv::read::<Ids>(OWNERS)?.unwrap_or_default();
    owners.remove(owner_id);
    if owners.is_empty() { json_kv::delete(OWNERS) } else { json_kv::write(OWNERS, &owners) }
}

/// The ids of the tasks of `owner_ids` (of every owner for `None`), sorted
/// and each once.
///
/// Outside a write call the indexes are read without a transaction, in
/// several `get-many` calls when there are many owners: a task reassigned
/// meanwhile may be found under both owners (hence each once) or, rarely,
/// under neither.
pub fn task_ids(owner_ids: Option<Vec<&str>>) -> Result<Vec<String>, Failure> {
    let owner_ids: Vec<String> = match owner_ids {
        Some(owner_ids) => owner_ids.into_iter().map(String::from).collect(),
        None => json_kv::read::<Ids>(OWNERS)?.unwrap_or_default().into_iter().collect(),
    };
    let keys: Vec<String> = owner_ids.iter().map(|owner_id| key(owner_id)).collect();
    let mut ids = Ids::new();
    for index in json_kv::read_many::<Ids>(&keys)?.into_iter().flatten() {
        ids.extend(index);
    }
    Ok(ids.into_iter().collect())
}
