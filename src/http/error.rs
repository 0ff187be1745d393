//! The one HTTP error path: every failure is an [`ApiError`], its only `IntoResponse`, which
//! maps it to a status and a JSON body `{"error": …}`. Turning an error into a response has no
//! side effect; the [`log_errors`] layer logs failed requests, with the detail the client does
//! not see (a store error's cause).

use std::sync::Arc;

use axum::Json;
use axum::extract::Request;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store;

/// Every way an HTTP request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request came too slowly.
    #[error("{0}")]
    Timeout(String),
    /// The daemon cannot serve this now; the reason says why, without internals.
    #[error("{0}")]
    Unavailable(String),
    #[error("store unavailable")]
    Store(store::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) | ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::BadRequest(e.body_text())
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NoSuchAlert(id) => ApiError::NotFound(format!("no alert \"{id}\"")),
            store::Error::NoSuchDeadLetter(id) => {
                ApiError::NotFound(format!("no dead letter \"{id}\""))
            }
            e @ store::Error::Conflict { .. } => ApiError::Conflict(e.to_string()),
            e => ApiError::Store(e),
        }
    }
}

/// What a failed response carries to [`log_errors`]: the whole error, detail included.
#[derive(Clone)]
struct Failure(Arc<ApiError>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(json!({ "error": self.to_string() }));
        let mut response = (status, body).into_response();
        // Refused before its body was read (or while it trickled in): close rather than
        // wait for the rest of a body nobody wants.
        if matches!(
            self,
            ApiError::Unauthorized(_) | ApiError::PayloadTooLarge(_) | ApiError::Timeout(_)
        ) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response.extensions_mut().insert(Failure(Arc::new(self)));
        response
    }
}

/// Logs every request that failed with an [`ApiError`]: the daemon's own failures (5xx) as
/// errors with their cause, the client's (4xx) at debug level.
pub async fn log_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    // The path only: a query string may hold a token.
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    if let Some(Failure(e)) = response.extensions().get::<Failure>() {
        let status = response.status().as_u16();
        match &**e {
            ApiError::Store(cause) => {
                tracing::error!(%method, path, status, error = %cause, "request failed")
            }
            e => tracing::debug!(%method, path, status, error = %e, "request refused"),
        }
    }
    response
}
