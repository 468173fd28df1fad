//! Liveness and readiness. `GET /healthz` answers as long as the process
//! serves HTTP (it touches nothing); `GET /readyz` also asks the database
//! one cheap question ([`perly_store::Ops::ping`]) within
//! [`READY_TIMEOUT`]: 200 `{"status":"ready"}`, or 503 naming what is wrong,
//! e.g. `{"status":"not_ready","problems":[{"check":"database","error":"did
//! not answer within 2 s"}]}`. The error says what failed, never the
//! driver's message (which can name hosts and users); that goes to the log.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use perly_store::Store;
use serde_json::json;

use crate::AppState;

/// How long the database has to answer a readiness check.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz` on the app.
pub async fn readyz(State(state): State<AppState>) -> Response {
    readiness(state.store.as_ref()).await
}

/// The readiness answer for `store` (the app's and the metrics listener's).
pub async fn readiness(store: &dyn Store) -> Response {
    match database_problem(store).await {
        None => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Some(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "problems": [{"check": "database", "error": error}],
            })),
        )
            .into_response(),
    }
}

/// What is wrong with the database, in words safe to show anyone.
async fn database_problem(store: &dyn Store) -> Option<String> {
    match tokio::time::timeout(READY_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database check failed");
            Some(e.summary().to_owned())
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = READY_TIMEOUT.as_millis() as u64,
                "readiness: the database did not answer in time"
            );
            Some(format!("did not answer within {} s", READY_TIMEOUT.as_secs()))
        }
    }
}
