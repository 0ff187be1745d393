//! The HTTP port: health, readiness, metrics, the alert API and the integration-log API. One
//! error type maps every failure to a status and a JSON body; handlers never build error
//! responses themselves. `/healthz`, `/readyz` and `/metrics` need no token (see docs/api.md).

mod alerts;
mod error;
mod serve;
mod silences;
mod webhook;

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::Live;
use crate::metrics::Metrics;
use crate::store::{self, Store, WriterHandle};

pub use error::ApiError;
pub use serve::{Limits, RESERVED_FDS, open_file_limit, serve};

/// What every handler shares, behind one `Arc`: axum clones the state for each request, and
/// one reference count is cheaper than one per field (each a cache line the two cores trade).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    /// The configuration in force; each request takes one snapshot of it.
    pub live: Live,
    pub store: Store,
    pub writer: WriterHandle,
    pub metrics: Arc<Metrics>,
    /// Cancelled when shutdown begins: the listeners close and `/readyz` answers 503.
    pub stopping: CancellationToken,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/alerts/{id}", get(alerts::show))
        .route("/api/v1/alerts/{id}/acknowledge", post(alerts::acknowledge))
        .route("/api/v1/alerts/{id}/resolve", post(alerts::resolve))
        .route("/api/v1/integrations", get(alerts::integrations))
        .route("/api/v1/integrations/{id}/logs", get(integration_logs))
        .route("/api/v1/logs/{id}", get(log_detail))
        .route("/api/v1/deliveries", get(deliveries))
        .route(
            "/api/v1/silences",
            get(silences::list).post(silences::create),
        )
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(silences::end),
        )
        .route("/api/v1/deliveries/{id}/retry", post(retry_delivery))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/webhooks/{id}", post(webhook::receive))
        .merge(api)
        .merge(crate::console::router(
            state.live.clone(),
            state.store.clone(),
            state.writer.clone(),
        ))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(error::log_errors))
        .with_state(state)
}

/// Ready while the store is open and takes writes, the listeners are bound and the writer
/// runs (the store is opened and the listeners bound before this router serves anything);
/// 503 with the reason once shutdown began, while writes fail (a full disk: the writer heals
/// the store by itself; or PostgreSQL is unreachable), or once the writer has ended.
async fn readyz(State(state): State<AppState>) -> Response {
    let reason = if state.stopping.is_cancelled() {
        Some("shutting down".to_string())
    } else if !state.writer.is_running() {
        Some("store writer stopped".to_string())
    } else if let Some(why) = state.writer.unavailable() {
        // PostgreSQL: the database is unreachable (the writer reconnects by itself).
        Some(why)
    } else {
        state
            .writer
            .unwritable()
            .map(|why| format!("store cannot write ({why}); retrying"))
    };
    match reason {
        Some(reason) => {
            let body = json!({ "ready": false, "reason": reason });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        None => Json(json!({ "ready": true })).into_response(),
    }
}

/// Prometheus text format. No token: scrapers rarely send one, and the figures hold no secrets
/// (counts, integration and destination ids).
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// With `http.api_token` set, the API needs `Authorization: Bearer <token>`.
async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(token) = &state.live.get().http.api_token {
        let given = bearer(req.headers()).unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return Err(ApiError::Unauthorized("missing or wrong API token"));
        }
    }
    Ok(next.run(req).await)
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Compares secrets without an early exit that would leak how much of them matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// Runs store reads on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, store::Error> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::Store(store::Error::Stopped))?
        .map_err(ApiError::from)
}

/// `?limit=` and `?cursor=`, which every list takes.
#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

impl ListQuery {
    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(n @ 1..=1000) => Ok(n),
            Some(n) => Err(ApiError::BadRequest(format!(
                "limit {n} is out of range; allowed: 1 to 1000"
            ))),
        }
    }

    fn cursor(&self) -> Result<Option<u64>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| {
                c.parse()
                    .map_err(|_| ApiError::BadRequest(format!("cursor \"{c}\" is not valid")))
            })
            .transpose()
    }
}

async fn integration_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    if !state.live.get().integrations.iter().any(|i| i.id == id) {
        return Err(ApiError::NotFound(format!("no integration \"{id}\"")));
    }
    let (limit, cursor) = (q.limit()?, q.cursor()?);
    let store = state.store.clone();
    let page = blocking(move || store.logs(&id, limit, cursor)).await?;
    Ok(Json(json!({ "logs": page.items, "next": page.next })))
}

/// `?state=pending|dead` (default pending), `?destination=`, and the list's limit and cursor.
#[derive(Deserialize)]
struct DeliveryQuery {
    state: Option<String>,
    destination: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The outbox: pending deliveries, or dead letters, oldest first.
async fn deliveries(
    State(state): State<AppState>,
    q: Result<Query<DeliveryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let dead = match q.state.as_deref() {
        None | Some("pending") => false,
        Some("dead") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "state \"{other}\" is not one of pending, dead"
            )));
        }
    };
    let list = ListQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let (limit, cursor) = (list.limit()?, list.cursor()?);
    let store = state.store.clone();
    let destination = q.destination;
    let page =
        blocking(move || store.deliveries(dead, destination.as_deref(), limit, cursor)).await?;
    Ok(Json(json!({ "deliveries": page.items, "next": page.next })))
}

/// Puts a dead letter back in the outbox, attempts reset and due now (through the writer).
async fn retry_delivery(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no dead letter \"{id}\""));
    let n: u64 = id.parse().map_err(|_| not_found())?;
    state.writer.retry(n, crate::clock::now()).await?;
    Ok(Json(json!({ "id": id, "state": "pending" })))
}

async fn log_detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no log entry \"{id}\""));
    let n: u64 = id.parse().map_err(|_| not_found())?;
    let store = state.store.clone();
    let (entry, raw) =
        tokio::task::spawn_blocking(move || Ok::<_, store::Error>((store.log(n)?, store.raw(n)?)))
            .await
            .map_err(|_| ApiError::Store(store::Error::Stopped))??;
    let entry = entry.ok_or_else(not_found)?;
    let mut value = serde_json::to_value(entry).unwrap_or_default();
    let raw = raw.unwrap_or_default();
    value["raw"] = Value::String(String::from_utf8_lossy(&raw).into_owned());
    // Input that is not UTF-8 (8-bit mail) also comes exactly, for `siren replay`.
    if std::str::from_utf8(&raw).is_err() {
        use base64::Engine as _;
        value["raw_base64"] = base64::engine::general_purpose::STANDARD
            .encode(&raw)
            .into();
    }
    Ok(Json(value))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
