//! Accounts and tokens: argon2id passwords, HS256 access JWTs, rotating
//! refresh tokens and revocation (in Redis), the users table, the account
//! management of owners and admins, password resets, and the middleware
//! that turns a bearer token into an `Actor`.

mod lockout;
mod manage;
pub mod middleware;
mod oidc;
mod password;
mod refresh;
mod reset;
mod revocation;
mod service;
mod sessions;
mod tokens;
mod users;

pub use lockout::LoginLockout;
pub use manage::{AccountManager, AdminChanges, MAX_USERS_PAGE, PasswordChange, ProfileChanges};
pub use middleware::{AccessToken, Admin, Authenticated, ExternalTokens, TokenVerifier};
pub use oidc::OidcProvider;
pub use reset::{PasswordResets, ResetConfirmation, ResetNotification, ResetRequest};
pub use revocation::{AdmissionCheck, REVOKED_BY_LUA, UserRevocation};
pub use service::{Accounts, AuthError, Credentials, Registration};
pub use sessions::{RefreshRequest, Sessions, Tokens};
pub use tokens::{AsOf, TokenKeys};
pub use users::{User, UserPage, UserRepository};

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
