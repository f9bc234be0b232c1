//! The OpenAPI 3.1 description of this API, generated from the handlers'
//! `#[utoipa::path]` attributes and the request/response types, served at
//! `/openapi.json` with Swagger UI at `/docs`.
//!
//! Handlers document what they answer themselves; the answers that come
//! from middleware — 401 from `require_auth`, 429 from the rate limiters,
//! 400/413/415/422 from the body and parameter extractors, 500 from the
//! panic catcher, 202/503 of a write queued by `Prefer: respond-async` —
//! are added to every operation they can reach by [`SharedResponses`],
//! so each is described once.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::AdditionalProperties;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, OpenApi as OpenApiDocument, Ref, RefOr, Schema, Type};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{admin, auth, commands, dead_letters, health, history, metrics, task_events, tasks, users};
use crate::problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "todo-host",
        description = "Tasks over REST. Every task operation runs in a WebAssembly storage plugin; \
                       errors are RFC 9457 problem details.",
    ),
    paths(
        auth::register,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::request_password_reset,
        auth::confirm_password_reset,
        users::me,
        users::update_me,
        users::change_password,
        users::list,
        users::get,
        users::update,
        users::delete,
        tasks::list,
        tasks::create,
        tasks::get,
        tasks::update,
        tasks::delete,
        tasks::batch,
        task_events::stream,
        history::get,
        commands::get,
        health::live,
        health::ready,
        health::detail,
        metrics::render,
        admin::list,
        admin::reload,
        admin::rollback,
        admin::upload,
        dead_letters::list,
        dead_letters::replay,
        dead_letters::replay_all,
    ),
    components(schemas(params::ProblemDetails, tasks::CommandAccepted)),
    modifiers(&SharedResponses),
    tags(
        (name = "auth", description = "Sign-up, tokens and password resets"),
        (name = "users", description = "Accounts: one's own, and every one for admins"),
        (name = "tasks", description = "Tasks, served by the storage plugin"),
        (name = "operations", description = "Health and metrics"),
        (name = "admin", description = "Plugins and dead letters (admins only)"),
    ),
)]
pub struct ApiDoc;

/// Swagger UI at `/docs`, reading the document at `/openapi.json`.
pub fn routes() -> SwaggerUi {
    SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi())
}

/// Types that only describe: the JSON of a [`crate::problem::Problem`] and
/// the parameters that middleware or helpers read from the raw request.
/// They are never built, hence `dead_code`.
#[allow(dead_code)]
pub mod params {
    use utoipa::{IntoParams, ToSchema};
    use uuid::Uuid;

    use crate::validation::FieldError;

    /// An RFC 9457 problem, as every error of this API answers it.
    #[derive(ToSchema)]
    #[schema(as = Problem)]
    pub struct ProblemDetails {
        /// `/problems/<slug>`: stable per kind of problem; switch on it.
        #[schema(rename = "type", example = "/problems/validation")]
        kind: String,
        /// Fixed per `type`.
        title: String,
        /// The HTTP status.
        status: u16,
        /// This occurrence, in words.
        detail: Option<String>,
        /// For a 422: each rule the request broke.
        errors: Option<Vec<FieldError>>,
    }

    /// The id of a task.
    #[derive(IntoParams)]
    #[into_params(parameter_in = Path)]
    pub struct TaskId {
        id: Uuid,
    }

    #[derive(IntoParams)]
    #[into_params(parameter_in = Header)]
    pub struct IdempotencyKey {
        /// The same key and body replay the first answer for 24 hours; 1–255
        /// visible ASCII characters, new for each request you mean once.
        #[param(rename = "Idempotency-Key", nullable = false, min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
        key: Option<String>,
    }

    #[derive(IntoParams)]
    #[into_params(parameter_in = Header)]
    pub struct PreferAsync {
        /// `respond-async`: queue the write as a command and answer 202.
        #[param(rename = "Prefer", nullable = false, example = "respond-async")]
        prefer: Option<String>,
    }

    #[derive(IntoParams)]
    #[into_params(parameter_in = Header)]
    pub struct IfMatch {
        /// The `ETag` the change is based on (e.g. `"3"`), or `*`: 412 when the
        /// task has moved on.
        #[param(rename = "If-Match", nullable = false, pattern = r#"^("[0-9]{1,18}"|[0-9]{1,18}|[*])$"#)]
        if_match: Option<String>,
    }

    #[derive(IntoParams)]
    #[into_params(parameter_in = Header)]
    pub struct IfNoneMatch {
        /// An `ETag` this client holds: 304 when it is still current.
        #[param(rename = "If-None-Match", nullable = false)]
        if_none_match: Option<String>,
    }
}

/// A response whose body is the `Problem` schema, served as problem+json.
fn problem_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content(problem::CONTENT_TYPE, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new().schema(ObjectBuilder::new().schema_type(Type::String)).description(Some(description)).build()
}

/// Adds the answers every operation of a kind shares: those of the middleware
/// guarding it and those of the async write path.
struct SharedResponses;

impl SharedResponses {
    fn extend(operation: &mut Operation) {
        let responses = &mut operation.responses.responses;
        let mut add = |status: &str, response: ResponseBuilder| {
            responses.entry(status.to_string()).or_insert(RefOr::T(response.build()));
        };
        let too_many = problem_response("Over the rate limit of this route group (per process, and across replicas)")
            .header("Retry-After", string_header("Seconds until a request will be accepted"))
            .header("RateLimit-Policy", string_header("The quota (IETF draft-ietf-httpapi-ratelimit-headers)"))
            .header("RateLimit", string_header("What is left of the quota"));
        add("429", too_many);
        add("500", problem_response("The server failed; the request changed nothing it did not report"));
        if operation.security.as_ref().is_some_and(|requirements| !requirements.is_empty()) {
            add("401", problem_response("Missing, expired, revoked or invalid bearer token"));
        }
        let has_parameters = operation.parameters.as_ref().is_some_and(|parameters| !parameters.is_empty());
        if operation.request_body.is_some() || has_parameters {
            add("400", problem_response("Malformed JSON, an invalid id or an invalid query parameter"));
        }
        let takes_prefer = operation.parameters.iter().flatten().any(|parameter| parameter.name == "Prefer");
        if takes_prefer {
            let queued = ResponseBuilder::new()
                .description("Queued (`Prefer: respond-async`); poll the command at `Location`")
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("CommandAccepted"))).build(),
                )
                .header("Location", string_header("/commands/{id}"));
            add("202", queued);
            add("503", problem_response("The command queue or the storage plugin is unavailable"));
        }
        if operation.request_body.is_some() {
            add("413", problem_response("The body is larger than MAX_BODY_BYTES"));
            add("415", problem_response("The body is not sent as application/json"));
            add("422", problem_response("The body breaks the schema or a rule; `errors` lists each"));
        }
    }
}

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut OpenApiDocument) {
        let components = openapi.components.get_or_insert_with(Default::default);
        // utoipa 5.5 emits `#[schema(min_properties = 1)]` as `maxProperties`.
        if let Some(RefOr::T(Schema::Object(changes))) = components.schemas.get_mut("TaskChanges") {
            changes.max_properties = None;
            changes.min_properties = Some(1);
        }
        // … and leaves `deny_unknown_fields` out of the variants of an
        // internally tagged enum: a batch operation with a member of
        // another operation is refused, and the document says so.
        if let Some(RefOr::T(Schema::OneOf(operations))) = components.schemas.get_mut("BatchOperation") {
            for operation in &mut operations.items {
                if let RefOr::T(Schema::Object(operation)) = operation {
                    operation.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
                }
            }
        }
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete, &mut item.head];
            for operation in operations.into_iter().flatten() {
                Self::extend(operation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_middleware_answers() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/auth/register",
            "/auth/login",
            "/auth/refresh",
            "/auth/logout",
            "/tasks",
            "/tasks/{id}",
            "/tasks/batch",
            "/tasks/{id}/history",
            "/commands/{id}",
            "/health",
            "/health/live",
            "/health/ready",
            "/metrics",
        ] {
            assert!(paths.contains_key(path), "{path} is not documented");
        }
        let create = &paths["/tasks"]["post"]["responses"];
        for status in ["201", "202", "400", "401", "413", "415", "422", "429", "500"] {
            assert!(create.get(status).is_some(), "POST /tasks does not document {status}");
        }
        assert!(paths["/health/live"]["get"]["responses"].get("401").is_none(), "health needs no token");
        let operations = document["components"]["schemas"]["BatchOperation"]["oneOf"].as_array().unwrap();
        assert!(operations.iter().all(|operation| operation["additionalProperties"] == false), "{operations:?}");
    }
}
