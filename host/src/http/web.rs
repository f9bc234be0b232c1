//! The browser app (`web/`, built into `WEB_DIR`): its `index.html` at `/`
//! and its hashed assets under `/assets/`. Every other path stays the API's
//! (the app routes after a `#`).
//!
//! Invariant: everything served from here carries `CONTENT_SECURITY_POLICY`
//! — the app has no inline script or style, and talks to this origin only.

use std::path::Path;

use axum::Router;
use axum::handler::HandlerWithoutStateExt;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use super::AppState;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; frame-ancestors 'none'";

/// The app's routes, or an error when `dir` holds no built app.
pub fn routes(dir: &Path) -> anyhow::Result<Router<AppState>> {
    let index = dir.join("index.html");
    anyhow::ensure!(
        index.is_file(),
        "WEB_DIR {} has no index.html: build the app (scripts/run-local does)",
        dir.display()
    );
    // The page is looked at again on every visit; the assets' names change
    // with their content, so they are kept for good.
    let page =
        Router::new().route_service("/", ServeFile::new(index)).layer(header_layer(header::CACHE_CONTROL, "no-cache"));
    let assets = Router::new()
        .nest_service("/assets", ServeDir::new(dir.join("assets")).fallback(super::not_found.into_service()))
        .layer(header_layer(header::CACHE_CONTROL, "public, max-age=31536000, immutable"));
    Ok(page
        .merge(assets)
        .layer(header_layer(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::REFERRER_POLICY, "no-referrer")))
}

fn header_layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}
