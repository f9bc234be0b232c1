//! Accounts and tokens: argon2id passwords, HS256 access JWTs, rotating
//! refresh tokens and revocation (in Redis), the users table, and the
//! middleware that turns a bearer token into an `Actor`.

mod lockout;
pub mod middleware;
mod oidc;
mod password;
mod refresh;
mod revocation;
mod service;
mod sessions;
mod tokens;
mod users;

pub use lockout::LoginLockout;
pub use middleware::{AccessToken, Authenticated, ExternalTokens, TokenVerifier};
pub use oidc::OidcProvider;
pub use revocation::revocation_keys;
pub use service::{Accounts, AuthError, Credentials, Registration};
pub use sessions::{RefreshRequest, Sessions, Tokens};
pub use tokens::TokenKeys;
pub use users::{User, UserRepository};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: Uuid,
    pub role: Role,
}
