//! The alert pages: the list (`/`, filters, cursor pages, its rows at `/alert-rows` for the
//! script that keeps an open list current), one alert with its timeline and deliveries, and
//! the Acknowledge and Resolve forms, which go through the writer as the API's do.

use askama::Template;
use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::Visitor;
use super::view::{self, Chrome, When, given, now_ms};
use super::{Console, ConsoleError, blocking};
use crate::store::{
    Alert, AlertDelivery, AlertRow, AlertSearch, Status, TimelineEntry, UserChange,
};

const STATUSES: [&str; 5] = ["open", "acknowledged", "queued", "dropped", "resolved"];

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    integration: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// An option of a filter's select.
pub struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub struct Row {
    pub id: u64,
    pub title: String,
    pub status: String,
    pub urgency: String,
    pub integration: String,
    pub dedup_count: u64,
    pub created: When,
    pub updated: When,
}

impl Row {
    fn new(a: AlertRow, now: u64) -> Row {
        Row {
            id: a.id,
            title: a.title,
            status: view::status(a.status),
            urgency: view::name(&a.urgency),
            integration: a.integration,
            dedup_count: a.dedup_count,
            created: When::at(a.created_ms, now),
            updated: When::at(a.updated_ms, now),
        }
    }
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct ListPage {
    chrome: Chrome,
    statuses: Vec<Opt>,
    integrations: Vec<Opt>,
    q: String,
    rows: Vec<Row>,
    /// The rows' URL for the script, on the first page only (later pages stay as they are).
    live: String,
    newest: String,
    older: String,
    searched_out: bool,
    filtered: bool,
}

#[derive(Template)]
#[template(path = "alert_rows.html")]
struct RowsFragment {
    rows: Vec<Row>,
    filtered: bool,
}

struct Listing {
    rows: Vec<Row>,
    next: Option<u64>,
    searched_out: bool,
    status: String,
    integration: String,
    q: String,
}

async fn listing(console: &Console, q: &ListQuery) -> Result<Listing, ConsoleError> {
    let status = given(&q.status)
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                ConsoleError::bad_request(format!(
                    "status \"{s}\" is not one of queued, open, acknowledged, dropped, resolved"
                ))
            })
        })
        .transpose()?;
    let search = AlertSearch {
        status,
        integration: given(&q.integration).map(str::to_string),
        text: given(&q.q).map(str::to_string),
    };
    let (limit, cursor) = (view::limit(q.limit)?, view::cursor(&q.cursor)?);
    let store = console.store.clone();
    let filter = search.clone();
    let page = blocking(move || store.alert_rows(&filter, limit, cursor)).await?;
    let now = now_ms();
    Ok(Listing {
        rows: page.items.into_iter().map(|a| Row::new(a, now)).collect(),
        next: page.next,
        searched_out: page.searched_out,
        status: status.map(view::status).unwrap_or_default(),
        integration: search.integration.unwrap_or_default(),
        q: search.text.unwrap_or_default(),
    })
}

pub async fn list(
    State(console): State<Console>,
    visitor: Visitor,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(q) = q?;
    let l = listing(&console, &q).await?;
    let filters = [
        ("status", l.status.as_str()),
        ("integration", l.integration.as_str()),
        ("q", l.q.as_str()),
    ];
    let limit = q.limit.map(|n| n.to_string()).unwrap_or_default();
    let mut with_limit = filters.to_vec();
    with_limit.push(("limit", &limit));
    let next = l.next.map(|n| n.to_string()).unwrap_or_default();
    let mut older = with_limit.clone();
    older.push(("cursor", &next));
    let config = console.live.get();
    let page = ListPage {
        chrome: Chrome::new("Alerts", "alerts", &visitor),
        statuses: STATUSES
            .iter()
            .map(|s| Opt {
                value: s.to_string(),
                label: s.to_string(),
                selected: l.status == *s,
            })
            .collect(),
        integrations: config
            .integrations
            .iter()
            .map(|i| Opt {
                value: i.id.clone(),
                label: if i.name.is_empty() || i.name == i.id {
                    i.id.clone()
                } else {
                    format!("{} ({})", i.name, i.id)
                },
                selected: l.integration == i.id,
            })
            .collect(),
        live: if view::cursor(&q.cursor)?.is_none() {
            format!("/alert-rows{}", view::query(&with_limit))
        } else {
            String::new()
        },
        newest: if view::cursor(&q.cursor)?.is_some() {
            format!("/{}", view::query(&with_limit))
        } else {
            String::new()
        },
        older: if l.next.is_some() {
            format!("/{}", view::query(&older))
        } else {
            String::new()
        },
        filtered: filters.iter().any(|(_, v)| !v.is_empty()),
        q: l.q,
        rows: l.rows,
        searched_out: l.searched_out,
    };
    view::page(&page)
}

/// The list's rows alone (a `<tbody>`), for the script that refreshes an open list.
pub async fn rows(
    State(console): State<Console>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(mut q) = q?;
    q.cursor = None;
    let l = listing(&console, &q).await?;
    let filtered = [&l.status, &l.integration, &l.q]
        .iter()
        .any(|v| !v.is_empty());
    view::page(&RowsFragment {
        rows: l.rows,
        filtered,
    })
}

pub struct Step {
    pub when: When,
    pub what: String,
    /// The log entry's id, when the step is one.
    pub log: Option<u64>,
    pub source: String,
}

pub struct Delivery {
    pub id: u64,
    pub destination: String,
    pub event: String,
    pub state: &'static str,
    pub attempts: u32,
    pub next: Option<When>,
    pub dead: Option<When>,
    pub last_error: String,
}

impl Delivery {
    fn new(d: AlertDelivery, now: u64) -> Delivery {
        Delivery {
            id: d.id,
            destination: d.destination,
            event: view::name(&d.event),
            state: d.state,
            attempts: d.attempts,
            next: When::opt(d.next_ms, now),
            dead: When::opt(d.dead_ms, now),
            last_error: d.last_error.unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertPage {
    chrome: Chrome,
    a: Alert,
    status: String,
    urgency: String,
    resolved_by: String,
    created: When,
    updated: When,
    resolved: Option<When>,
    steps: Vec<Step>,
    earlier: usize,
    deliveries: Vec<Delivery>,
    can_acknowledge: bool,
    can_resolve: bool,
    has_description: bool,
}

fn alert_id(id: &str) -> Result<u64, ConsoleError> {
    id.parse()
        .map_err(|_| ConsoleError::not_found(format!("There is no alert \"{id}\".")))
}

fn step(e: TimelineEntry, now: u64) -> Step {
    match e {
        TimelineEntry::Log {
            id,
            at_ms,
            source,
            remote_addr,
            outcome,
        } => {
            let what = match outcome {
                Some(crate::store::Outcome::Created) => "Created by this input".to_string(),
                Some(crate::store::Outcome::Aggregated) => "Aggregated into it".to_string(),
                Some(crate::store::Outcome::Resolved) => "Resolved by the integration".to_string(),
                Some(crate::store::Outcome::Acknowledged) => {
                    "Acknowledged by the integration".to_string()
                }
                o => format!("Input: {}", view::outcome(o)),
            };
            Step {
                when: When::at(at_ms, now),
                what,
                log: Some(id),
                source: format!("{} from {remote_addr}", view::name(&source)),
            }
        }
        TimelineEntry::Change { at_ms, event, by } => Step {
            when: When::at(at_ms, now),
            what: view::change(event, by),
            log: None,
            source: String::new(),
        },
    }
}

pub async fn show(
    State(console): State<Console>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let n = alert_id(&id)?;
    let store = console.store.clone();
    let (alert, history) = blocking(move || {
        let Some(alert) = store.alert(n)? else {
            return Ok((None, None));
        };
        let log: u64 = alert.log_id.parse().unwrap_or(0);
        let history = store.history(n, log)?;
        Ok((Some(alert), Some(history)))
    })
    .await?;
    let (Some(a), Some(history)) = (alert, history) else {
        return Err(ConsoleError::not_found(format!("There is no alert {n}.")));
    };
    let now = now_ms();
    let ms = |s: &str| When::parse(s, now);
    let page = AlertPage {
        chrome: Chrome::new(format!("Alert {n}"), "alerts", &visitor),
        status: view::status(a.status),
        urgency: view::name(&a.urgency),
        resolved_by: a.resolved_by.map(|b| view::name(&b)).unwrap_or_default(),
        created: ms(&a.created_at),
        updated: ms(&a.updated_at),
        resolved: a.resolved_at.as_deref().map(ms),
        steps: history.entries.into_iter().map(|e| step(e, now)).collect(),
        earlier: history.earlier,
        deliveries: history
            .deliveries
            .into_iter()
            .map(|d| Delivery::new(d, now))
            .collect(),
        can_acknowledge: matches!(a.status, Status::Open | Status::Queued),
        can_resolve: a.status != Status::Resolved,
        has_description: !a.description.trim().is_empty(),
        a,
    };
    view::page(&page)
}

/// The description, as a document for the page's sandboxed iframe (see `logs::document`).
pub async fn description(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let n = alert_id(&id)?;
    let store = console.store.clone();
    let alert = blocking(move || store.alert(n))
        .await?
        .ok_or_else(|| ConsoleError::not_found(format!("There is no alert {n}.")))?;
    super::logs::document(&alert.description)
}

#[derive(Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    csrf: String,
}

pub async fn acknowledge(
    console: State<Console>,
    visitor: Visitor,
    headers: HeaderMap,
    id: Path<String>,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    change(console, visitor, headers, id, form, UserChange::Acknowledge).await
}

pub async fn resolve(
    console: State<Console>,
    visitor: Visitor,
    headers: HeaderMap,
    id: Path<String>,
    form: Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    change(console, visitor, headers, id, form, UserChange::Resolve).await
}

/// The API's acknowledge and resolve (`WriterHandle::change`, answered after the commit), then
/// back to the alert.
async fn change(
    State(console): State<Console>,
    visitor: Visitor,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ChangeForm>, FormRejection>,
    change: UserChange,
) -> Result<Response, ConsoleError> {
    let Form(form) = form?;
    visitor.check(&headers, &form.csrf)?;
    let n = alert_id(&id)?;
    console
        .writer
        .change(n, change, crate::clock::now())
        .await?;
    Ok(Redirect::to(&format!("/alerts/{n}")).into_response())
}
