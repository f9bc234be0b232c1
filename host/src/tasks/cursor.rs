//! The opaque `cursor` of `GET /tasks`: the storage plugin's own cursor,
//! sealed with a fingerprint of the query it continues and a MAC keyed by
//! the host's key.
//!
//! Invariants: a cursor opens only for the query it was issued for, so one
//! replayed against other filters or another sort is refused instead of
//! silently skipping or repeating tasks; and only cursors a replica of this
//! deployment issued open at all, so the storage plugin is never handed a
//! cursor it did not write — a forged one is the client's mistake (400),
//! never the plugin's or the database's.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::HostKey;

/// Bytes of the MAC a cursor carries.
const MAC_LEN: usize = 16;

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

/// Seals and opens cursors; every replica sharing the host's key opens the
/// cursors of the others.
#[derive(Clone)]
pub struct CursorSeal {
    key: Hmac<Sha256>,
}

impl CursorSeal {
    pub fn new(key: &HostKey) -> Self {
        // A key of its own, derived, so a cursor's MAC says nothing of the host's key.
        let mut derive = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
        derive.update(b"todo-host listing cursor");
        let derived = derive.finalize().into_bytes();
        Self { key: Hmac::new_from_slice(&derived).expect("HMAC takes any key length") }
    }

    pub fn seal(&self, plugin_cursor: String, fingerprint: &str) -> String {
        let sealed = Sealed { c: plugin_cursor, q: fingerprint.to_string() };
        let payload = serde_json::to_vec(&sealed).expect("a cursor serializes");
        let mut mac = self.key.clone();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(&tag[..MAC_LEN]))
    }

    /// The plugin's cursor, if this deployment issued `cursor` for the
    /// query `fingerprint`.
    pub fn open(&self, cursor: &str, fingerprint: &str) -> Result<String, &'static str> {
        const MALFORMED: &str = "the cursor is not one this server issued; start from the first page";
        let (payload, tag) = cursor.split_once('.').ok_or(MALFORMED)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| MALFORMED)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| MALFORMED)?;
        if tag.len() != MAC_LEN {
            return Err(MALFORMED);
        }
        let mut mac = self.key.clone();
        mac.update(&payload);
        mac.verify_truncated_left(&tag).map_err(|_| MALFORMED)?;
        let sealed: Sealed = serde_json::from_slice(&payload).map_err(|_| MALFORMED)?;
        if sealed.q != fingerprint {
            return Err("the cursor belongs to a listing with other filters or another sort order");
        }
        Ok(sealed.c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_only_for_its_own_query() {
        let seal = CursorSeal::new(&HostKey::unknown());
        let first = fingerprint(&("created_at", "desc", Some("todo")));
        let other = fingerprint(&("created_at", "desc", Some("done")));
        let cursor = seal.seal("123:abc".into(), &first);
        assert_eq!(seal.open(&cursor, &first).unwrap(), "123:abc");
        assert!(seal.open(&cursor, &other).unwrap_err().contains("other filters"));
        assert!(seal.open("not base64 !", &first).is_err());
        assert!(seal.open("", &first).is_err());
    }

    #[test]
    fn a_forged_cursor_does_not_open() {
        let seal = CursorSeal::new(&HostKey::unknown());
        let query = fingerprint(&("created_at", "desc"));
        let cursor = seal.seal("123:abc".into(), &query);
        let (_, tag) = cursor.split_once('.').unwrap();
        let forged_payload = format!(r#"{{"c":"9999999999999999999:x","q":"{query}"}}"#);
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(forged_payload));
        assert!(seal.open(&forged, &query).unwrap_err().contains("not one this server issued"));
        let (payload, _) = cursor.split_once('.').unwrap();
        assert!(seal.open(payload, &query).is_err(), "a cursor without its MAC");
        assert!(seal.open(&format!("{payload}.{}", &tag[..4]), &query).is_err(), "a shortened MAC");
    }
}
