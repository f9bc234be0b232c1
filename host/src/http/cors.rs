//! CORS for browser clients, from `CORS_ALLOWED_*`. Without allowed
//! origins no CORS headers are sent (browsers then refuse cross-origin
//! calls, the safe default).

use anyhow::Context;
use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::CorsConfig;

/// Response headers a browser script may read.
const EXPOSED: [&str; 12] = [
    "etag",
    "location",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
    "x-request-id",
    "cache-status",
    "idempotent-replayed",
    "preference-applied",
    "content-type",
];

pub fn layer(config: &CorsConfig) -> anyhow::Result<Option<CorsLayer>> {
    let origins: Vec<&str> =
        config.cors_allowed_origins.iter().map(|origin| origin.trim()).filter(|o| !o.is_empty()).collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow_origin = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .map(|origin| {
                    HeaderValue::from_str(origin).with_context(|| format!("CORS origin `{origin}` is invalid"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
    };
    let methods = config
        .cors_allowed_methods
        .iter()
        .map(|method| Method::from_bytes(method.trim().as_bytes()).with_context(|| format!("CORS method `{method}`")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let headers = config
        .cors_allowed_headers
        .iter()
        .map(|name| HeaderName::from_bytes(name.trim().as_bytes()).with_context(|| format!("CORS header `{name}`")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers(EXPOSED.map(HeaderName::from_static))
            .max_age(std::time::Duration::from_secs(600)),
    ))
}
