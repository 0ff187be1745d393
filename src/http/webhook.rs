//! `POST /webhooks/{integration_id}`: webhook intake for `webhook`, `alertmanager` and
//! `grafana` integrations; `202` comes only after the durable commit. A refused request is logged with
//! outcome `rejected` and no alert, except one that fails authentication: a stranger costs
//! nothing durable (it is counted in `/metrics` and logged by `tracing`, at most once a
//! minute). Costs are bounded before they are paid: a declared `Content-Length` over
//! `http.max_body_size` gets 413 before any of the body is read, the body must keep up with
//! `http.body_timeout` and `http.body_min_rate` (else 408), and a payload with more alerts than
//! `http.max_alerts_per_request` gets 413 before it is adapted (counted without building it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, bearer, constant_time_eq};
use crate::adapt::form::DecodeError;
use crate::adapt::{self, AdaptError, Event};
use crate::clock;
use crate::config::HttpConfig;
use crate::domain::{Integration, IntegrationType};
use crate::ingest::{self, Input};
use crate::metrics::HttpRejection;
use crate::store::{Action, NewLog, Outcome, Source, unix_ms};

/// Failed authentications are logged at most this often (the rest are counted, and the count
/// is in the next line logged).
const AUTH_LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// A refused request: the reason, which the sender sees and the log keeps, and its name in
/// the metrics (which also decides the status).
struct Rejection {
    kind: HttpRejection,
    reason: String,
    /// What the log entry keeps of the request: its raw body and its JSON, when they are
    /// worth keeping (not for a body too large or with too many alerts).
    raw: Bytes,
    data: Value,
}

impl Rejection {
    fn new(kind: HttpRejection, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            raw: Bytes::new(),
            data: Value::Null,
        }
    }

    fn keeping(mut self, raw: &Bytes, data: Value) -> Self {
        self.raw = raw.clone();
        self.data = data;
        self
    }

    fn to_error(&self) -> ApiError {
        let reason = self.reason.clone();
        match self.kind {
            HttpRejection::BadJson | HttpRejection::BadPayload => ApiError::BadRequest(reason),
            HttpRejection::Unauthorized => ApiError::Unauthorized("missing or wrong token"),
            HttpRejection::NotFound => ApiError::NotFound(reason),
            HttpRejection::TooLarge | HttpRejection::TooManyAlerts => {
                ApiError::PayloadTooLarge(reason)
            }
            HttpRejection::UnsupportedMediaType => ApiError::UnsupportedMediaType(reason),
            HttpRejection::BodyTimeout | HttpRejection::HeaderTimeout => ApiError::Timeout(reason),
            HttpRejection::StoreFailure | HttpRejection::ConnectionCap => {
                ApiError::Unavailable(reason)
            }
        }
    }
}

pub async fn receive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(raw_query): RawQuery,
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
    if !authenticated(integration, &query, &headers) {
        metrics.webhook_rejected(HttpRejection::Unauthorized);
        log_auth_failure(integration, peer);
        return Err(
            Rejection::new(HttpRejection::Unauthorized, "missing or wrong token").to_error(),
        );
    }
    let input = |raw: &Bytes| Input {
        source: Source::Http,
        remote_addr: peer.to_string(),
        received_at: clock::now(),
        raw: Arc::from(&raw[..]),
    };
    let (raw, events) = match read(
        &config.http,
        integration,
        (raw_query.as_deref(), &headers),
        body,
    )
    .await
    {
        Ok(ok) => ok,
        Err(rejection) => {
            metrics.webhook_rejected(rejection.kind);
            let error = rejection.to_error();
            reject_log(
                &state,
                integration,
                input(&rejection.raw),
                rejection.data,
                &error,
            )
            .await;
            return Err(error);
        }
    };
    let input = input(&raw);
    drop(raw);
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

/// The integration's token, in `Authorization: Bearer`, PagerTree's `pagertree-token` header
/// or `?token=`, compared in constant time; true when the integration has none.
fn authenticated(integration: &Integration, query: &TokenQuery, headers: &HeaderMap) -> bool {
    integration.token.as_ref().is_none_or(|expected| {
        let pagertree = headers.get("pagertree-token").and_then(|v| v.to_str().ok());
        let given = bearer(headers)
            .or(pagertree)
            .or(query.token.as_deref())
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), expected.as_bytes())
    })
}

/// Logs a failed authentication, at most once per [`AUTH_LOG_EVERY`] for the whole daemon:
/// anyone who knows an integration id can send these as fast as they like.
fn log_auth_failure(integration: &Integration, peer: SocketAddr) {
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now = unix_ms(clock::now());
    let last = LAST_MS.load(Ordering::Relaxed);
    let due = last == 0 || now.saturating_sub(last) >= AUTH_LOG_EVERY.as_millis() as u64;
    if due
        && LAST_MS
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
        tracing::warn!(
            integration = %integration.id,
            %peer,
            suppressed,
            "webhook request with a missing or wrong token refused (401); further ones are logged at most once a minute"
        );
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Checks the size, reads the body, checks the content type, counts the alerts, then parses
/// and adapts it.
async fn read(
    http: &HttpConfig,
    integration: &Integration,
    (raw_query, headers): (Option<&str>, &HeaderMap),
    body: Body,
) -> Result<(Bytes, Vec<Event>), Rejection> {
    let limit = http.max_body_size;
    let too_large = || {
        let reason = format!("the body is larger than {limit} bytes (http.max_body_size)");
        Rejection::new(HttpRejection::TooLarge, reason)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // Read before judging the rest, so that a rejected request's input is logged.
    let raw = match read_body(body, limit, http).await {
        Ok(raw) => raw,
        Err(BodyError::TooLarge) => return Err(too_large()),
        Err(BodyError::TooSlow(n)) => {
            let reason = format!(
                "the body came too slowly ({n} bytes by the deadline; http.body_timeout and http.body_min_rate)"
            );
            return Err(Rejection::new(HttpRejection::BodyTimeout, reason));
        }
        Err(BodyError::Read(e)) => {
            let reason = format!("the body could not be read: {e}");
            return Err(Rejection::new(HttpRejection::BadPayload, reason));
        }
    };
    // JSON or a form (`adapt::form`); the query string's parameters fill in for `webhook`.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|ct| ct.to_str().unwrap_or(""));
    if matches!(
        integration.kind,
        IntegrationType::Alertmanager | IntegrationType::Grafana
    ) && let Some(n) = alert_count(&raw)
        && n > http.max_alerts_per_request
    {
        let reason = format!(
            "{n} alerts in one request; http.max_alerts_per_request allows {}",
            http.max_alerts_per_request
        );
        return Err(Rejection::new(HttpRejection::TooManyAlerts, reason));
    }
    let body = adapt::form::decode(content_type, &raw).map_err(|e| {
        let kind = match e {
            DecodeError::UnsupportedMediaType(_) => HttpRejection::UnsupportedMediaType,
            DecodeError::BadJson(_) => HttpRejection::BadJson,
        };
        Rejection::new(kind, e.to_string()).keeping(&raw, Value::Null)
    })?;
    match adapt::payload(integration, &body, raw_query) {
        Ok(events) => Ok((raw, events)),
        Err(AdaptError(reason)) => {
            Err(Rejection::new(HttpRejection::BadPayload, reason).keeping(&raw, body))
        }
    }
}

enum BodyError {
    TooLarge,
    /// Bytes received by the deadline.
    TooSlow(usize),
    Read(axum::Error),
}

/// Reads at most `limit` bytes of body, allowing `http.body_timeout` and one more second for
/// each `http.body_min_rate` bytes received (as Apache's mod_reqtimeout does): a client that
/// trickles its body is cut off, one on a slow but honest link is not.
async fn read_body(mut body: Body, limit: usize, http: &HttpConfig) -> Result<Bytes, BodyError> {
    let started = tokio::time::Instant::now();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let earned = Duration::from_secs_f64(buf.len() as f64 / http.body_min_rate as f64);
        let deadline = started + http.body_timeout + earned;
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(BodyError::TooSlow(buf.len())),
            Ok(None) => return Ok(Bytes::from(buf)),
            Ok(Some(frame)) => frame.map_err(BodyError::Read)?,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
}

/// The number of elements of a payload's `alerts` array, counted without building them; `None`
/// when the body is not a JSON object (the full parse then says why).
fn alert_count(raw: &[u8]) -> Option<usize> {
    struct Count(usize);
    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Count;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an array")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
            }
            d.deserialize_seq(Visit)
        }
    }
    #[derive(Deserialize)]
    struct Payload {
        alerts: Option<Count>,
    }
    serde_json::from_slice::<Payload>(raw)
        .ok()
        .and_then(|p| p.alerts)
        .map(|c| c.0)
}

/// Logs a rejected request (no alert). Best effort: the sender gets its answer either way.
async fn reject_log(
    state: &AppState,
    integration: &Integration,
    input: Input,
    data: Value,
    error: &ApiError,
) {
    let log = NewLog {
        integration: integration.id.clone(),
        received_at: input.received_at,
        source: input.source,
        remote_addr: input.remote_addr,
        data,
        alert: None,
        outcome: Some(Outcome::Rejected),
        error: Some(format!("{}: {error}", error.status().as_u16())),
        raw: input.raw,
        email: None,
    };
    if let Err(e) = state.writer.commit(vec![log]).await {
        tracing::warn!(error = %e, integration = %integration.id, "could not log a rejected webhook");
    }
}

#[cfg(test)]
mod tests {
    use super::alert_count;

    #[test]
    fn alerts_are_counted_without_being_built() {
        assert_eq!(alert_count(br#"{"alerts": [{"a": 1}, {}, 3]}"#), Some(3));
        assert_eq!(alert_count(br#"{"version": "4", "alerts": []}"#), Some(0));
        assert_eq!(alert_count(br#"{"status": "firing"}"#), None);
        assert_eq!(alert_count(br#"{"alerts": "no"}"#), None);
        assert_eq!(alert_count(b"not json"), None);
    }
}
