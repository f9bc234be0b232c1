//! Access tokens from an external OpenID Connect provider (`OIDC_ISSUER`,
//! e.g. a Keycloak realm), accepted beside the host's own.
//!
//! Invariants:
//! - Only the asymmetric algorithms of `OIDC_ALGORITHMS` are accepted,
//!   whatever a token's header asks: never `none`, never HS*, so a public
//!   key can never serve as an HMAC secret.
//! - A key is trusted only as the provider's JWKS publishes it, for the
//!   algorithm it names; an unknown `kid` fetches the set again, at most
//!   once per `OIDC_JWKS_REFRESH_SECS`, so made-up kids cannot make the
//!   host hammer the provider.
//! - The issuer, the audience, `exp` and `nbf` are checked, with the
//!   leeway of the host's own tokens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::Role;
use super::tokens::LEEWAY_SECS;
use crate::config::OidcConfig;

/// The caller an external token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// `sub`: the provider's id of the user, stable.
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: Role,
}

/// A token's claims as far as the host reads them.
#[derive(Deserialize)]
struct ExternalClaims {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(flatten)]
    rest: HashMap<String, Value>,
}

pub struct OidcProvider {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    /// `OIDC_ROLE_CLAIM` as a path: `realm_access.roles` → ["realm_access", "roles"].
    role_claim: Vec<String>,
    /// Provider role → host role, first match wins.
    role_map: Vec<(String, Role)>,
    jwks_url: Option<String>,
    /// How soon an unknown `kid` may fetch the key set again.
    refresh_interval: Duration,
    http: reqwest::Client,
    keys: tokio::sync::RwLock<HashMap<String, Jwk>>,
    /// When the set was last fetched; one fetch at a time.
    fetched: tokio::sync::Mutex<Option<Instant>>,
}

impl OidcProvider {
    /// `None` when no provider is configured.
    pub fn new(config: &OidcConfig) -> anyhow::Result<Option<Self>> {
        let Some(issuer) = config.oidc_issuer.clone() else { return Ok(None) };
        anyhow::ensure!(!config.oidc_audience.is_empty(), "OIDC_ISSUER is set: set OIDC_AUDIENCE too");
        let algorithms = config
            .oidc_algorithms
            .iter()
            .map(|name| match name.trim() {
                "RS256" => Ok(Algorithm::RS256),
                "RS384" => Ok(Algorithm::RS384),
                "RS512" => Ok(Algorithm::RS512),
                "PS256" => Ok(Algorithm::PS256),
                "ES256" => Ok(Algorithm::ES256),
                "ES384" => Ok(Algorithm::ES384),
                "EdDSA" => Ok(Algorithm::EdDSA),
                other => anyhow::bail!("OIDC_ALGORITHMS: `{other}` is not an asymmetric algorithm this server accepts"),
            })
            .collect::<anyhow::Result<_>>()?;
        let role_map = config
            .oidc_role_map
            .iter()
            .map(|pair| {
                let (external, role) =
                    pair.split_once('=').context("OIDC_ROLE_MAP entries are `provider-role=role`")?;
                let role = Role::parse(role.trim())
                    .with_context(|| format!("OIDC_ROLE_MAP: `{role}` is not admin, user or viewer"))?;
                Ok((external.trim().to_string(), role))
            })
            .collect::<anyhow::Result<_>>()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client of the OIDC provider")?;
        Ok(Some(Self {
            issuer,
            audiences: config.oidc_audience.clone(),
            algorithms,
            role_claim: config.oidc_role_claim.split('.').map(str::to_string).collect(),
            role_map,
            jwks_url: config.oidc_jwks_url.clone(),
            refresh_interval: Duration::from_secs(config.oidc_jwks_refresh_secs),
            http,
            keys: tokio::sync::RwLock::default(),
            fetched: tokio::sync::Mutex::new(None),
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The caller `token` names, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<ExternalIdentity, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "the access token is malformed")?;
        if !self.algorithms.contains(&header.alg) {
            return Err("the access token is not signed with an algorithm this server accepts from its provider");
        }
        let kid = header.kid.ok_or("the access token names no key (`kid`)")?;
        let key = self.key(&kid, header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<ExternalClaims>(token, &key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the access token has expired",
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => "the access token is not valid yet",
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "the access token's signature is not valid",
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => "the access token's issuer is not trusted",
                jsonwebtoken::errors::ErrorKind::InvalidAudience => "the access token is not meant for this server",
                _ => "the access token is malformed",
            })?
            .claims;
        let role = self.role(&claims.rest);
        let name = claims.name.or(claims.preferred_username);
        Ok(ExternalIdentity { subject: claims.sub, email: claims.email, name, role })
    }

    /// The host role of the provider roles the claim path lists: the first
    /// entry of the map the token holds, else `user`.
    fn role(&self, claims: &HashMap<String, Value>) -> Role {
        let Some((first, rest)) = self.role_claim.split_first() else { return Role::User };
        let found = rest.iter().try_fold(claims.get(first), |value, step| Some(value?.get(step))).flatten();
        let held: Vec<&str> = match found {
            Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(value)) => value.split_whitespace().collect(),
            _ => Vec::new(),
        };
        self.role_map
            .iter()
            .find(|(external, _)| held.contains(&external.as_str()))
            .map_or(Role::User, |(_, role)| *role)
    }

    /// The decoding key `kid` of the provider's set, for `algorithm`.
    async fn key(&self, kid: &str, algorithm: Algorithm) -> Result<DecodingKey, &'static str> {
        if self.keys.read().await.get(kid).is_none() {
            self.refresh().await;
        }
        let keys = self.keys.read().await;
        let jwk = keys.get(kid).ok_or("the access token is signed with a key its provider does not publish")?;
        if jwk.common.key_algorithm.is_some_and(|named| named.to_string() != format!("{algorithm:?}")) {
            return Err("the access token's algorithm is not its key's");
        }
        DecodingKey::from_jwk(jwk).map_err(|_| "the provider's key cannot verify this token")
    }

    /// Fetches the key set again, unless it was fetched within the refresh
    /// interval; a failure keeps the keys known.
    async fn refresh(&self) {
        let mut fetched = self.fetched.lock().await;
        if fetched.is_some_and(|at| at.elapsed() < self.refresh_interval) {
            return;
        }
        *fetched = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                let keys = set.keys.into_iter().filter_map(|jwk| Some((jwk.common.key_id.clone()?, jwk))).collect();
                *self.keys.write().await = keys;
                tracing::info!(issuer = %self.issuer, "fetched the OIDC provider's keys");
            }
            Err(error) => {
                tracing::warn!(issuer = %self.issuer, error = %format!("{error:#}"), "cannot fetch the OIDC provider's keys")
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        let url = match &self.jwks_url {
            Some(url) => url.clone(),
            None => self.discover().await?,
        };
        Ok(self.http.get(&url).send().await?.error_for_status()?.json().await?)
    }

    /// The `jwks_uri` of the issuer's discovery document.
    async fn discover(&self) -> anyhow::Result<String> {
        #[derive(Deserialize)]
        struct Discovery {
            jwks_uri: String,
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let discovery: Discovery = self.http.get(&url).send().await?.error_for_status()?.json().await?;
        Ok(discovery.jwks_uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(role_claim: &str, role_map: &[&str]) -> OidcProvider {
        let config = OidcConfig {
            oidc_issuer: Some("https://id.example.com/realms/todo".into()),
            oidc_audience: vec!["todo-host".into()],
            oidc_jwks_url: None,
            oidc_jwks_refresh_secs: 30,
            oidc_algorithms: vec!["RS256".into(), "ES256".into()],
            oidc_role_claim: role_claim.into(),
            oidc_role_map: role_map.iter().map(|entry| entry.to_string()).collect(),
        };
        OidcProvider::new(&config).unwrap().unwrap()
    }

    #[test]
    fn the_role_comes_from_the_claim_path_first_match_first() {
        let provider = provider("realm_access.roles", &["todo-admin=admin", "todo-viewer=viewer"]);
        let claims = |json: Value| serde_json::from_value::<HashMap<String, Value>>(json).unwrap();
        let keycloak =
            claims(serde_json::json!({ "realm_access": { "roles": ["offline", "todo-viewer", "todo-admin"] } }));
        assert_eq!(provider.role(&keycloak), Role::Admin);
        assert_eq!(
            provider.role(&claims(serde_json::json!({ "realm_access": { "roles": ["todo-viewer"] } }))),
            Role::Viewer
        );
        assert_eq!(provider.role(&claims(serde_json::json!({ "realm_access": {} }))), Role::User);
        let flat = provider_with_scope();
        assert_eq!(flat.role(&claims(serde_json::json!({ "scope": "openid todo-admin" }))), Role::Admin);
    }

    fn provider_with_scope() -> OidcProvider {
        provider("scope", &["todo-admin=admin"])
    }

    #[test]
    fn symmetric_or_unknown_algorithms_cannot_be_configured() {
        let mut config = OidcConfig {
            oidc_issuer: Some("https://id.example.com".into()),
            oidc_audience: vec!["todo-host".into()],
            oidc_jwks_url: None,
            oidc_jwks_refresh_secs: 30,
            oidc_algorithms: vec!["HS256".into()],
            oidc_role_claim: "roles".into(),
            oidc_role_map: Vec::new(),
        };
        assert!(OidcProvider::new(&config).is_err());
        config.oidc_algorithms = vec!["none".into()];
        assert!(OidcProvider::new(&config).is_err());
        config.oidc_algorithms = vec!["RS256".into()];
        config.oidc_audience = Vec::new();
        assert!(OidcProvider::new(&config).is_err(), "an audience is required");
    }
}
