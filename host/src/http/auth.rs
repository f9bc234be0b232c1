//! `/auth`: registration and login.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use super::AppState;
use super::extract::Json;
use crate::auth::{Credentials, Registration, User};
use crate::problem::Problem;

pub async fn register(
    State(state): State<AppState>,
    Json(registration): Json<Registration>,
) -> Result<(StatusCode, axum::Json<User>), Problem> {
    let user = state.accounts.register(registration).await?;
    tracing::info!(user_id = %user.id, "account registered");
    Ok((StatusCode::CREATED, axum::Json(user)))
}

#[derive(Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

pub async fn login(
    State(state): State<AppState>,
    Json(credentials): Json<Credentials>,
) -> Result<impl IntoResponse, Problem> {
    let user = state.accounts.authenticate(credentials).await?;
    let access_token = state.keys.issue(user.id, user.role).map_err(|error| {
        tracing::error!(%error, "cannot sign an access token");
        Problem::internal()
    })?;
    let body = TokenResponse { access_token, token_type: "Bearer", expires_in: state.keys.ttl().as_secs() };
    // Tokens must not linger in shared caches.
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(body)))
}
