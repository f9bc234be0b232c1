//! The token lifecycle: login hands out an access token and, with Redis, a
//! refresh token starting a family; refresh rotates it; logout revokes the
//! access token and its family (the cluster admission check refuses them).
//! Without Redis a login still succeeds, with an access token only.

use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use uuid::Uuid;

use super::Role;
use super::refresh::{RefreshToken, RefreshTokens};
use super::revocation::{AdmissionCheck, Revocations, UserRevocation};
use super::service::AuthError;
use super::tokens::{AsOf, Claims, LEEWAY_SECS, TokenKeys};
use super::users::{User, UserRepository};
use crate::redis_client::RedisClient;

/// The body of `POST /auth/refresh`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// What a login or a refresh hands out.
pub struct Tokens {
    pub access_token: String,
    pub expires_in: Duration,
    /// `None` when Redis is not configured or did not answer the login.
    pub refresh: Option<RefreshToken>,
}

#[derive(Clone)]
pub struct Sessions {
    keys: TokenKeys,
    users: UserRepository,
    /// `None` without `REDIS_URL`.
    store: Option<SessionStore>,
}

#[derive(Clone)]
struct SessionStore {
    refresh: RefreshTokens,
    revocations: Revocations,
}

impl Sessions {
    pub fn new(keys: TokenKeys, users: UserRepository, redis: Option<RedisClient>, refresh_ttl: Duration) -> Self {
        let store = redis.map(|redis| {
            // A revoked family must stay revoked while any of its tokens
            // could still be presented: its newest refresh token, or an
            // access token just issued with it.
            let family_ttl = refresh_ttl.max(keys.ttl()) + Duration::from_secs(LEEWAY_SECS);
            let revocations = Revocations::new(redis.clone(), family_ttl);
            SessionStore { refresh: RefreshTokens::new(redis, revocations.clone(), refresh_ttl), revocations }
        });
        Self { keys, users, store }
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    /// Tokens for a user who just proved their password, dated when their
    /// account was read (`as_of`). A Redis outage costs the refresh token,
    /// not the login.
    pub async fn start(&self, user: &User, as_of: AsOf) -> Result<Tokens, AuthError> {
        let refresh = match &self.store {
            None => None,
            Some(store) => store
                .refresh
                .start(user.id, as_of)
                .await
                .inspect_err(|error| tracing::warn!(user_id = %user.id, %error, "login without a refresh token"))
                .ok(),
        };
        self.tokens(user.id, user.role, refresh, as_of)
    }

    /// Rotates the refresh token; the new access token carries the
    /// account's current role.
    pub async fn refresh(&self, request: RefreshRequest) -> Result<Tokens, AuthError> {
        let store = self.store()?;
        let refresh = store.refresh.rotate(&request.refresh_token).await?.ok_or(AuthError::InvalidRefreshToken)?;
        let as_of = AsOf::now();
        let user = self
            .users
            .find_by_id(refresh.user_id)
            .await
            .context("cannot read the account of a refresh token")?
            .filter(|user| !user.disabled)
            .ok_or(AuthError::InvalidRefreshToken)?;
        self.tokens(user.id, user.role, Some(refresh), as_of)
    }

    /// Logout: the access token and its whole family stop working on every
    /// replica.
    pub async fn end(&self, claims: &Claims) -> Result<(), AuthError> {
        Ok(self.store()?.revocations.revoke(claims).await?)
    }

    /// Ends `what` of the user's tokens on every replica. Without Redis
    /// there is nothing to end but what each access token's lifetime ends.
    pub async fn revoke_user(&self, user_id: Uuid, what: UserRevocation) -> Result<(), AuthError> {
        match &self.store {
            Some(store) => Ok(store.revocations.revoke_user(user_id, what).await?),
            None => Ok(()),
        }
    }

    /// Whether `check`'s token was revoked since it was admitted; `false`
    /// when Redis is not there to say (as the admission check decides).
    pub async fn is_revoked(&self, check: &AdmissionCheck) -> bool {
        let Some(store) = &self.store else { return false };
        store.revocations.is_revoked(check).await.unwrap_or(false)
    }

    fn store(&self) -> Result<&SessionStore, AuthError> {
        self.store.as_ref().ok_or(AuthError::RedisNotConfigured)
    }

    fn tokens(
        &self,
        user_id: Uuid,
        role: Role,
        refresh: Option<RefreshToken>,
        as_of: AsOf,
    ) -> Result<Tokens, AuthError> {
        let access_token = self.keys.issue(user_id, role, refresh.as_ref().map(|refresh| refresh.family), as_of)?;
        Ok(Tokens { access_token, expires_in: self.keys.ttl(), refresh })
    }
}
