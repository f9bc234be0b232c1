//! Password reset by a token sent to the account's owner:
//! `POST /auth/password-reset` publishes a `password-reset` notification
//! (docs/events.md) for a mail handler to deliver, and
//! `POST /auth/password-reset/confirm` trades the token for a new password.
//!
//! Invariants:
//! - A request answers the same, as fast, whether or not an account has
//!   the email: the work runs after the answer (`PasswordResets::request`
//!   is spawned by the handler).
//! - A token is 256 random bits; the database keeps its SHA-256 only (the
//!   outbox holds the notification until it is published and pruned); it
//!   is used up in the transaction that checks it, row-locked while the
//!   password changes (single use, even when two confirmations race; usable
//!   again if the change fails) and expires after
//!   `PASSWORD_RESET_TTL_SECS`.
//! - The token row and its notification commit together (the outbox), so a
//!   token is never issued without being sent, nor sent without existing.
//! - One token per account per `REISSUE_AFTER` at most, however many
//!   requests race: nobody can flood someone's mailbox through this
//!   endpoint.
//! - A reset ends every session of the account (`AccountManager`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::manage::AccountManager;
use super::refresh::random_token;
use super::service::{Accounts, AuthError, normalize_email};
use crate::db::{HostConnection, HostKey};
use crate::kafka::topics;
use crate::outbox::{self, OutboxRecord, OutboxWaker};
use crate::trace::RequestTrace;

/// How soon an account may be sent another token.
const REISSUE_AFTER: Duration = Duration::from_secs(60);

/// The body of `POST /auth/password-reset`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

/// The body of `POST /auth/password-reset/confirm`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmation {
    /// The token of the `password-reset` notification.
    pub token: String,
    /// The password policy of registration.
    pub new_password: String,
}

/// The `password-reset` notification on the `notifications` topic.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ResetNotification {
    pub kind: String,
    pub recipient_id: Uuid,
    pub email: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct PasswordResets {
    pool: PgPool,
    key: HostKey,
    ttl: Duration,
    accounts: Accounts,
    manager: AccountManager,
    outbox: OutboxWaker,
}

impl PasswordResets {
    pub fn new(
        pool: PgPool,
        key: HostKey,
        ttl: Duration,
        accounts: Accounts,
        manager: AccountManager,
        outbox: OutboxWaker,
    ) -> Self {
        Self { pool, key, ttl, accounts, manager, outbox }
    }

    /// Issues and sends a token when an account with a password has
    /// `email` and is not disabled; otherwise does nothing. Errors are
    /// logged: the requester was answered already.
    pub async fn request(self, email: String, trace: RequestTrace) {
        match self.issue(&normalize_email(&email), &trace).await {
            Ok(true) => tracing::info!("password reset token issued"),
            Ok(false) => tracing::debug!("no password reset token issued"),
            Err(error) => tracing::error!(%error, "cannot issue a password reset token"),
        }
    }

    async fn issue(&self, email: &str, trace: &RequestTrace) -> Result<bool, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        // Requests for one account take turns on its row, so the second
        // sees the first's token and issues none.
        let account: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT id, email FROM users WHERE email = $1 AND password_hash IS NOT NULL AND disabled_at IS NULL \
             FOR NO KEY UPDATE",
        )
        .bind(email)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some((user_id, email)) = account else { return Ok(false) };
        let token = random_token();
        let issued: Option<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "INSERT INTO password_reset_tokens (token_hash, user_id, expires_at) \
             SELECT $1, $2, now() + make_interval(secs => $3) \
             WHERE NOT EXISTS (SELECT 1 FROM password_reset_tokens \
                               WHERE user_id = $2 AND created_at > now() - make_interval(secs => $4)) \
             RETURNING expires_at, created_at",
        )
        .bind(token_hash(&token))
        .bind(user_id)
        .bind(self.ttl.as_secs_f64())
        .bind(REISSUE_AFTER.as_secs_f64())
        .fetch_optional(&mut *transaction)
        .await?;
        let Some((expires_at, occurred_at)) = issued else { return Ok(false) };
        sqlx::query("DELETE FROM password_reset_tokens WHERE expires_at < now()").execute(&mut *transaction).await?;
        let notification = ResetNotification {
            kind: "password-reset".into(),
            recipient_id: user_id,
            email,
            token,
            expires_at,
            occurred_at,
        };
        let record = notification_record(&notification, trace);
        outbox::append(&mut HostConnection { connection: &mut transaction, key: &self.key }, &[record]).await?;
        transaction.commit().await?;
        self.outbox.wake();
        Ok(true)
    }

    /// Sets the new password of the token's account, using the token up
    /// and ending every session of the account.
    pub async fn confirm(&self, confirmation: ResetConfirmation) -> Result<(), AuthError> {
        let hash = token_hash(confirmation.token.trim());
        let account: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT users.id, users.email FROM password_reset_tokens JOIN users ON users.id = user_id \
             WHERE token_hash = $1 AND expires_at > now()",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let (user_id, email) = account.ok_or(AuthError::InvalidResetToken)?;
        // The policy first: a refused password leaves the token usable.
        let new_hash = self.accounts.new_password_hash(confirmation.new_password, &email).await?;
        // The token's row stays locked while the password changes: a racing
        // confirmation waits, then finds it gone; a failure (Redis down)
        // rolls back and leaves it usable.
        let mut transaction = self.pool.begin().await?;
        let locked: Option<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM password_reset_tokens WHERE token_hash = $1 AND expires_at > now() FOR UPDATE",
        )
        .bind(&hash)
        .fetch_optional(&mut *transaction)
        .await?;
        if locked != Some(user_id) {
            return Err(AuthError::InvalidResetToken);
        }
        self.manager.set_password(user_id, &new_hash).await?;
        sqlx::query("DELETE FROM password_reset_tokens WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        tracing::info!(%user_id, "password reset");
        Ok(())
    }
}

fn notification_record(notification: &ResetNotification, trace: &RequestTrace) -> OutboxRecord {
    let mut headers = trace.headers();
    headers.insert("content-type".into(), "application/json".into());
    OutboxRecord {
        topic: topics::NOTIFICATIONS.to_string(),
        key: Some(notification.recipient_id.to_string()),
        payload: serde_json::to_vec(notification).expect("a notification serialises"),
        headers,
    }
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notification_is_keyed_by_its_recipient_and_carries_the_token() {
        let notification = ResetNotification {
            kind: "password-reset".into(),
            recipient_id: Uuid::now_v7(),
            email: "ann@example.com".into(),
            token: random_token(),
            expires_at: Utc::now(),
            occurred_at: Utc::now(),
        };
        let record = notification_record(&notification, &RequestTrace::new("request-1".into(), None));
        assert_eq!(record.topic, "notifications");
        assert_eq!(record.key, Some(notification.recipient_id.to_string()));
        assert_eq!(serde_json::from_slice::<ResetNotification>(&record.payload).unwrap(), notification);
        assert_eq!(record.headers["x-request-id"], "request-1");
        assert_ne!(token_hash(&notification.token), notification.token.as_bytes(), "only a hash is kept");
    }
}
