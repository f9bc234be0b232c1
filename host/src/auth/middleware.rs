//! Bearer tokens on requests. `identify` runs on every route, before rate
//! limiting (which keys on the user when there is one); `require_auth`
//! guards the protected routes and answers 401 problems.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;

use super::Actor;
use super::tokens::TokenKeys;
use crate::problem::Problem;

/// What the `Authorization` header said, if anything.
#[derive(Debug, Clone)]
pub enum Identity {
    Actor(Actor),
    Rejected(&'static str),
}

/// Verifies the bearer token, if any, and records the outcome.
pub async fn identify(State(keys): State<TokenKeys>, mut request: Request, next: Next) -> Response {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let identity = match value.to_str().ok().and_then(bearer_token) {
            None => Identity::Rejected("the Authorization header must be `Bearer <access token>`"),
            Some(token) => match keys.verify(token) {
                Ok(claims) => Identity::Actor(Actor { user_id: claims.sub, role: claims.role }),
                Err(error) => Identity::Rejected(match error.kind() {
                    ErrorKind::ExpiredSignature => "the access token has expired",
                    ErrorKind::InvalidSignature => "the access token's signature is not valid",
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        "the access token is not signed with HS256"
                    }
                    ErrorKind::InvalidIssuer => "the access token was not issued by this server",
                    _ => "the access token is malformed",
                }),
            },
        };
        request.extensions_mut().insert(identity);
    }
    next.run(request).await
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
        None => unauthorized("this endpoint needs `Authorization: Bearer <access token>`").into_response(),
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
        parts
            .extensions
            .get::<Authenticated>()
            .copied()
            .ok_or_else(|| unauthorized("this endpoint needs `Authorization: Bearer <access token>`"))
    }
}
