//! `/health/*`: liveness (the process answers) and readiness (it can serve:
//! PostgreSQL answers and the storage plugin is loaded).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::json;

use super::AppState;

pub async fn live() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

#[derive(Serialize)]
pub struct Readiness {
    status: &'static str,
    checks: Checks,
}

#[derive(Serialize)]
pub struct Checks {
    postgres: &'static str,
    storage_plugin: String,
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, axum::Json<Readiness>) {
    let postgres = tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(&state.pool))
        .await
        .is_ok_and(|result| result.is_ok());
    let plugin = state.plugins.storage();
    let status = if postgres { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Readiness {
        status: if postgres { "ready" } else { "unavailable" },
        checks: Checks {
            postgres: if postgres { "up" } else { "down" },
            storage_plugin: format!("{}@{}", plugin.identity().name, plugin.identity().version),
        },
    };
    (status, axum::Json(body))
}
