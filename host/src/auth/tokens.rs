//! Access tokens: HS256 JWTs carrying sub, role, iat, exp, jti, iss and,
//! when a refresh token was issued with it, the refresh family (`fam`) so
//! that logging out or reusing a refresh token revokes it too.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Role;

/// The `iss` of every token this host signs, and the only one it accepts.
pub const ISSUER: &str = "todo-host";
/// Clock skew tolerated on `exp`: a revocation must outlive it.
pub(super) const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub iss: String,
    /// The refresh family of the login this token descends from; absent
    /// when no refresh token was issued (no Redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<Uuid>,
}

/// When the account row a token or session is made from was read: its
/// date for the revocation checks, so that one made from a row read before
/// a change is older than the revocation written after it
/// (`auth::manage`), however long the login took in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AsOf(DateTime<Utc>);

impl AsOf {
    /// Now: take it before reading the row.
    pub fn now() -> Self {
        Self(Utc::now())
    }

    pub fn millis(self) -> i64 {
        self.0.timestamp_millis()
    }

    /// A UUIDv7 whose time is this one (a token's `jti`).
    fn stamped_id(self) -> Uuid {
        let (secs, nanos) = (self.0.timestamp().max(0) as u64, self.0.timestamp_subsec_nanos());
        Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos))
    }
}

/// The signing and verification keys, and the rules a token must meet.
/// Cheap to clone: every request's middleware gets a copy.
#[derive(Clone)]
pub struct TokenKeys(Arc<Keys>);

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        validation.validate_nbf = true;
        Self(Arc::new(Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }))
    }

    pub fn ttl(&self) -> Duration {
        self.0.ttl
    }

    pub fn issue(&self, user_id: Uuid, role: Role, family: Option<Uuid>, as_of: AsOf) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            role,
            iat: now,
            exp: now + self.0.ttl.as_secs() as i64,
            jti: as_of.stamped_id(),
            iss: ISSUER.to_string(),
            fam: family,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)
            .map_err(|e| anyhow::anyhow!("cannot sign a token: {e}"))
    }

    /// The claims of `token` if this server signed it (HS256 only), it is
    /// current (`exp`, and `nbf` when present) and it was not issued in the
    /// future: a token no clock here could have made is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)?.claims;
        if claims.iat > jsonwebtoken::get_current_timestamp() as i64 + LEEWAY_SECS as i64 {
            return Err(jsonwebtoken::errors::ErrorKind::ImmatureSignature.into());
        }
        Ok(claims)
    }
}

/// Why a token `jsonwebtoken` refused is refused, as a client reads it
/// (the host's own tokens and the provider's alike).
pub(super) fn refusal(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the access token has expired",
        ErrorKind::ImmatureSignature => "the access token is not valid yet",
        ErrorKind::InvalidSignature => "the access token's signature is not valid",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the access token is not signed with an algorithm this server accepts"
        }
        ErrorKind::InvalidIssuer => "the access token's issuer is not trusted",
        ErrorKind::InvalidAudience => "the access token is not meant for this server",
        _ => "the access token is malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> TokenKeys {
        TokenKeys::new(secret.as_bytes(), Duration::from_secs(60))
    }

    #[test]
    fn issued_tokens_verify() {
        let keys = keys("a secret of at least thirty-two bytes");
        let (user, family) = (Uuid::now_v7(), Uuid::now_v7());
        let as_of = AsOf(Utc::now() - chrono::Duration::seconds(3));
        let claims = keys.verify(&keys.issue(user, Role::Viewer, Some(family), as_of).unwrap()).unwrap();
        assert_eq!((claims.sub, claims.role, claims.fam), (user, Role::Viewer, Some(family)));
        assert_eq!(claims.exp - claims.iat, 60);
        let (secs, _) = claims.jti.get_timestamp().unwrap().to_unix();
        assert_eq!(secs as i64, as_of.0.timestamp(), "dated when its account was read");
    }

    #[test]
    fn another_key_is_refused() {
        let token = keys("a secret of at least thirty-two bytes")
            .issue(Uuid::now_v7(), Role::Admin, None, AsOf::now())
            .unwrap();
        assert!(keys("another secret of thirty-two bytes!!").verify(&token).is_err());
    }
}
