//! The users table (the host's own; plugins never see it).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::Role;
use super::oidc::ExternalIdentity;

/// An account as the API shows it: never with its password hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Switched off by an admin: no login, every token refused.
    pub disabled: bool,
    /// Signs in at the external identity provider; has no password here.
    pub external: bool,
}

pub struct NewUser {
    pub email: String,
    pub password_hash: String,
    pub display_name: Option<String>,
    pub role: Role,
}

/// What an admin changes of an account; `None`: unchanged.
#[derive(Debug, Default)]
pub struct AccountChanges {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// `Some(None)` clears it.
    pub display_name: Option<Option<String>>,
}

/// One page of `GET /users`, by email.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The columns every read of an account selects, `UserRow`'s.
const USER_COLUMNS: &str =
    "id, email, display_name, role, created_at, disabled_at IS NOT NULL AS disabled, password_hash";

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    display_name: Option<String>,
    role: String,
    created_at: DateTime<Utc>,
    disabled: bool,
    /// `None` for a user of the external provider.
    password_hash: Option<String>,
}

#[derive(Clone)]
pub struct UserRepository {
    pool: PgPool,
}

impl UserRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn insert(&self, user: NewUser) -> Result<User, UserError> {
        let id = Uuid::now_v7();
        let row: Result<(DateTime<Utc>,), sqlx::Error> = sqlx::query_as(
            "INSERT INTO users (id, email, password_hash, display_name, role) \
             VALUES ($1, $2, $3, $4, $5) RETURNING created_at",
        )
        .bind(id)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(&user.display_name)
        .bind(user.role.as_str())
        .fetch_one(&self.pool)
        .await;
        match row {
            Ok((created_at,)) => Ok(User {
                id,
                email: user.email,
                display_name: user.display_name,
                role: user.role,
                created_at,
                disabled: false,
                external: false,
            }),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => Err(UserError::EmailTaken),
            Err(error) => Err(error.into()),
        }
    }

    /// The account and its password hash (`None`: it signs in at the
    /// external provider).
    pub async fn find_by_email(&self, email: &str) -> Result<Option<(User, Option<String>)>, sqlx::Error> {
        let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.map(UserRow::into_user).transpose()
    }

    /// The account and its password hash, by id.
    pub async fn find_with_hash(&self, id: Uuid) -> Result<Option<(User, Option<String>)>, sqlx::Error> {
        let row: Option<UserRow> = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(UserRow::into_user).transpose()
    }

    /// The account as it is now (a refresh takes the current role).
    pub async fn find_by_id(&self, id: Uuid) -> Result<Option<User>, sqlx::Error> {
        Ok(self.find_with_hash(id).await?.map(|(user, _)| user))
    }

    /// Up to `limit` accounts after the email `after`, by email; `search`
    /// (already lower-cased) is a substring of the email or display name.
    pub async fn list(&self, search: Option<&str>, after: Option<&str>, limit: u32) -> Result<Vec<User>, sqlx::Error> {
        let pattern = search.map(|search| format!("%{}%", escape_like(search)));
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users \
             WHERE ($1::text IS NULL OR lower(email || ' ' || coalesce(display_name, '')) LIKE $1) \
               AND ($2::text IS NULL OR email > $2) \
             ORDER BY email LIMIT $3"
        ))
        .bind(pattern)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| Ok(row.into_user()?.0)).collect()
    }

    /// Applies `changes` to the account; `None` when no account has `id`.
    pub async fn update(&self, id: Uuid, changes: &AccountChanges) -> Result<Option<User>, sqlx::Error> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET \
                 role = coalesce($2, role), \
                 disabled_at = CASE WHEN $3::boolean IS NULL THEN disabled_at \
                                    WHEN $3 THEN coalesce(disabled_at, now()) ELSE NULL END, \
                 display_name = CASE WHEN $4 THEN $5 ELSE display_name END \
             WHERE id = $1 RETURNING {USER_COLUMNS}"
        ))
        .bind(id)
        .bind(changes.role.map(Role::as_str))
        .bind(changes.disabled)
        .bind(changes.display_name.is_some())
        .bind(changes.display_name.clone().flatten())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(UserRow::into_user).transpose()?.map(|(user, _)| user))
    }

    /// Replaces the password hash of an account that has one.
    pub async fn set_password(&self, id: Uuid, password_hash: &str) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash IS NOT NULL")
            .bind(id)
            .bind(password_hash)
            .execute(&self.pool)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Deletes the account (its reset tokens with it); `false` when none
    /// had `id`.
    pub async fn delete(&self, id: Uuid) -> Result<bool, sqlx::Error> {
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(deleted.rows_affected() == 1)
    }

    /// Those of `ids` no account has.
    pub async fn unknown(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT id FROM UNNEST($1::uuid[]) AS named (id) WHERE NOT EXISTS (SELECT 1 FROM users WHERE users.id = named.id)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
    }

    /// The account of the external provider's user `identity` (of
    /// `issuer`), created on first sight; its role recorded as the token
    /// carries it (written only when it changed). Its email is the
    /// provider's (verified) one when no account has it yet, else one made
    /// up from the issuer and subject: an account is never taken over by a
    /// provider that claims its email.
    /// Answers the account's id and whether it is disabled.
    pub async fn external(&self, issuer: &str, identity: &ExternalIdentity) -> Result<(Uuid, bool), sqlx::Error> {
        let email = identity
            .email
            .as_deref()
            .map(|email| email.trim().to_lowercase())
            .filter(|email| email.len() <= 254 && email.contains('@'));
        let (role, subject) = (identity.role.as_str(), identity.subject.as_str());
        // The provider's email first; when another account has it (even one
        // created a moment ago), the made-up one, which only this user has.
        for email in email.into_iter().chain([external_email(issuer, subject)]) {
            let known: Option<(Uuid, bool)> = sqlx::query_as(
                "WITH known AS (SELECT id, role, disabled_at FROM users \
                                WHERE external_issuer = $1 AND external_subject = $2), \
                      changed AS (UPDATE users SET role = $3 FROM known WHERE users.id = known.id AND known.role <> $3) \
                 SELECT id, disabled_at IS NOT NULL FROM known",
            )
            .bind(issuer)
            .bind(subject)
            .bind(role)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(known) = known {
                return Ok(known);
            }
            let created: Option<Uuid> = sqlx::query_scalar(
                "INSERT INTO users (id, email, display_name, role, external_issuer, external_subject) \
                 VALUES ($1, $2, left($3, 100), $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(Uuid::now_v7())
            .bind(&email)
            .bind(&identity.name)
            .bind(role)
            .bind(issuer)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(id) = created {
                return Ok((id, false));
            }
        }
        // Both inserts met an account of this very user, made meanwhile.
        sqlx::query_as(
            "SELECT id, disabled_at IS NOT NULL FROM users WHERE external_issuer = $1 AND external_subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_one(&self.pool)
        .await
    }
}

/// `text` matched literally by LIKE.
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The email of an external user whose provider gave none (or one another
/// account has): unique to the issuer and subject, and undeliverable
/// (`.invalid`, RFC 2606).
fn external_email(issuer: &str, subject: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new().chain_update(issuer).chain_update([0]).chain_update(subject).finalize();
    format!("{}@external.invalid", &hex::encode(digest)[..32])
}

impl UserRow {
    /// The account (its role checked) and its password hash.
    fn into_user(self) -> Result<(User, Option<String>), sqlx::Error> {
        let role = Role::parse(&self.role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role `{}`", self.role).into()))?;
        let user = User {
            id: self.id,
            email: self.email,
            display_name: self.display_name,
            role,
            created_at: self.created_at,
            disabled: self.disabled,
            external: self.password_hash.is_none(),
        };
        Ok((user, self.password_hash))
    }
}
