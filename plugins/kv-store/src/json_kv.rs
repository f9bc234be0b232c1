//! The `kv` import with JSON values: typed reads and writes whose errors name
//! the key.

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(test)]
use crate::testing::kv;
use storage_kit::failure::Failure;
#[cfg(not(test))]
use storage_kit::todo::plugin::kv;

/// The most keys one `get-many` asks for, so that neither the request nor
/// the answer grows with the store: a task's JSON is at most ~42 KB (10,000
/// description characters of up to 4 bytes), so one answer stays near
/// 10 MB, well within the default 64 MiB memory limit even decoded.
pub const MAX_KEYS_PER_READ: usize = 256;

/// The value at `key`; `None` when it is missing.
pub fn read<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Failure> {
    let bytes = kv::get(key).map_err(|error| Failure::kv(&format!("reading {key}"), error))?;
    bytes.map(|bytes| decode(key, &bytes)).transpose()
}

/// The values at `keys`, in their order, in one `get-many` per
/// `MAX_KEYS_PER_READ` keys.
pub fn read_many<T: DeserializeOwned>(keys: &[String]) -> Result<Vec<Option<T>>, Failure> {
    let mut values = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_KEYS_PER_READ) {
        let answers = kv::get_many(chunk)
            .map_err(|error| Failure::kv(&format!("reading {} keys, {} the first", chunk.len(), chunk[0]), error))?;
        if answers.len() != chunk.len() {
            return Err(Failure::internal(format!(
                "get-many answered {} values for {} keys",
                answers.len(),
                chunk.len()
            )));
        }
        for (key, bytes) in chunk.iter().zip(answers) {
            values.push(bytes.map(|bytes| decode(key, &bytes)).transpose()?);
        }
    }
    Ok(values)
}

pub fn write<T: Serialize>(key: &str, value: &T) -> Result<(), Failure> {
    let bytes = serde_json::to_vec(value)
        .map_err(|error| Failure::internal(format!("the value of {key} cannot be encoded: {error}")))?;
    kv::set(key, &bytes, None).map_err(|error| Failure::kv(&format!("writing {key}"), error))
}

pub fn delete(key: &str) -> Result<(), Failure> {
    kv::delete(key).map(|_existed| ()).map_err(|error| Failure::kv(&format!("deleting {key}"), error))
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes)
        .map_err(|error| Failure::internal(format!("{key} does not hold the expected JSON: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_kit::exports::todo::plugin::task_store::StoreError;

    #[test]
    fn many_keys_are_read_in_chunks_and_answered_in_order() {
        let keys: Vec<String> = (0..MAX_KEYS_PER_READ * 2 + 3).map(|n| format!("n:{n}")).collect();
        for (n, key) in keys.iter().enumerate().filter(|(n, _)| n % 3 != 0) {
            write(key, &n).unwrap();
        }
        let values = read_many::<usize>(&keys).unwrap();
        let expected: Vec<Option<usize>> = (0..keys.len()).map(|n| (n % 3 != 0).then_some(n)).collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn a_value_of_another_shape_is_an_internal_error_naming_the_key() {
        write("n:1", &"one").unwrap();
        let failure = read::<usize>("n:1").unwrap_err();
        assert!(matches!(&failure.error, StoreError::Internal(message) if message.starts_with("n:1 ")));
        assert!(failure.fails_batch);
    }
}
