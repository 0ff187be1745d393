//! The console's one failure type and the one place its failures become pages: a status and a
//! short text, rendered in the console's layout. The detail of a store failure goes to the log.

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::view::Chrome;
use crate::store;

#[derive(Debug)]
pub struct ConsoleError {
    pub status: StatusCode,
    pub message: String,
}

impl ConsoleError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ConsoleError {
            status,
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    pub fn bad_request(what: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, what)
    }

    pub fn forbidden(what: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, what)
    }
}

impl From<store::Error> for ConsoleError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NoSuchAlert(id) => Self::not_found(format!("There is no alert {id}.")),
            store::Error::NoSuchDeadLetter(id) => {
                Self::not_found(format!("There is no dead letter {id}."))
            }
            e @ store::Error::Conflict { .. } => Self::new(StatusCode::CONFLICT, e.to_string()),
            e => {
                tracing::error!(error = %e, "store error while serving a console page");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The store is unavailable; try again.",
                )
            }
        }
    }
}

impl From<askama::Error> for ConsoleError {
    fn from(e: askama::Error) -> Self {
        tracing::error!(error = %e, "a console page failed to render");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The page failed to render.",
        )
    }
}

impl From<QueryRejection> for ConsoleError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl From<FormRejection> for ConsoleError {
    fn from(e: FormRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let page = ErrorPage {
            chrome: Chrome::bare(reason),
            status: self.status.as_u16(),
            reason,
            message: &self.message,
        };
        match page.render() {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(_) => (self.status, self.message).into_response(),
        }
    }
}
