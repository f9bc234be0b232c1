//! An account's life after sign-up: its owner's profile and password, an
//! admin's changes (role, disabled) and its end.
//!
//! Invariants:
//! - What ends tokens ends them in Redis (`revocation`) before the database
//!   changes — a failure between the two leaves sessions ended and the
//!   account as it was, never a changed account with its old sessions — and
//!   again after: tokens are dated by when their account row was read
//!   (`AsOf`), so a login or refresh that read the row before the change,
//!   however long it took, made tokens older than the second revocation.
//!   Lifting `disabled` comes after the database change, for the same
//!   reason.
//! - A password change or reset ends every session of the user, the one
//!   asking included; a password change answers a new one.
//! - An admin cannot disable, demote or delete their own account, so the
//!   last admin cannot lock everyone out by accident.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use uuid::Uuid;

use super::lockout::LoginLockout;
use super::revocation::UserRevocation;
use super::service::{Accounts, AuthError, display_name};
use super::sessions::{Sessions, Tokens};
use super::tokens::AsOf;
use super::users::{AccountChanges, User, UserPage, UserRepository};
use super::{Actor, Role};
use crate::validation::present;

/// How many accounts `GET /users` answers at most.
pub const MAX_USERS_PAGE: u32 = 100;

/// The body of `PATCH /users/me`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChanges {
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 100)]
    pub display_name: Option<Option<String>>,
}

/// The body of `POST /users/me/password`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// The password policy of registration.
    pub new_password: String,
}

/// The body of `PATCH /users/{id}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminChanges {
    #[serde(default)]
    pub role: Option<Role>,
    /// `true`: no login, every token of the account refused at once.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 100)]
    pub display_name: Option<Option<String>>,
}

#[derive(Clone)]
pub struct AccountManager {
    accounts: Accounts,
    users: UserRepository,
    sessions: Sessions,
    lockout: LoginLockout,
}

impl AccountManager {
    pub fn new(accounts: Accounts, users: UserRepository, sessions: Sessions, lockout: LoginLockout) -> Self {
        Self { accounts, users, sessions, lockout }
    }

    /// The account of `id`.
    pub async fn get(&self, id: Uuid) -> Result<User, AuthError> {
        self.users.find_by_id(id).await?.ok_or(AuthError::UserNotFound)
    }

    /// `PATCH /users/me`.
    pub async fn update_profile(&self, actor: Actor, changes: ProfileChanges) -> Result<User, AuthError> {
        let display_name = changed_display_name(changes.display_name)?;
        let changes = AccountChanges { display_name, ..AccountChanges::default() };
        self.users.update(actor.user_id, &changes).await?.ok_or(AuthError::UserNotFound)
    }

    /// `POST /users/me/password`: the current password proven (a wrong one
    /// counts as a failed login), every session ended, the new password
    /// set; answers the caller's new session.
    pub async fn change_password(&self, actor: Actor, change: PasswordChange) -> Result<Tokens, AuthError> {
        let (user, hash) = self.users.find_with_hash(actor.user_id).await?.ok_or(AuthError::UserNotFound)?;
        if hash.is_none() {
            return Err(AuthError::ProviderAccount);
        }
        let proven = async {
            match self.accounts.password_matches(change.current_password, hash).await? {
                true => Ok(user.clone()),
                false => Err(AuthError::WrongPassword),
            }
        };
        let user = self.lockout.attempt(&user.email, proven).await?;
        let new_hash = self.accounts.new_password_hash(change.new_password, &user.email).await?;
        self.set_password(user.id, &new_hash).await?;
        self.sessions.start(&user, AsOf::now()).await
    }

    /// Sets the password hash of `user_id`, ending every session of the
    /// account around it (see the module's invariants).
    pub(super) async fn set_password(&self, user_id: Uuid, hash: &str) -> Result<(), AuthError> {
        self.sessions.revoke_user(user_id, UserRevocation::Sessions).await?;
        if !self.users.set_password(user_id, hash).await? {
            return Err(AuthError::UserNotFound);
        }
        self.sessions.revoke_user(user_id, UserRevocation::Sessions).await
    }

    /// `GET /users`: accounts by email, `search` a substring of the email
    /// or display name, from the opaque `cursor` of the previous page.
    pub async fn list(&self, search: Option<&str>, cursor: Option<&str>, limit: u32) -> Result<UserPage, AuthError> {
        let after = cursor.map(open_cursor).transpose()?;
        let search = search.map(|text| text.trim().to_lowercase()).filter(|text| !text.is_empty());
        let limit = limit.clamp(1, MAX_USERS_PAGE);
        let mut items = self.users.list(search.as_deref(), after.as_deref(), limit + 1).await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = more.then(|| items.last().map(|last| URL_SAFE_NO_PAD.encode(&last.email))).flatten();
        Ok(UserPage { items, next_cursor })
    }

    /// `PATCH /users/{id}` by `admin`.
    pub async fn administer(&self, admin: Actor, id: Uuid, changes: AdminChanges) -> Result<User, AuthError> {
        let demotes = changes.role.is_some_and(|role| role != Role::Admin);
        if id == admin.user_id && (changes.disabled == Some(true) || demotes) {
            return Err(AuthError::SelfLockout);
        }
        let display_name = changed_display_name(changes.display_name)?;
        let current = self.get(id).await?;
        // The provider's token says an external account's role, every time.
        if current.external && changes.role.is_some_and(|role| role != current.role) {
            return Err(AuthError::ProviderAccount);
        }
        let ends = match (changes.disabled, changes.role) {
            (Some(true), _) if !current.disabled => Some(UserRevocation::Disable),
            (_, Some(role)) if role != current.role => Some(UserRevocation::Tokens),
            _ => None,
        };
        if let Some(what) = ends {
            self.sessions.revoke_user(id, what).await?;
        }
        let account = AccountChanges { role: changes.role, disabled: changes.disabled, display_name };
        let user = self.users.update(id, &account).await?.ok_or(AuthError::UserNotFound)?;
        if let Some(what) = ends {
            self.sessions.revoke_user(id, what).await?;
        }
        // Whatever the account was a moment ago: an enable racing a
        // disable must not leave the flag behind an enabled account.
        if changes.disabled == Some(false) {
            self.sessions.revoke_user(id, UserRevocation::Enable).await?;
        }
        tracing::info!(admin = %admin.user_id, user_id = %id, ?ends, "account changed by an admin");
        Ok(user)
    }

    /// The first step of `DELETE /users/{id}` by `admin`: the account is
    /// disabled and its tokens refused, so that it makes nothing new while
    /// its tasks are deleted.
    pub async fn begin_deletion(&self, admin: Actor, id: Uuid) -> Result<User, AuthError> {
        let changes = AdminChanges { role: None, disabled: Some(true), display_name: None };
        self.administer(admin, id, changes).await
    }

    /// The last step of `DELETE /users/{id}`.
    pub async fn delete(&self, admin: Actor, id: Uuid) -> Result<(), AuthError> {
        match self.users.delete(id).await? {
            true => {
                tracing::info!(admin = %admin.user_id, user_id = %id, "account deleted by an admin");
                Ok(())
            }
            false => Err(AuthError::UserNotFound),
        }
    }
}

/// The email a `GET /users` cursor resumes after.
fn open_cursor(cursor: &str) -> Result<String, AuthError> {
    let invalid = || AuthError::InvalidQuery("`cursor` is not a cursor this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// A requested display name, checked as registration checks it (`None`:
/// not to be changed).
fn changed_display_name(requested: Option<Option<String>>) -> Result<Option<Option<String>>, AuthError> {
    let checked = requested.map(|name| display_name(name, "/display_name")).transpose();
    checked.map_err(|error| AuthError::Invalid(vec![error]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_the_last_email_and_garbage_is_refused() {
        let cursor = URL_SAFE_NO_PAD.encode("ann@example.com");
        assert_eq!(open_cursor(&cursor).unwrap(), "ann@example.com");
        assert!(matches!(open_cursor("not base64!"), Err(AuthError::InvalidQuery(_))));
    }
}
