//! The alert API: list (filters, cursor pagination, newest first), show, acknowledge, resolve;
//! and the list of integrations.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, ListQuery, blocking};
use crate::clock;
use crate::store::{AlertFilter, Status, UserChange, unix_ms};

#[derive(Deserialize)]
pub struct AlertQuery {
    status: Option<String>,
    integration: Option<String>,
    /// RFC 3339 time, or a duration meaning "that long ago" (`1h`).
    since: Option<String>,
    // Not `#[serde(flatten)]` of ListQuery: flattened numbers fail in query strings.
    limit: Option<usize>,
    cursor: Option<String>,
}

impl AlertQuery {
    fn filter(&self) -> Result<AlertFilter, ApiError> {
        let status = self
            .status
            .as_deref()
            .map(|s| {
                Status::parse(s).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "status \"{s}\" is not one of queued, open, acknowledged, dropped, resolved"
                    ))
                })
            })
            .transpose()?;
        let since_ms = self.since.as_deref().map(parse_since).transpose()?;
        Ok(AlertFilter {
            status,
            integration: self.integration.clone(),
            since_ms,
        })
    }
}

fn parse_since(s: &str) -> Result<u64, ApiError> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(u64::try_from(t.as_millisecond()).unwrap_or(0));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(unix_ms(clock::now()).saturating_sub(d.as_millis() as u64));
    }
    Err(ApiError::BadRequest(format!(
        "since \"{s}\" is neither an RFC 3339 time nor a duration such as 1h"
    )))
}

fn alert_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::NotFound(format!("no alert \"{id}\"")))
}

pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let filter = q.filter()?;
    if let Some(i) = &filter.integration
        && !state.live.get().integrations.iter().any(|x| &x.id == i)
    {
        return Err(ApiError::NotFound(format!("no integration \"{i}\"")));
    }
    let page = ListQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let (limit, cursor) = (page.limit()?, page.cursor()?);
    let store = state.store.clone();
    let page = blocking(move || store.alerts(&filter, limit, cursor)).await?;
    Ok(Json(json!({ "alerts": page.items, "next": page.next })))
}

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let n = alert_id(&id)?;
    let store = state.store.clone();
    let alert = blocking(move || store.alert(n)).await?;
    let alert = alert.ok_or_else(|| ApiError::NotFound(format!("no alert \"{id}\"")))?;
    Ok(Json(serde_json::to_value(alert).unwrap_or_default()))
}

pub async fn acknowledge(
    state: State<AppState>,
    id: Path<String>,
) -> Result<Json<Value>, ApiError> {
    change(state, id, UserChange::Acknowledge).await
}

pub async fn resolve(state: State<AppState>, id: Path<String>) -> Result<Json<Value>, ApiError> {
    change(state, id, UserChange::Resolve).await
}

async fn change(
    State(state): State<AppState>,
    Path(id): Path<String>,
    change: UserChange,
) -> Result<Json<Value>, ApiError> {
    let n = alert_id(&id)?;
    let alert = state.writer.change(n, change, clock::now()).await?;
    Ok(Json(serde_json::to_value(alert).unwrap_or_default()))
}

pub async fn integrations(State(state): State<AppState>) -> Json<Value> {
    let list: Vec<Value> = state
        .live
        .get()
        .integrations
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "name": i.name,
                "type": i.kind.as_str(),
                "urgency": i.urgency,
                "addresses": i.addresses,
            })
        })
        .collect();
    Json(json!({ "integrations": list }))
}
