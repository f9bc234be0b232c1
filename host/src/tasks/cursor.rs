//! The opaque `cursor` of `GET /tasks`: the storage plugin's own cursor,
//! sealed with a fingerprint of the query it continues, so that a cursor
//! replayed against other filters or another sort is refused instead of
//! silently skipping or repeating tasks.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Serialize, Deserialize)]
struct Sealed {
    /// The plugin's cursor.
    c: String,
    /// Fingerprint of the query.
    q: String,
}

/// A short, stable digest of everything that shapes a listing's order and
/// contents (but not its page size).
pub fn fingerprint(query: &impl Serialize) -> String {
    let canonical = serde_json::to_vec(query).expect("query parameters serialize");
    hex::encode(&Sha256::digest(&canonical)[..8])
}

pub fn seal(plugin_cursor: String, fingerprint: &str) -> String {
    let sealed = Sealed { c: plugin_cursor, q: fingerprint.to_string() };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&sealed).expect("a cursor serializes"))
}

/// The plugin's cursor, if `cursor` was issued for the query `fingerprint`.
pub fn open(cursor: &str, fingerprint: &str) -> Result<String, &'static str> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| "the cursor is malformed")?;
    let sealed: Sealed = serde_json::from_slice(&bytes).map_err(|_| "the cursor is malformed")?;
    if sealed.q != fingerprint {
        return Err("the cursor belongs to a listing with other filters or another sort order");
    }
    Ok(sealed.c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_only_for_its_own_query() {
        let first = fingerprint(&("created_at", "desc", Some("todo")));
        let other = fingerprint(&("created_at", "desc", Some("done")));
        let cursor = seal("123:abc".into(), &first);
        assert_eq!(open(&cursor, &first).unwrap(), "123:abc");
        assert!(open(&cursor, &other).is_err());
        assert!(open("not base64 !", &first).is_err());
    }
}
