//! Password hashing (argon2id, PHC strings) and the password policy.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Rules a new password breaks, each one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicyError(pub Vec<String>);

#[derive(Clone)]
pub struct PasswordHasher {
    /// Verified against when an email is unknown, so that a login takes as
    /// long whether or not the account exists.
    decoy_hash: Arc<str>,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordHasher {
    pub fn new() -> Self {
        let decoy_hash = hash_blocking("decoy password that never matches").expect("argon2 hashes a constant");
        Self { decoy_hash: decoy_hash.into() }
    }

    /// Checks the policy: length bounds, letters and digits, not the email.
    pub fn check_policy(password: &str, email: &str) -> Result<(), PasswordPolicyError> {
        let mut broken = Vec::new();
        let length = password.chars().count();
        if length < MIN_PASSWORD_CHARS {
            broken.push(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
        }
        if length > MAX_PASSWORD_CHARS {
            broken.push(format!("must be at most {MAX_PASSWORD_CHARS} characters"));
        }
        if !password.chars().any(char::is_alphabetic) {
            broken.push("must contain a letter".to_string());
        }
        if !password.chars().any(|c| c.is_ascii_digit()) {
            broken.push("must contain a digit".to_string());
        }
        if !email.is_empty() && password.to_lowercase().contains(&email.to_lowercase()) {
            broken.push("must not contain the email address".to_string());
        }
        if broken.is_empty() { Ok(()) } else { Err(PasswordPolicyError(broken)) }
    }

    /// Hashes on the blocking pool: argon2id is deliberately slow.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
    }

    /// Verifies `password` against `hash`, or against the decoy when there
    /// is no account, so both paths cost the same.
    pub async fn verify(&self, password: String, hash: Option<String>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.decoy_hash.to_string());
        let matches = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash is malformed: {e}"))?;
            Ok::<_, anyhow::Error>(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await??;
        Ok(known && matches)
    }
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_lists_every_broken_rule() {
        let PasswordPolicyError(broken) = PasswordHasher::check_policy("short", "a@b.c").unwrap_err();
        assert_eq!(broken.len(), 2, "{broken:?}"); // too short, no digit
        assert!(PasswordHasher::check_policy("correct horse 42", "a@b.c").is_ok());
        assert!(PasswordHasher::check_policy("me@example.com1", "me@example.com").is_err());
    }

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id() {
        let hasher = PasswordHasher::new();
        let hash = hasher.hash("correct horse 42".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify("correct horse 42".into(), Some(hash.clone())).await.unwrap());
        assert!(!hasher.verify("wrong horse 42".into(), Some(hash)).await.unwrap());
        assert!(!hasher.verify("decoy password that never matches".into(), None).await.unwrap());
    }
}
