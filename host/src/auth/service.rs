//! Registration, login and account creation; the errors of `/auth/*`.

use serde::Deserialize;

use super::Role;
use super::password::{PasswordHasher, PasswordPolicyError};
use super::users::{NewUser, User, UserError, UserRepository};
use crate::redis_client::RedisUnavailable;
use crate::validation::{FieldError, NO_NUL_RULE, contains_nul};

pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// The body of `POST /auth/register`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ann@example.com", "password": "correct-horse-42", "display_name": "Ann"}))]
pub struct Registration {
    #[schema(format = "email", max_length = 254)]
    pub email: String,
    /// 10–128 characters, with a letter and a digit, not containing the email.
    #[schema(min_length = 10, max_length = 128, pattern = "^(?=.*[A-Za-z])(?=.*[0-9])")]
    pub password: String,
    #[serde(default)]
    #[schema(max_length = 100, pattern = r"^[^\u0000]*$")]
    pub display_name: Option<String>,
}

/// The body of `POST /auth/login`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ann@example.com", "password": "correct-horse-42"}))]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the request breaks {} rule(s)", .0.len())]
    Invalid(Vec<FieldError>),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("the email or the password is wrong")]
    InvalidCredentials,
    /// Unknown, expired, revoked or reused: deliberately one error.
    #[error("the refresh token is not valid")]
    InvalidRefreshToken,
    #[error("too many failed logins for this account; retry in {retry_after_secs} s")]
    LockedOut { retry_after_secs: u64 },
    /// Only told to someone who knew the password.
    #[error("this account is disabled")]
    AccountDisabled,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("this account signs in at the identity provider and has no password here")]
    ProviderAccount,
    #[error("an admin cannot disable, demote or delete their own account")]
    SelfLockout,
    #[error("no account has this id")]
    UserNotFound,
    #[error("{0}")]
    InvalidQuery(&'static str),
    /// Unknown, used or expired: deliberately one error.
    #[error("the password reset token is not valid")]
    InvalidResetToken,
    #[error("refresh tokens and logout need Redis, and REDIS_URL is not set")]
    RedisNotConfigured,
    #[error(transparent)]
    RedisUnavailable(#[from] RedisUnavailable),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The database failing under an account operation: a 500, its cause logged.
impl From<sqlx::Error> for AuthError {
    fn from(error: sqlx::Error) -> Self {
        AuthError::Internal(error.into())
    }
}

impl From<UserError> for AuthError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::EmailTaken => AuthError::EmailTaken,
            UserError::Database(error) => error.into(),
        }
    }
}

/// Accounts: creation under the password policy, and password checks.
#[derive(Clone)]
pub struct Accounts {
    users: UserRepository,
    hasher: PasswordHasher,
}

impl Accounts {
    pub fn new(users: UserRepository) -> Self {
        Self { users, hasher: PasswordHasher::new() }
    }

    /// Self-service sign-up: always the `user` role.
    pub async fn register(&self, registration: Registration) -> Result<User, AuthError> {
        self.create_user(registration, Role::User).await
    }

    /// Creates an account of any role (the `user create` command).
    pub async fn create_user(&self, registration: Registration, role: Role) -> Result<User, AuthError> {
        let email = normalize_email(&registration.email);
        let mut errors = Vec::new();
        if let Err(detail) = check_email(&email) {
            errors.push(FieldError::new("/email", detail));
        }
        if let Err(PasswordPolicyError(broken)) = PasswordHasher::check_policy(&registration.password, &email) {
            errors.extend(broken.into_iter().map(|rule| FieldError::new("/password", rule)));
        }
        let display_name = display_name(registration.display_name, "/display_name").unwrap_or_else(|error| {
            errors.push(error);
            None
        });
        if !errors.is_empty() {
            return Err(AuthError::Invalid(errors));
        }
        let password_hash = self.hasher.hash(registration.password).await?;
        Ok(self.users.insert(NewUser { email, password_hash, display_name, role }).await?)
    }

    /// The hash of `password` as the new password of the account `email`,
    /// or the rules it breaks.
    pub async fn new_password_hash(&self, password: String, email: &str) -> Result<String, AuthError> {
        if let Err(PasswordPolicyError(broken)) = PasswordHasher::check_policy(&password, email) {
            let errors = broken.into_iter().map(|rule| FieldError::new("/new_password", rule)).collect();
            return Err(AuthError::Invalid(errors));
        }
        Ok(self.hasher.hash(password).await?)
    }

    /// Whether `password` is the account's (never for an account without
    /// one).
    pub async fn password_matches(&self, password: String, hash: Option<String>) -> Result<bool, AuthError> {
        Ok(self.hasher.verify(password, hash).await?)
    }

    /// The account these credentials open; the same error whether the
    /// email is unknown or the password wrong.
    pub async fn authenticate(&self, credentials: Credentials) -> Result<User, AuthError> {
        let email = normalize_email(&credentials.email);
        // No account has such an email (registration refuses it); the
        // password is still checked, against the decoy, for even timing.
        let account = if contains_nul(&email) {
            None
        } else {
            self.users.find_by_email(&email).await.map_err(anyhow::Error::from)?
        };
        let (user, hash) = match account {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        let matches = self.hasher.verify(credentials.password, hash).await?;
        let user = user.filter(|_| matches).ok_or(AuthError::InvalidCredentials)?;
        if user.disabled {
            return Err(AuthError::AccountDisabled);
        }
        Ok(user)
    }
}

/// A display name as stored: trimmed, `None` when blank; or why not.
pub(super) fn display_name(name: Option<String>, pointer: &str) -> Result<Option<String>, FieldError> {
    let name = name.map(|name| name.trim().to_string()).filter(|name| !name.is_empty());
    if name.as_ref().is_some_and(|name| name.chars().count() > MAX_DISPLAY_NAME_CHARS) {
        return Err(FieldError::new(pointer, format!("must be at most {MAX_DISPLAY_NAME_CHARS} characters")));
    }
    if name.as_deref().is_some_and(contains_nul) {
        return Err(FieldError::new(pointer, NO_NUL_RULE));
    }
    Ok(name)
}

pub(super) fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn check_email(email: &str) -> Result<(), String> {
    let valid_shape = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    });
    if !valid_shape || email.chars().any(|c| c.is_whitespace() || c == '\0') {
        return Err("must be an email address".into());
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return Err(format!("must be at most {MAX_EMAIL_CHARS} characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Ann@Example.COM "), "ann@example.com");
        assert!(check_email("ann@example.com").is_ok());
        for bad in ["ann", "@example.com", "ann@", "a b@example.com", "ann@x@y", "ann@.com"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
