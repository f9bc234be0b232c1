//! `/admin/plugins`: what is loaded and where, uploads, reloads and
//! rollbacks — each reaching every replica. Admins only.

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{Path, Query};
use super::openapi::params::ProblemDetails;
use crate::auth::Admin;
use crate::plugins::{
    BundleFiles, PluginIdentity, PluginStatus, ReloadReport, ReplicaVersion, UnknownPlugin, UploadError,
};
use crate::problem::Problem;

impl From<UnknownPlugin> for Problem {
    fn from(error: UnknownPlugin) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(error.to_string())
    }
}

/// One plugin in service here, and the version every live process serves.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginOverview {
    #[serde(flatten)]
    status: PluginStatus,
    /// Every live process (this one too) and the version of this plugin it
    /// serves; a process that does not serve it is not listed.
    replicas: Vec<ReplicaVersion>,
}

/// Every plugin in service, the storage plugin first, with the statistics
/// of the version serving here and the version each replica serves.
#[utoipa::path(get, path = "/admin/plugins", tag = "admin", operation_id = "list_plugins", security(("bearer" = [])),
    responses(
        (status = 200, description = "The plugins in service", body = Vec<PluginOverview>),
        (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn list(State(state): State<AppState>, _: Admin) -> Result<axum::Json<Vec<PluginOverview>>, Problem> {
    let replicas = state.delivery.replicas().await.unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read what the other replicas serve");
        Vec::new()
    });
    let overviews = state
        .delivery
        .statuses()
        .into_iter()
        .map(|status| {
            let name = &status.identity.name;
            let replicas = replicas.iter().filter(|(plugin, _)| plugin == name).map(|(_, replica)| replica.clone());
            PluginOverview { replicas: replicas.collect(), status }
        })
        .collect();
    Ok(axum::Json(overviews))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReloadParams {
    /// Reload only this plugin (default: every plugin in service).
    name: Option<String>,
}

/// Reads the plugin directory again and swaps in what changed, here and on
/// every other replica (each from its own directory). Calls already running
/// finish on the version they started on; a plugin that fails to load keeps
/// its serving version, and `failed` says why.
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
    _: Admin,
    Query(params): Query<ReloadParams>,
) -> Result<axum::Json<ReloadReport>, Problem> {
    Ok(axum::Json(state.delivery.reload(params.name.as_deref()).await?))
}

/// Serves the version this plugin had before its last reload again, on
/// every replica.
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
    _: Admin,
    Path(name): Path<String>,
) -> Result<axum::Json<PluginIdentity>, Problem> {
    let restored = state.delivery.rollback(&name).await?.ok_or_else(|| {
        Problem::new(StatusCode::CONFLICT, "no-previous-version", "No previous version")
            .detail(format!("no earlier version of `{name}` is kept (it has not been reloaded since the start)"))
    })?;
    Ok(axum::Json(restored))
}

/// A plugin bundle, as `PUT /admin/plugins/{name}` takes it
/// (`multipart/form-data`). Only its schema is used: `read_bundle` reads
/// the parts as they stream.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct BundleForm {
    /// The manifest (`NAME.toml`).
    #[schema(value_type = String, format = Binary)]
    manifest: Vec<u8>,
    /// The component (`NAME.wasm`).
    #[schema(value_type = String, format = Binary)]
    module: Vec<u8>,
    /// Hex SHA-256 of `module`: the upload is refused unless it matches.
    sha256: String,
    /// Each migration (`NNNN_description.sql`, named by the part's file
    /// name); repeat the part for several.
    #[schema(value_type = Vec<String>, format = Binary)]
    migration: Vec<Vec<u8>>,
}

/// Uploads a plugin's bundle. It is loaded here first (compiled, linked,
/// its migrations applied) and refused unless it loads and serves here;
/// then it is deployed (stored in PostgreSQL), and every replica of every
/// role installs it into its plugin directory and serves it. A plugin not
/// in service is installed for when a setting names it.
#[utoipa::path(put, path = "/admin/plugins/{name}", tag = "admin", operation_id = "upload_plugin", security(("bearer" = [])),
    params(("name" = String, Path, description = "The plugin's name (lower-case letters, digits, `-`, `_`)")),
    request_body(content = BundleForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Deployed: what was loaded here", body = ReloadReport),
        (status = 400, description = "Not a bundle: a part is missing, unknown or unreadable", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Larger than PLUGIN_UPLOAD_MAX_BYTES", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Another version of the plugin was deployed meanwhile; this one was undone", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 422, description = "The module does not match `sha256`, or the plugin does not load or serve here; it was not deployed", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The bundle could not be stored, installed or deployed; it was undone", body = ProblemDetails, content_type = "application/problem+json"),
    ),
)]
pub async fn upload(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<axum::Json<ReloadReport>, Problem> {
    let files = read_bundle(name, multipart.map_err(|rejection| invalid_bundle(rejection.body_text()))?).await?;
    // Carried to its end even if the client goes away: an upload half done
    // would be undone only by the next one.
    let delivery = state.delivery.clone();
    let upload = tokio::spawn(async move { delivery.upload(files, admin.user_id).await });
    let report = upload.await.map_err(|_| Problem::internal())?.map_err(|error| match error {
        UploadError::Invalid(error) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "plugin-rejected", "Plugin rejected")
                .detail(format!("{error:#}"))
        }
        UploadError::Conflict(_) => {
            Problem::new(StatusCode::CONFLICT, "deployment-conflict", "Deployment conflict").detail(error.to_string())
        }
        UploadError::Unavailable(error) => {
            tracing::error!(error = %format!("{error:#}"), "cannot store, install or deploy an uploaded plugin");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "bundle-store-unavailable", "Bundle store unavailable")
                .detail("the bundle could not be stored, installed or deployed; it was undone")
                .header(axum::http::header::RETRY_AFTER, 5)
        }
    })?;
    Ok(axum::Json(report))
}

fn invalid_bundle(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid-bundle", "Invalid plugin bundle").detail(detail)
}

/// The parts of a `BundleForm`, checked against each other.
async fn read_bundle(name: String, mut multipart: Multipart) -> Result<BundleFiles, Problem> {
    let unreadable = |error: axum::extract::multipart::MultipartError| {
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "Request body too large")
                .detail("the bundle is larger than this server accepts (PLUGIN_UPLOAD_MAX_BYTES)")
        } else {
            invalid_bundle(error.body_text())
        }
    };
    let text = |part: &str, bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| invalid_bundle(format!("the part `{part}` is not UTF-8 text")))
    };
    let (mut manifest, mut module, mut sha256, mut migrations) = (None, None, None, Vec::new());
    while let Some(field) = multipart.next_field().await.map_err(unreadable)? {
        let part = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field.bytes().await.map_err(unreadable)?.to_vec();
        match part.as_str() {
            "manifest" => manifest = Some(text(&part, bytes)?),
            "module" => module = Some(bytes),
            "sha256" => sha256 = Some(text(&part, bytes)?.trim().to_ascii_lowercase()),
            "migration" => {
                let file_name = file_name.ok_or_else(|| invalid_bundle("a `migration` part has no file name"))?;
                migrations.push((file_name, text(&part, bytes)?));
            }
            other => {
                return Err(invalid_bundle(format!("unknown part `{other}` (manifest, module, sha256, migration)")));
            }
        }
    }
    let missing = |part: &str| invalid_bundle(format!("the part `{part}` is missing"));
    let (manifest, module, sha256) = (
        manifest.ok_or_else(|| missing("manifest"))?,
        module.ok_or_else(|| missing("module"))?,
        sha256.ok_or_else(|| missing("sha256"))?,
    );
    let actual = hex::encode(Sha256::digest(&module));
    if actual != sha256 {
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "digest-mismatch", "Digest mismatch")
            .detail(format!("the module has SHA-256 {actual}, not {sha256}: it was damaged or is not the one meant")));
    }
    migrations.sort();
    let files = BundleFiles { name, manifest, module, migrations };
    files.check_names().map_err(|error| invalid_bundle(error.to_string()))?;
    Ok(files)
}
