//! The outbox page: dead letters with a Retry button (the writer puts one back in the outbox,
//! attempts reset, as `POST /api/v1/deliveries/{id}/retry` does), and the pending deliveries.

use askama::Template;
use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::Visitor;
use super::view::{self, Chrome, When, now_ms};
use super::{Console, ConsoleError, blocking};
use crate::store::DeliveryView;

pub struct Row {
    pub id: String,
    pub destination: String,
    pub event: String,
    pub alert_id: String,
    pub attempts: u32,
    /// The next attempt (pending) or when it died (dead).
    pub at: Option<When>,
    pub last_error: String,
}

impl Row {
    fn new(d: DeliveryView, now: u64) -> Row {
        let at = d.dead_at.as_deref().or(d.next_attempt_at.as_deref());
        Row {
            at: at.map(|t| When::parse(t, now)),
            id: d.id,
            destination: d.destination,
            event: view::name(&d.event),
            alert_id: d.alert_id,
            attempts: d.attempts,
            last_error: d.last_error.unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct OutboxPage {
    chrome: Chrome,
    csrf: String,
    dead: Vec<Row>,
    more_dead: String,
    pending: Vec<Row>,
    more_pending: bool,
}

#[derive(Deserialize)]
pub struct OutboxQuery {
    cursor: Option<String>,
}

pub async fn list(
    State(console): State<Console>,
    visitor: Visitor,
    q: Result<Query<OutboxQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(q) = q?;
    let cursor = view::cursor(&q.cursor)?;
    let store = console.store.clone();
    let (dead, pending) = blocking(move || {
        Ok((
            store.deliveries(true, None, 100, cursor)?,
            store.deliveries(false, None, 100, None)?,
        ))
    })
    .await?;
    let now = now_ms();
    let more_dead = dead
        .next
        .as_deref()
        .map(|n| format!("/deliveries{}", view::query(&[("cursor", n)])))
        .unwrap_or_default();
    view::page(&OutboxPage {
        chrome: Chrome::new("Outbox", "outbox", &visitor),
        csrf: visitor.csrf.clone(),
        dead: dead.items.into_iter().map(|d| Row::new(d, now)).collect(),
        more_dead,
        more_pending: pending.next.is_some(),
        pending: pending
            .items
            .into_iter()
            .map(|d| Row::new(d, now))
            .collect(),
    })
}

#[derive(Deserialize)]
pub struct RetryForm {
    #[serde(default)]
    csrf: String,
}

pub async fn retry(
    State(console): State<Console>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<RetryForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Form(form) = form?;
    visitor.check(&headers, &form.csrf)?;
    let n: u64 = id
        .parse()
        .map_err(|_| ConsoleError::not_found(format!("There is no dead letter \"{id}\".")))?;
    console.writer.retry(n, crate::clock::now()).await?;
    Ok(Redirect::to("/deliveries").into_response())
}
