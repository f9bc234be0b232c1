//! `/admin/plugins`: what is loaded, reloads and rollbacks. Admins only.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::extract::{Path, Query};
use super::openapi::params::ProblemDetails;
use crate::auth::{Authenticated, Role};
use crate::plugins::{PluginIdentity, PluginStatus, ReloadReport, UnknownPlugin};
use crate::problem::Problem;

fn require_admin(Authenticated(actor): Authenticated) -> Result<(), Problem> {
    if actor.role == Role::Admin {
        Ok(())
    } else {
        Err(Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail("plugin administration is for admins"))
    }
}

impl From<UnknownPlugin> for Problem {
    fn from(error: UnknownPlugin) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(error.to_string())
    }
}

/// Every plugin in service, the storage plugin first, with the statistics
/// of its serving version.
#[utoipa::path(get, path = "/admin/plugins", tag = "admin", operation_id = "list_plugins", security(("bearer" = [])),
    responses(
        (status = 200, description = "The plugins in service", body = Vec<PluginStatus>),
        (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<axum::Json<Vec<PluginStatus>>, Problem> {
    require_admin(caller)?;
    Ok(axum::Json(state.plugins.statuses()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReloadParams {
    /// Reload only this plugin (default: every plugin in service).
    name: Option<String>,
}

/// Reads the plugin directory again and swaps in what changed. Calls
/// already running finish on the version they started on; a plugin that
/// fails to load keeps its serving version, and `failed` says why.
#[utoipa::path(post, path = "/admin/plugins/reload", tag = "admin", operation_id = "reload_plugins", security(("bearer" = [])),
    params(ReloadParams),
    responses(
        (status = 200, description = "What was loaded, what was unchanged, what failed", body = ReloadReport),
        (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No plugin of this name is in service", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn reload(
    State(state): State<AppState>,
    caller: Authenticated,
    Query(params): Query<ReloadParams>,
) -> Result<axum::Json<ReloadReport>, Problem> {
    require_admin(caller)?;
    let report = state.plugins.reload(params.name.as_deref()).await?;
    if let Some(broadcast) = &state.plugin_broadcast {
        broadcast.reloaded(params.name.as_deref()).await;
    }
    let storage = state.plugins.storage().identity().name.clone();
    if report.loaded.iter().any(|loaded| loaded.name == storage) {
        state.tasks.storage_changed().await;
    }
    Ok(axum::Json(report))
}

/// Serves the version this plugin had before its last reload again.
#[utoipa::path(post, path = "/admin/plugins/{name}/rollback", tag = "admin", operation_id = "rollback_plugin", security(("bearer" = [])),
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, description = "The version now serving", body = PluginIdentity),
        (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No plugin of this name is in service", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "No earlier version is kept", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn rollback(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(name): Path<String>,
) -> Result<axum::Json<PluginIdentity>, Problem> {
    require_admin(caller)?;
    let restored = state.plugins.rollback(&name)?.ok_or_else(|| {
        Problem::new(StatusCode::CONFLICT, "no-previous-version", "No previous version")
            .detail(format!("no earlier version of `{name}` is kept (it has not been reloaded since the start)"))
    })?;
    if let Some(broadcast) = &state.plugin_broadcast {
        broadcast.rolled_back(&name).await;
    }
    if state.plugins.storage().identity().name == name {
        state.tasks.storage_changed().await;
    }
    Ok(axum::Json(restored))
}
