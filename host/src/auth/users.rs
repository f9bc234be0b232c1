//! The users table (the host's own; plugins never see it).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::Role;

/// An account as the API shows it: never with its password hash.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

pub struct NewUser {
    pub email: String,
    pub password_hash: String,
    pub display_name: Option<String>,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    display_name: Option<String>,
    role: String,
    created_at: DateTime<Utc>,
    password_hash: String,
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
            Ok((created_at,)) => {
                Ok(User { id, email: user.email, display_name: user.display_name, role: user.role, created_at })
            }
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => Err(UserError::EmailTaken),
            Err(error) => Err(error.into()),
        }
    }

    /// The account and its password hash.
    pub async fn find_by_email(&self, email: &str) -> Result<Option<(User, String)>, sqlx::Error> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, email, display_name, role, created_at, password_hash FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let role = Role::parse(&row.role)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown role `{}`", row.role).into()))?;
            let user =
                User { id: row.id, email: row.email, display_name: row.display_name, role, created_at: row.created_at };
            Ok((user, row.password_hash))
        })
        .transpose()
    }
}
