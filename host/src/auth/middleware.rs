//! Bearer tokens on requests. `identify` runs on every route, before rate
//! limiting (which keys on the user when there is one); `require_auth`
//! guards the protected routes and answers 401 problems.
//!
//! A revoked token (logout, or its refresh family revoked) is refused on
//! every replica: the revocation list is in Redis, and the cluster
//! admission script (`ratelimit::cluster`) checks it in the round trip that
//! counts the request against the cluster quota, then calls `revoked`. When
//! Redis does not answer, the check fails open with a warning: an access
//! token lives 15 minutes by default, and refusing every request during an
//! outage would turn a cache failure into a full one.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::oidc::{OidcProvider, Refused};
use super::sessions::Sessions;
use super::tokens::{Claims, refusal};
use super::users::UserRepository;
use super::{Actor, Role};
use crate::problem::Problem;

const NO_TOKEN: &str = "this endpoint needs `Authorization: Bearer <access token>`";
const ACCOUNT_DISABLED: &str = "the account of this token is disabled";

/// What the `Authorization` header said, if anything.
#[derive(Debug, Clone)]
pub enum Identity {
    Actor(Actor),
    Rejected(&'static str),
    /// The token could not be checked now (its provider or the accounts
    /// cannot be reached): a 503, so that the client retries rather than
    /// signs in again.
    Unavailable(&'static str),
}

/// Why a token does not name an actor.
enum Refusal {
    Rejected(&'static str),
    Unavailable(&'static str),
}

impl From<Refused> for Refusal {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Token(reason) => Self::Rejected(reason),
            Refused::Unavailable(reason) => Self::Unavailable(reason),
        }
    }
}

/// What verifies bearer tokens: the host's own (`Sessions`) and, when
/// OIDC_ISSUER is set, the external provider's.
#[derive(Clone)]
pub struct TokenVerifier {
    pub sessions: Sessions,
    pub external: Option<Arc<ExternalTokens>>,
}

/// The external provider's tokens, and the accounts of their users.
pub struct ExternalTokens {
    provider: Arc<OidcProvider>,
    users: UserRepository,
    /// `sub` → the account, the role last recorded for it and when: a
    /// known user costs no database round trip for `REMEMBERED_FOR` (an
    /// account disabled meanwhile is refused by the admission check,
    /// `auth::revocation`, whose record outlives it).
    accounts: Mutex<HashMap<String, (Uuid, Role, Instant)>>,
}

/// How many external users' accounts a process remembers, and how long.
const REMEMBERED_ACCOUNTS: usize = 10_000;
const REMEMBERED_FOR: Duration = Duration::from_secs(60);

impl ExternalTokens {
    pub fn new(provider: OidcProvider, users: UserRepository) -> Self {
        Self { provider: Arc::new(provider), users, accounts: Mutex::default() }
    }

    /// Fetches the provider's keys in the background, ahead of the first
    /// token.
    pub fn prefetch_keys(&self) {
        let provider = self.provider.clone();
        tokio::spawn(async move { provider.prefetch().await });
    }

    /// The caller of a token of the provider; its account created on first
    /// sight, its role the one the token carries.
    async fn actor(&self, token: &str) -> Result<Actor, Refusal> {
        let identity = self.provider.verify(token).await?;
        if let Some(user_id) = self.remembered(&identity.subject, identity.role) {
            return Ok(Actor { user_id, role: identity.role });
        }
        let (user_id, disabled) = self.users.external(self.provider.issuer(), &identity).await.map_err(|error| {
            tracing::warn!(%error, "cannot record the account of an external token");
            Refusal::Unavailable("the account of this token cannot be looked up now; retry")
        })?;
        if disabled {
            return Err(Refusal::Rejected(ACCOUNT_DISABLED));
        }
        self.remember(identity.subject, user_id, identity.role);
        Ok(Actor { user_id, role: identity.role })
    }

    /// The account of `subject`, if it was recorded with `role` lately.
    fn remembered(&self, subject: &str, role: Role) -> Option<Uuid> {
        let accounts = self.accounts.lock().expect("poisoned");
        let (user_id, recorded, at) = accounts.get(subject)?;
        (*recorded == role && at.elapsed() < REMEMBERED_FOR).then_some(*user_id)
    }

    fn remember(&self, subject: String, user_id: Uuid, role: Role) {
        let mut accounts = self.accounts.lock().expect("poisoned");
        if accounts.len() >= REMEMBERED_ACCOUNTS {
            accounts.retain(|_, (_, _, at)| at.elapsed() < REMEMBERED_FOR);
        }
        if accounts.len() < REMEMBERED_ACCOUNTS {
            accounts.insert(subject, (user_id, role, Instant::now()));
        }
    }
}

/// A token verified, by whom.
enum Verified {
    Own(Claims),
    External(Actor),
}

impl TokenVerifier {
    /// The external provider's when the token says it issued it (and its
    /// signature will tell), the host's own otherwise.
    async fn verify(&self, token: &str) -> Result<Verified, Refusal> {
        match &self.external {
            Some(external) if unverified_issuer(token).as_deref() == Some(external.provider.issuer()) => {
                external.actor(token).await.map(Verified::External)
            }
            _ => verify(&self.sessions, token).map(Verified::Own).map_err(Refusal::Rejected),
        }
    }
}

/// The `iss` a token claims, before anything is verified: only to choose
/// who verifies it.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

/// Verifies the bearer token's signature and lifetime, if there is one,
/// and records the outcome (whether it was revoked is asked later, see the
/// module comment).
pub async fn identify(State(tokens): State<TokenVerifier>, mut request: Request, next: Next) -> Response {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let token = value.to_str().ok().and_then(bearer_token).map(str::to_string);
        let verified = match token {
            None => Err(Refusal::Rejected("the Authorization header must be `Bearer <access token>`")),
            Some(token) => tokens.verify(&token).await,
        };
        let extensions = request.extensions_mut();
        match verified {
            Ok(Verified::Own(claims)) => {
                extensions.insert(Identity::Actor(Actor { user_id: claims.sub, role: claims.role }));
                extensions.insert(AccessToken(claims));
            }
            Ok(Verified::External(actor)) => {
                extensions.insert(Identity::Actor(actor));
            }
            Err(Refusal::Rejected(reason)) => {
                extensions.insert(Identity::Rejected(reason));
            }
            Err(Refusal::Unavailable(reason)) => {
                extensions.insert(Identity::Unavailable(reason));
            }
        }
    }
    next.run(request).await
}

/// Refuses the request's token: it was revoked.
pub fn revoked(request: &mut Request) {
    request.extensions_mut().remove::<AccessToken>();
    request.extensions_mut().insert(Identity::Rejected("the access token has been revoked"));
}

/// The token's claims, or why it is refused.
fn verify(sessions: &Sessions, token: &str) -> Result<Claims, &'static str> {
    sessions.keys().verify(token).map_err(|error| refusal(&error))
}

fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Lets only requests with a valid token through.
pub async fn require_auth(mut request: Request, next: Next) -> Response {
    match request.extensions().get::<Identity>() {
        Some(Identity::Actor(actor)) => {
            let actor = *actor;
            request.extensions_mut().insert(Authenticated(actor));
            next.run(request).await
        }
        Some(Identity::Rejected(reason)) => unauthorized(reason).into_response(),
        Some(Identity::Unavailable(reason)) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "identity-unavailable", "The identity cannot be checked now")
                .detail(*reason)
                .header(header::RETRY_AFTER, "5")
                .into_response()
        }
        None => unauthorized(NO_TOKEN).into_response(),
    }
}

fn unauthorized(reason: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required")
        .detail(reason)
        .header(header::WWW_AUTHENTICATE, "Bearer realm=\"todo-host\"")
}

/// The caller of a route behind `require_auth`.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        verified(parts)
    }
}

/// The caller of an admins-only route behind `require_auth`; anyone else
/// is refused with a 403.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(actor) = verified(parts)?;
        match actor.role {
            Role::Admin => Ok(Admin(actor)),
            _ => Err(Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail("this route is for admins")),
        }
    }
}

/// The verified, unrevoked access token of a route behind `require_auth`
/// (what logout revokes).
#[derive(Debug, Clone)]
pub struct AccessToken(pub Claims);

impl<S: Send + Sync> FromRequestParts<S> for AccessToken {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        verified(parts)
    }
}

fn verified<T: Clone + Send + Sync + 'static>(parts: &Parts) -> Result<T, Problem> {
    parts.extensions.get::<T>().cloned().ok_or_else(|| unauthorized(NO_TOKEN))
}
