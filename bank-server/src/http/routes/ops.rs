//! Health probes, metrics, the OpenAPI document and the 404 fallback.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bank_api::Health;

use crate::http::AppState;
use crate::http::metrics::METRICS_CONTENT_TYPE;
use crate::http::problem::ApiError;

const OK: &str = "ok";

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "ops", responses((status = 200, description = "Alive", body = Health)))]
pub(crate) async fn live() -> Json<Health> {
    Json(Health { status: OK.to_owned(), checks: BTreeMap::new() })
}

/// Readiness: every backing service answers. A failing check shows its error code, never its
/// message (which may name hosts or SQL); the message is logged. A service the bank works without
/// (the Redis cache) shows `degraded: <code>` when down and does not fail readiness: taking every
/// API process out of service because the cache is down would turn a slower bank into none. The
/// same for the embedded backend's `disk` under its free-space floor (writes refused, reads go on).
#[utoipa::path(get, path = "/health/ready", tag = "ops", responses(
    (status = 200, description = "Ready", body = Health),
    (status = 503, description = "A backend is down", body = Health),
))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let mut checks = BTreeMap::new();
    let mut all_ok = true;
    let backend = state.backend();
    let required = backend.ready.check().await.into_iter().map(|(name, result)| (name, result, true));
    let mut optional = backend.ready.optional().await;
    if let Some(disk) = &backend.data_disk {
        // A nearly full disk refuses new writes but keeps the bank answering reads: degraded.
        let floor = || bank_core::Error::storage("the data directory's disk is under its free-space floor", true);
        optional.push(("disk", if disk.is_low() { Err(floor()) } else { Ok(()) }));
    }
    let optional = optional.into_iter().map(|(name, result)| (name, result, false));
    for (name, result, needed) in required.chain(optional) {
        let status = match result {
            Ok(()) => OK.to_owned(),
            Err(error) if needed => {
                tracing::warn!(check = name, %error, "readiness check failed");
                all_ok = false;
                error.code().to_owned()
            }
            Err(error) => {
                tracing::warn!(check = name, %error, "optional service down; going on without it");
                format!("degraded: {}", error.code())
            }
        };
        checks.insert(name.to_owned(), status);
    }
    let (code, status) = if all_ok { (StatusCode::OK, OK) } else { (StatusCode::SERVICE_UNAVAILABLE, "unavailable") };
    (code, Json(Health { status: status.to_owned(), checks })).into_response()
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Metrics", body = String, content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics().render(&state).await;
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub(crate) async fn openapi_json() -> Json<serde_json::Value> {
    Json(crate::http::openapi())
}

/// Unknown routes.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("route")
}
