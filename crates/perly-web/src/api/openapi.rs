//! `GET /api/v1/openapi.json`, generated from the handlers' annotations and
//! the types they use, so the document cannot drift from the code.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = doc.components.as_mut() {
            c.add_security_scheme(
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
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Perly API", description = "Customer health scores, churn risk and alerts. Authenticate with `Authorization: Bearer <api key>`; a key of scope `ingest` may only POST customers and events (403 `insufficient_scope` elsewhere)."),
    paths(
        super::customers::create,
        super::customers::list,
        super::customers::show,
        super::events::create,
        super::alerts::list,
        super::imports::list,
        super::scorecard::show,
        super::scorecard::update,
        super::channels::list,
        super::channels::create,
        super::channels::show,
        super::channels::update,
        super::channels::delete,
        super::channels::test,
        super::channels::deliveries,
        super::channels::dry_run_rules,
        super::channels::dry_run_channel,
        super::customers::crm,
        super::salesforce::show,
        super::salesforce::disconnect,
        super::salesforce::check_permissions,
        super::salesforce::fields,
        super::salesforce::update_settings,
        super::salesforce::sync_status,
        super::salesforce::sync_now,
        super::salesforce::ensure_fields,
        super::salesforce_rules::list,
        super::salesforce_rules::create,
        super::salesforce_rules::show,
        super::salesforce_rules::update,
        super::salesforce_rules::delete,
        super::salesforce_rules::actions,
    ),
    modifiers(&ApiKeyAuth)
)]
pub struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
