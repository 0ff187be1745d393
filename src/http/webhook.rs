//! `POST /webhooks/{integration_id}`: webhook intake for `webhook` and `alertmanager`
//! integrations. Every request that names an integration is in its log, rejected ones too
//! (outcome `rejected`, no alert); `202` comes only after the durable commit.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, bearer, constant_time_eq};
use crate::adapt::{self, AdaptError, Event};
use crate::clock;
use crate::domain::{Integration, IntegrationType};
use crate::ingest::{self, Input};
use crate::metrics::HttpRejection;
use crate::store::{Action, NewLog, Outcome, Source};

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// A refused request: the reason, which the sender sees and the log keeps, and its name in
/// the metrics (which also decides the status).
struct Rejection {
    kind: HttpRejection,
    reason: String,
}

impl Rejection {
    fn new(kind: HttpRejection, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }

    fn into_error(self) -> ApiError {
        match self.kind {
            HttpRejection::BadJson | HttpRejection::BadPayload => ApiError::BadRequest(self.reason),
            HttpRejection::Unauthorized => ApiError::Unauthorized("missing or wrong token"),
            HttpRejection::NotFound => ApiError::NotFound(self.reason),
            HttpRejection::TooLarge => ApiError::PayloadTooLarge(self.reason),
            HttpRejection::UnsupportedMediaType => ApiError::UnsupportedMediaType(self.reason),
            HttpRejection::StoreFailure => ApiError::Unavailable(self.reason),
        }
    }
}

pub async fn receive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let arrived = std::time::Instant::now();
    let metrics = &state.metrics;
    metrics.webhook_received();
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            metrics.webhook_rejected(HttpRejection::BadPayload);
            return Err(e.into());
        }
    };
    let config = state.live.get();
    let Some(integration) = config
        .integrations
        .iter()
        .find(|i| i.id == id && i.kind != IntegrationType::Email)
    else {
        metrics.webhook_rejected(HttpRejection::NotFound);
        return Err(ApiError::NotFound(format!(
            "no webhook integration \"{id}\""
        )));
    };
    let input = |raw: Bytes| Input {
        source: Source::Http,
        remote_addr: peer.to_string(),
        received_at: clock::now(),
        raw: Arc::from(&raw[..]),
    };
    let (raw, events) = match read(&state, integration, &query, &headers, body).await {
        Ok(ok) => ok,
        Err((rejection, raw, data)) => {
            metrics.webhook_rejected(rejection.kind);
            let error = rejection.into_error();
            reject_log(&state, integration, &input(raw), data, &error).await;
            return Err(error);
        }
    };
    let input = input(raw);
    let actions: Vec<Action> = events.iter().map(|e| e.action).collect();
    let logs: Vec<NewLog> = events
        .into_iter()
        .map(|event| ingest::event_log(&config, integration, &input, event, None))
        .collect();
    let receipts = match state.writer.commit(logs).await {
        Ok(r) => r,
        Err(e) => {
            metrics.webhook_rejected(HttpRejection::StoreFailure);
            return Err(e.into());
        }
    };
    let results: Vec<Value> = receipts
        .iter()
        .zip(actions)
        .map(|(r, action)| {
            json!({
                "action": action,
                "outcome": r.outcome,
                "alert_id": r.alert_id.map(|a| a.to_string()),
            })
        })
        .collect();
    let response = (StatusCode::ACCEPTED, Json(json!({ "results": results }))).into_response();
    metrics.webhook_accepted(arrived.elapsed());
    Ok(response)
}

/// Checks the token, the content type and the size, then parses and adapts the body.
/// A rejection carries the raw input and the body (when it was JSON) for the log.
async fn read(
    state: &AppState,
    integration: &Integration,
    query: &TokenQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, Vec<Event>), (Rejection, Bytes, Value)> {
    // The token first: an unauthenticated sender gets 401 without its body being read or kept.
    if let Some(expected) = &integration.token {
        let given = bearer(headers).or(query.token.as_deref()).unwrap_or("");
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            let rejection = Rejection::new(HttpRejection::Unauthorized, "missing or wrong token");
            return Err((rejection, Bytes::new(), Value::Null));
        }
    }
    let limit = state.live.get().http.max_body_size;
    // Read (bounded) before judging the rest, so that a rejected request's input is logged.
    let raw = match axum::body::to_bytes(body, limit).await {
        Ok(raw) => raw,
        Err(_) => {
            let reason = format!("the body is larger than {limit} bytes (http.max_body_size)");
            return Err((
                Rejection::new(HttpRejection::TooLarge, reason),
                Bytes::new(),
                Value::Null,
            ));
        }
    };
    let reject =
        |kind, reason: String, data: Value| Err((Rejection::new(kind, reason), raw.clone(), data));
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            let reason =
                format!("content type \"{essence}\" is not supported; send application/json");
            return reject(HttpRejection::UnsupportedMediaType, reason, Value::Null);
        }
    }
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => {
            return reject(
                HttpRejection::BadJson,
                format!("the body is not valid JSON: {e}"),
                Value::Null,
            );
        }
    };
    match adapt::payload(integration.kind, &body) {
        Ok(events) => Ok((raw, events)),
        Err(AdaptError(reason)) => reject(HttpRejection::BadPayload, reason, body),
    }
}

/// Logs a rejected request (no alert). Best effort: the sender gets its answer either way.
async fn reject_log(
    state: &AppState,
    integration: &Integration,
    input: &Input,
    data: Value,
    error: &ApiError,
) {
    let log = NewLog {
        integration: integration.id.clone(),
        received_at: input.received_at,
        source: input.source,
        remote_addr: input.remote_addr.clone(),
        data,
        alert: None,
        outcome: Some(Outcome::Rejected),
        error: Some(format!("{}: {error}", error.status().as_u16())),
        raw: input.raw.clone(),
        email: None,
    };
    if let Err(e) = state.writer.commit(vec![log]).await {
        tracing::warn!(error = %e, integration = %integration.id, "could not log a rejected webhook");
    }
}
