//! `GET /api/v1/openapi.json`, generated from the handlers' annotations and
//! the types they use, so the document cannot drift from the code: its
//! paths are those of the router ([`super::documented`]), each operation
//! with a unique `operationId`, and the answers every operation can give
//! for the same reasons (a refused key, a body or query that does not
//! parse, an unknown id) are added to each here, in one place.

use std::sync::OnceLock;

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components.get_or_insert_with(Default::default).add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("perly_…")
                    .description(Some(
                        "An API key. Scope `full` (the default) opens every endpoint; scope `ingest` opens \
                         only `POST /api/v1/customers` and `POST /api/v1/events`, and anything else answers \
                         403 `insufficient_scope`. A revoked or expired key answers 401.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The tag of the two operations an `ingest` key may call.
pub const INGEST_TAG: &str = "ingest";

/// The answers an operation gives for reasons common to many: added to
/// every operation they apply to, unless its own annotation describes them.
struct CommonAnswers;

fn error_answer(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
            )
            .build(),
    )
}

fn add_answers(op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let ingest = op.tags.as_ref().is_some_and(|t| t.iter().any(|t| t == INGEST_TAG));
    let params = op.parameters.as_deref().unwrap_or_default();
    let in_path = params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let in_query = params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Query));
    let body = op.request_body.is_some();
    let mut answers: Vec<(&str, &str)> = Vec::new();
    if secured {
        answers.push(("401", "Missing, unknown, revoked or expired API key (`unauthorized`)"));
        if !ingest {
            answers.push(("403", "The API key's scope is `ingest` (`insufficient_scope`)"));
        }
    }
    if body {
        answers.push((
            "400",
            "The body is not valid JSON (`malformed_json`) or could not be read (`unreadable_body`)",
        ));
        answers.push(("413", "The body is over 5 MB (`body_too_large`)"));
        answers.push((
            "422",
            "The body does not have the expected shape (`invalid_body`, naming the field), or a value is refused \
             (naming the field)",
        ));
    }
    if in_query {
        answers.push((
            "400",
            "A query parameter does not parse (`invalid_query`, naming the parameter)",
        ));
        if params.iter().any(|p| p.name == "limit") {
            answers.push(("422", "`limit` is outside its range (`invalid_field`, field `limit`)"));
        }
    }
    if in_path {
        answers.push(("404", "No such resource in the workspace (`not_found`)"));
    }
    for (status, description) in answers {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_answer(description));
    }
}

impl Modify for CommonAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_answers(op);
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Perly API",
        description = "Customer health scores, churn risk and alerts. Authenticate with `Authorization: Bearer <api key>`; a key of scope `ingest` may only POST customers and events (403 `insufficient_scope` elsewhere). Errors are always `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    components(schemas(crate::error::ErrorBody))
)]
pub struct ApiDoc;

/// The whole document: [`ApiDoc`]'s header with every route of
/// [`super::documented`] and the common answers. Built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.merge(super::documented().into_openapi());
        ApiKeyAuth.modify(&mut doc);
        CommonAnswers.modify(&mut doc);
        doc
    })
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", operation_id = "getOpenApiDocument",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub async fn openapi_json() -> axum::Json<&'static utoipa::openapi::OpenApi> {
    axum::Json(document())
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn operations() -> Vec<(String, &'static str, &'static Operation)> {
        let mut out = Vec::new();
        for (path, item) in &document().paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("put", &item.put),
                ("post", &item.post),
                ("delete", &item.delete),
                ("patch", &item.patch),
                ("head", &item.head),
                ("options", &item.options),
                ("trace", &item.trace),
            ] {
                if let Some(op) = op {
                    out.push((path.clone(), method, op));
                }
            }
        }
        out
    }

    #[test]
    fn every_operation_has_its_own_operation_id() {
        let mut seen: BTreeMap<&str, String> = BTreeMap::new();
        for (path, method, op) in operations() {
            let id = op
                .operation_id
                .as_deref()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            if let Some(other) = seen.insert(id, format!("{method} {path}")) {
                panic!("operationId `{id}` names both {other} and {method} {path}");
            }
        }
        assert!(seen.len() >= 30, "{seen:?}");
    }

    #[test]
    fn every_secured_operation_documents_401_and_every_error_answer_has_the_error_shape() {
        for (path, method, op) in operations() {
            let responses = &op.responses.responses;
            if op.security.is_some() {
                assert!(responses.contains_key("401"), "{method} {path}");
            }
            if op.request_body.is_some() {
                for status in ["400", "413", "422"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
            }
            let doc = serde_json::to_value(responses).expect("json");
            for (status, answer) in doc.as_object().into_iter().flatten() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        answer["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                        "{method} {path} {status}: {answer}"
                    );
                }
            }
        }
    }

    /// Every `/api` route is added by a `routes!` of [`super::super::documented`],
    /// which takes its path and methods from the handler's annotation: none
    /// is added by hand, where the document would not see it.
    #[test]
    fn no_api_route_is_added_by_hand() {
        fn visit(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("read src").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    visit(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let code: String = std::fs::read_to_string(&path)
                        .expect("read source")
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect();
                    for call in [
                        ".route(\"/api",
                        ".nest(\"/api",
                        ".route_service(\"/api",
                        ".nest_service(\"/api",
                    ] {
                        if code.contains(call) {
                            found.push(format!("{}: {call}", path.display()));
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        visit(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(found.is_empty(), "routes added outside `routes!`: {found:?}");
    }
}
