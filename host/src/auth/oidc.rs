//! Access tokens from an external OpenID Connect provider (`OIDC_ISSUER`,
//! e.g. a Keycloak realm), accepted beside the host's own.
//!
//! Invariants:
//! - Only the asymmetric algorithms of `OIDC_ALGORITHMS` are accepted,
//!   whatever a token's header asks: never `none`, never HS*, so a public
//!   key can never serve as an HMAC secret.
//! - A key is trusted only as the provider's key set publishes it for
//!   signatures, for the algorithm it names. The set is fetched at start,
//!   again when it is older than `KEYS_MAX_AGE` (a key the provider
//!   withdrew stops verifying), and when a token names a key it lacks; at
//!   most once per `OIDC_JWKS_REFRESH_SECS`, so made-up kids cannot make
//!   the host hammer the provider.
//! - The provider is reached over HTTPS (plain HTTP only on loopback), and
//!   its discovery document must name the configured issuer.
//! - Only access tokens count: an ID or refresh token of the same provider
//!   is refused even when its audience matches.
//! - The issuer, the audience, `exp` and `nbf` are checked, with the
//!   leeway of the host's own tokens. An email counts only when the
//!   provider says it verified it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use super::Role;
use super::tokens::{LEEWAY_SECS, refusal};
use crate::config::OidcConfig;

/// How long a fetched key set is trusted before it is fetched again.
const KEYS_MAX_AGE: Duration = Duration::from_secs(600);

/// The caller an external token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// `sub`: the provider's id of the user, stable.
    pub subject: String,
    /// Only an address the provider verified.
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: Role,
}

/// Why an external token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The token is not good (a 401).
    Token(&'static str),
    /// Nothing can tell now: the provider's keys cannot be fetched (a 503).
    Unavailable(&'static str),
}

/// A token's claims as far as the host reads them.
#[derive(Deserialize)]
struct ExternalClaims {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    /// Keycloak's token type: `Bearer` for access tokens, `ID`, `Refresh`.
    #[serde(default)]
    typ: Option<String>,
    #[serde(flatten)]
    rest: HashMap<String, Value>,
}

/// A published key, ready to verify.
struct PublishedKey {
    algorithm: Option<KeyAlgorithm>,
    key: DecodingKey,
}

/// The provider's keys as last fetched.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, PublishedKey>,
    /// When the set was last fetched successfully.
    fetched_at: Option<Instant>,
    /// Whether the last attempt failed.
    unreachable: bool,
}

pub struct OidcProvider {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    /// `OIDC_ROLE_CLAIM` as a path: `realm_access.roles` → ["realm_access", "roles"].
    role_claim: Vec<String>,
    /// Provider role → host role, first match wins.
    role_map: Vec<(String, Role)>,
    jwks_url: Option<Url>,
    /// How soon the key set may be fetched again.
    refresh_interval: Duration,
    http: reqwest::Client,
    keys: tokio::sync::RwLock<KeySet>,
    /// When the set was last asked for; one fetch at a time.
    attempted: tokio::sync::Mutex<Option<Instant>>,
}

impl OidcProvider {
    /// `None` when no provider is configured.
    pub fn new(config: &OidcConfig) -> anyhow::Result<Option<Self>> {
        let Some(issuer) = config.oidc_issuer.clone() else { return Ok(None) };
        anyhow::ensure!(!config.oidc_audience.is_empty(), "OIDC_ISSUER is set: set OIDC_AUDIENCE too");
        secure_url(&issuer).context("OIDC_ISSUER")?;
        let jwks_url = config.oidc_jwks_url.as_deref().map(secure_url).transpose().context("OIDC_JWKS_URL")?;
        let algorithms = config.oidc_algorithms.iter().map(|name| algorithm(name.trim())).collect::<Result<_, _>>()?;
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
            jwks_url,
            refresh_interval: Duration::from_secs(config.oidc_jwks_refresh_secs),
            http,
            keys: tokio::sync::RwLock::default(),
            attempted: tokio::sync::Mutex::new(None),
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Fetches the key set ahead of the first token (at start).
    pub async fn prefetch(&self) {
        self.refresh().await;
    }

    /// The caller `token` names, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<ExternalIdentity, Refused> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Token("the access token is malformed"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(Refused::Token(
                "the access token is not signed with an algorithm this server accepts from its provider",
            ));
        }
        if header.typ.as_deref().is_some_and(|typ| !is_access_token_type(typ)) {
            return Err(Refused::Token("the token is not an access token"));
        }
        let kid = header.kid.ok_or(Refused::Token("the access token names no key (`kid`)"))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = self.with_key(&kid, header.alg, |key| {
            jsonwebtoken::decode::<ExternalClaims>(token, key, &validation).map_err(|error| refusal(&error))
        });
        let claims = claims.await?.claims;
        if claims.typ.as_deref().is_some_and(|typ| !typ.eq_ignore_ascii_case("bearer")) {
            return Err(Refused::Token("the token is not an access token"));
        }
        let role = self.role(&claims.rest);
        let email = claims.email.filter(|_| claims.email_verified == Some(true));
        let name = claims.name.or(claims.preferred_username);
        Ok(ExternalIdentity { subject: claims.sub, email, name, role })
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

    /// `verify` applied to the published key `kid`, which must serve
    /// `algorithm`; the set fetched first when it lacks the key or is old.
    async fn with_key<T>(
        &self,
        kid: &str,
        algorithm: Algorithm,
        verify: impl FnOnce(&DecodingKey) -> Result<T, &'static str>,
    ) -> Result<T, Refused> {
        let current = {
            let set = self.keys.read().await;
            set.keys.contains_key(kid) && set.fetched_at.is_some_and(|at| at.elapsed() < KEYS_MAX_AGE)
        };
        if !current {
            self.refresh().await;
        }
        let set = self.keys.read().await;
        let Some(published) = set.keys.get(kid) else {
            return Err(if set.unreachable {
                Refused::Unavailable("the identity provider's keys cannot be fetched now; retry")
            } else {
                Refused::Token("the access token is signed with a key its provider does not publish")
            });
        };
        if published.algorithm.is_some_and(|named| named.to_string() != format!("{algorithm:?}")) {
            return Err(Refused::Token("the access token's algorithm is not its key's"));
        }
        verify(&published.key).map_err(Refused::Token)
    }

    /// Fetches the key set again, unless it was asked for within the
    /// refresh interval; a failure keeps the keys known.
    async fn refresh(&self) {
        let mut attempted = self.attempted.lock().await;
        if attempted.is_some_and(|at| at.elapsed() < self.refresh_interval) {
            return;
        }
        *attempted = Some(Instant::now());
        let fetched = self.fetch().await;
        let mut set = self.keys.write().await;
        match fetched {
            Ok(keys) => {
                *set = KeySet { keys: published_keys(keys), fetched_at: Some(Instant::now()), unreachable: false };
                tracing::info!(issuer = %self.issuer, keys = set.keys.len(), "fetched the OIDC provider's keys");
            }
            Err(error) => {
                set.unreachable = true;
                tracing::warn!(issuer = %self.issuer, error = %format!("{error:#}"), "cannot fetch the OIDC provider's keys");
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        let url = match &self.jwks_url {
            Some(url) => url.clone(),
            None => self.discover().await?,
        };
        let response = self.http.get(url.clone()).send().await?.error_for_status()?;
        response.json().await.with_context(|| format!("{url} is not a JSON Web Key Set"))
    }

    /// The `jwks_uri` of the issuer's discovery document, which must name
    /// the configured issuer.
    async fn discover(&self) -> anyhow::Result<Url> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let discovery: Discovery = self.http.get(&url).send().await?.error_for_status()?.json().await?;
        anyhow::ensure!(
            discovery.issuer == self.issuer,
            "{url} names the issuer `{}`, not OIDC_ISSUER `{}` (which must match it exactly, trailing slash included)",
            discovery.issuer,
            self.issuer
        );
        secure_url(&discovery.jwks_uri).with_context(|| format!("the jwks_uri of {url}"))
    }
}

/// The signature keys of `set` that have a `kid`, by kid.
fn published_keys(set: JwkSet) -> HashMap<String, PublishedKey> {
    set.keys
        .into_iter()
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|jwk: Jwk| {
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some((jwk.common.key_id?, PublishedKey { algorithm: jwk.common.key_algorithm, key }))
        })
        .collect()
}

/// A JWT header `typ` an access token may carry (RFC 9068: `at+jwt`).
fn is_access_token_type(typ: &str) -> bool {
    ["JWT", "at+jwt", "application/at+jwt"].iter().any(|allowed| typ.eq_ignore_ascii_case(allowed))
}

/// `text` as a URL the provider may be reached at: HTTPS, or HTTP on a
/// loopback address (a provider on the same machine).
fn secure_url(text: &str) -> anyhow::Result<Url> {
    let url = Url::parse(text).with_context(|| format!("`{text}` is not a URL"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(
        url.scheme() == "https" || (url.scheme() == "http" && loopback),
        "`{text}` must be an https:// URL (plain http only on loopback)"
    );
    Ok(url)
}

/// An asymmetric algorithm by its JOSE name.
fn algorithm(name: &str) -> anyhow::Result<Algorithm> {
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => anyhow::bail!("OIDC_ALGORITHMS: `{other}` is not an asymmetric algorithm this server accepts"),
    })
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

    #[test]
    fn the_provider_is_reached_over_https_or_on_loopback_only() {
        for good in
            ["https://id.example.com/realms/todo", "http://127.0.0.1:8080/x", "http://[::1]/", "http://localhost"]
        {
            assert!(secure_url(good).is_ok(), "{good}");
        }
        for bad in ["http://id.example.com/realms/todo", "http://10.0.0.1/", "ftp://id.example.com", "not a url"] {
            assert!(secure_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_access_token_types_and_signature_keys_count() {
        assert!(["JWT", "jwt", "at+jwt", "application/at+JWT"].into_iter().all(is_access_token_type));
        assert!(!is_access_token_type("id_token+jwt") && !is_access_token_type("logout+jwt"));
        let key = |kid: &str, usage: Option<PublicKeyUse>| {
            let mut jwk: Jwk = serde_json::from_value(serde_json::json!({
                "kty": "EC", "crv": "P-256", "kid": kid,
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            }))
            .unwrap();
            jwk.common.public_key_use = usage;
            jwk
        };
        let set = JwkSet {
            keys: vec![
                key("sig", Some(PublicKeyUse::Signature)),
                key("any", None),
                key("enc", Some(PublicKeyUse::Encryption)),
            ],
        };
        let mut kids: Vec<String> = published_keys(set).into_keys().collect();
        kids.sort();
        assert_eq!(kids, ["any", "sig"]);
    }
}
