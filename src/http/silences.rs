//! `POST /api/v1/silences` (201 with the stored silence), `GET /api/v1/silences` (newest first,
//! `{"silences": [...], "next": …}`) and `DELETE /api/v1/silences/{id}` (ends it; 200 with it).
//! Writes go through the writer, answered after the commit is durable.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState, ListQuery, blocking};
use crate::store::NewSilence;

pub(super) async fn create(
    State(state): State<AppState>,
    body: Result<Json<NewSilence>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(new) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if let Some(id) = new.matchers.get("integration")
        && !state.live.get().integrations.iter().any(|i| &i.id == id)
    {
        return Err(ApiError::BadRequest(format!(
            "matchers.integration: no integration \"{id}\""
        )));
    }
    let spec = new
        .check(crate::clock::now(), state.writer.silences_in_force())
        .map_err(ApiError::BadRequest)?;
    let silence = state.writer.create_silence(spec).await?;
    Ok((StatusCode::CREATED, Json(json!(silence))))
}

pub(super) async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q?;
    let (limit, cursor) = (q.limit()?, q.cursor()?);
    let store = state.store.clone();
    let page = blocking(move || store.silences(limit, cursor)).await?;
    Ok(Json(json!({ "silences": page.items, "next": page.next })))
}

pub(super) async fn end(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no silence \"{id}\""));
    let n: u64 = id.parse().map_err(|_| not_found())?;
    let silence = state.writer.end_silence(n, crate::clock::now()).await?;
    Ok(Json(json!(silence.ok_or_else(not_found)?)))
}
