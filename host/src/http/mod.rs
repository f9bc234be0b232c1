//! The HTTP surface: routes, their middleware, and the mapping of errors to
//! problem+json.
//!
//! Layers, outermost first: request id → client address (behind trusted
//! proxies) → tracing → panic catcher → identify
//! (bearer token → identity) → request metrics (per matched route) → rate
//! limit (per route group: per process, then cluster-wide admission, which
//! also refuses revoked tokens) → require auth
//! (all but /auth/*, /health*, /metrics, /openapi.json and /docs) → idempotency keys (POST /tasks
//! and /tasks/batch) → handler. A worker process (`TODO_ROLE=worker`) serves
//! only /health* and /metrics, through the same layers.

mod admin;
mod auth;
mod commands;
pub mod cors;
mod dead_letters;
mod errors;
pub mod extract;
mod health;
mod history;
mod idempotency;
pub mod metrics;
mod openapi;
mod task_events;
mod tasks;
pub mod tls;
mod users;
mod web;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{HeaderName, Request, StatusCode};
use axum::routing::{get, post, put};
use axum::{Router, middleware};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::middleware::{identify, require_auth};
use crate::auth::{AccountManager, Accounts, ExternalTokens, LoginLockout, PasswordResets, Sessions, TokenVerifier};
use crate::background::Background;
use crate::client_addr::{ClientAddr, TrustedProxies, identify_client};
use crate::commands::{CommandBus, CommandStatus};
use crate::config::ProcessRole;
use crate::db::replica::ReadReplica;
use crate::events::handlers::DeadLetters;
use crate::events::live::LiveEvents;
use crate::idempotency::IdempotencyStore;
use crate::kafka::SharedProducer;
use crate::plugins::{PluginDelivery, PluginRegistry};
use crate::problem::Problem;
use crate::ratelimit::cluster::ClusterLimiter;
use crate::ratelimit::{self, Quota};
use crate::redis_client::RedisClient;
use crate::tasks::TaskService;

/// What every handler may use. Shared behind an `Arc`: axum clones the
/// state for every extractor and middleware of every request.
pub type AppState = Arc<Services>;

pub struct Services {
    /// What this process runs; a worker answers only health and metrics.
    pub role: ProcessRole,
    pub tasks: TaskService,
    pub login_lockout: LoginLockout,
    /// `None` without a broker: `Prefer: respond-async` is then ignored.
    pub commands: Option<CommandBus>,
    pub command_status: CommandStatus,
    /// `None` without `REDIS_URL`.
    pub redis: Option<RedisClient>,
    /// `None` without `REDIS_URL`: `Idempotency-Key` is then not enforced.
    pub idempotency: Option<IdempotencyStore>,
    pub accounts: Accounts,
    pub sessions: Sessions,
    /// Profiles, passwords and admins' changes of accounts.
    pub account_manager: AccountManager,
    pub password_resets: PasswordResets,
    /// What the event handlers gave up on, and its replay.
    pub dead_letters: DeadLetters,
    /// `None` without a broker, and in a worker.
    pub live_events: Option<LiveEvents>,
    /// `None` without OIDC_ISSUER.
    pub external_tokens: Option<Arc<ExternalTokens>>,
    pub plugins: Arc<PluginRegistry>,
    /// Uploads, reloads and rollbacks that reach every replica.
    pub delivery: Arc<PluginDelivery>,
    pub pool: PgPool,
    /// `None` without `DATABASE_READ_URL`.
    pub replica: Option<ReadReplica>,
    /// `None` without a broker; used to check it is reachable.
    pub kafka: Option<SharedProducer>,
    pub metrics: PrometheusHandle,
}

/// Quotas, limits and cross-origin rules the router applies.
pub struct HttpLimits {
    pub api_quota: Quota,
    pub auth_quota: Quota,
    pub max_body_bytes: usize,
    /// Of `PUT /admin/plugins/{name}`.
    pub plugin_upload_max_bytes: usize,
    /// `None`: no CORS headers.
    pub cors: Option<tower_http::cors::CorsLayer>,
    /// Whose forwarding header tells the client's address.
    pub trusted_proxies: TrustedProxies,
    /// Where the limiters' pruning runs.
    pub background: Background,
    /// The built browser app served at `/` (`WEB_DIR`), if any.
    pub web_dir: Option<std::path::PathBuf>,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState, limits: HttpLimits) -> anyhow::Result<Router> {
    let operations = Router::new()
        .route("/health", get(health::detail))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::render));
    let (auth_routes, api) = match state.role.serves_api() {
        true => {
            let (auth_routes, task_routes) = api_routes(&state, &limits);
            (auth_routes, task_routes.merge(operations).merge(openapi::routes()))
        }
        // A worker's listener is for probes and scrapes only.
        false => (Router::new(), operations),
    };
    let cluster_limiter = |policy, quota| ClusterLimiter::new(state.redis.clone(), policy, quota);
    let api = api
        .layer(middleware::from_fn_with_state(cluster_limiter("api", limits.api_quota), ratelimit::cluster::limit))
        .layer(ratelimit::layer("api", limits.api_quota, &limits.background));

    let web = match (&limits.web_dir, state.role.serves_api()) {
        (Some(dir), true) => web::routes(dir)?,
        _ => Router::new(),
    };
    Ok(Router::new()
        .merge(auth_routes)
        .merge(api)
        .merge(web)
        .route_layer(middleware::from_fn(metrics::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            TokenVerifier { sessions: state.sessions.clone(), external: state.external_tokens.clone() },
            identify,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(middleware::from_fn_with_state(Arc::new(limits.trusted_proxies), identify_client))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request<_>| {
                            let request_id = request
                                .headers()
                                .get(REQUEST_ID)
                                .and_then(|value| value.to_str().ok())
                                .unwrap_or_default();
                            let client = request.extensions().get::<ClientAddr>().map(|client| client.0.to_string());
                            tracing::info_span!(
                                "request",
                                method = %request.method(),
                                path = %request.uri().path(),
                                request_id,
                                client = client.as_deref().unwrap_or_default()
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(|_| {
                    tracing::error!("a handler panicked");
                    axum::response::IntoResponse::into_response(Problem::internal())
                })),
        )
        // Outermost: a preflight is answered before auth and rate limits.
        .layer(tower::util::option_layer(limits.cors))
        .with_state(state))
}

/// The API's own routes: /auth/* behind their own limits, and the routes
/// that need a token. Built only by a process that serves the API (the
/// limits spawn their upkeep).
fn api_routes(state: &AppState, limits: &HttpLimits) -> (Router<AppState>, Router<AppState>) {
    let cluster_limiter = |policy, quota| ClusterLimiter::new(state.redis.clone(), policy, quota);
    let auth_routes = Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout).route_layer(middleware::from_fn(require_auth)))
        .route("/auth/password-reset", post(auth::request_password_reset))
        .route("/auth/password-reset/confirm", post(auth::confirm_password_reset))
        // The cluster-wide limit runs inside the cheap per-process one.
        .layer(middleware::from_fn_with_state(cluster_limiter("auth", limits.auth_quota), ratelimit::cluster::limit))
        .layer(ratelimit::layer("auth", limits.auth_quota, &limits.background));

    let idempotent = middleware::from_fn_with_state(state.idempotency.clone(), idempotency::guard);
    let task_routes = Router::new()
        .route("/tasks", get(tasks::list).post(tasks::create.layer(idempotent.clone())))
        .route("/tasks/batch", post(tasks::batch.layer(idempotent)))
        .route("/tasks/events", get(task_events::stream))
        .route("/tasks/{id}", get(tasks::get).patch(tasks::update).delete(tasks::delete))
        .route("/tasks/{id}/history", get(history::get))
        .route("/commands/{id}", get(commands::get))
        .route("/admin/plugins", get(admin::list))
        .route("/admin/plugins/reload", post(admin::reload))
        .route("/admin/plugins/{name}", put(admin::upload.layer(DefaultBodyLimit::max(limits.plugin_upload_max_bytes))))
        .route("/admin/plugins/{name}/rollback", post(admin::rollback))
        .route("/admin/dead-letters", get(dead_letters::list))
        .route("/admin/dead-letters/replay", post(dead_letters::replay_all))
        .route("/admin/dead-letters/{id}/replay", post(dead_letters::replay))
        .route("/users/me", get(users::me).patch(users::update_me))
        .route("/users/me/password", post(users::change_password))
        .route("/users", get(users::list))
        .route("/users/{id}", get(users::get).patch(users::update).delete(users::delete))
        .route_layer(middleware::from_fn(require_auth));
    (auth_routes, task_routes)
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail("no route matches this path")
}

async fn method_not_allowed() -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed")
        .detail("this route does not answer this method")
}
