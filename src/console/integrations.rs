//! The integrations page (each integration's settings, what it claims, its last input and its
//! counts over the last 24 h) and an integration's log, filterable by outcome.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::alerts::Opt;
use super::session::Visitor;
use super::view::{self, Chrome, When, given, now_ms};
use super::{Console, ConsoleError, blocking};
use crate::domain::IntegrationType;
use crate::store::{IntegrationStats, LogRow, Outcome};

const DAY_MS: u64 = 86_400_000;
const OUTCOMES: [&str; 7] = [
    "created",
    "aggregated",
    "resolved",
    "acknowledged",
    "ignored",
    "dropped",
    "rejected",
];

pub struct Count {
    pub outcome: String,
    pub n: usize,
}

pub struct Card {
    pub id: String,
    pub name: String,
    pub kind: String,
    /// What it claims: addresses for e-mail, else its webhook URL.
    pub claims: Vec<String>,
    pub urgency: String,
    pub aggregate: String,
    pub auto_resolve: String,
    pub destinations: String,
    pub last_input: Option<When>,
    pub total: usize,
    pub counts: Vec<Count>,
}

#[derive(Template)]
#[template(path = "integrations.html")]
struct ListPage {
    chrome: Chrome,
    cards: Vec<Card>,
}

fn window(d: Option<std::time::Duration>) -> String {
    d.map(|d| humantime::format_duration(d).to_string())
        .unwrap_or_else(|| "off".into())
}

pub async fn list(
    State(console): State<Console>,
    visitor: Visitor,
) -> Result<Response, ConsoleError> {
    let config = console.live.get();
    let ids: Vec<String> = config.integrations.iter().map(|i| i.id.clone()).collect();
    let now = now_ms();
    let store = console.store.clone();
    let stats: Vec<IntegrationStats> = blocking(move || {
        ids.iter()
            .map(|id| store.integration_stats(id, now.saturating_sub(DAY_MS)))
            .collect()
    })
    .await?;
    let base = config.http.public_url.trim_end_matches('/');
    let cards = config
        .integrations
        .iter()
        .zip(stats)
        .map(|(i, s)| Card {
            id: i.id.clone(),
            name: i.name.clone(),
            kind: i.kind.as_str().to_string(),
            claims: match i.kind {
                IntegrationType::Email => i.addresses.clone(),
                _ => vec![format!("{base}/webhooks/{}", i.id)],
            },
            urgency: view::name(&i.urgency),
            aggregate: window(i.aggregate),
            auto_resolve: window(i.auto_resolve),
            destinations: if i.destinations.is_empty() {
                "none".into()
            } else {
                i.destinations.join(", ")
            },
            last_input: When::opt(s.last_input_ms, now),
            total: s.total,
            counts: s
                .by_outcome
                .iter()
                .map(|(o, n)| Count {
                    outcome: view::name(o),
                    n: *n,
                })
                .collect(),
        })
        .collect();
    view::page(&ListPage {
        chrome: Chrome::new("Integrations", "integrations", &visitor),
        cards,
    })
}

#[derive(Deserialize)]
pub struct LogsQuery {
    outcome: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

pub struct Row {
    pub id: u64,
    pub when: When,
    pub source: String,
    pub remote_addr: String,
    pub outcome: String,
    pub subject: String,
    pub alert_id: Option<u64>,
    pub error: String,
}

impl Row {
    fn new(r: LogRow, now: u64) -> Row {
        Row {
            id: r.id,
            when: When::at(r.received_ms, now),
            source: view::name(&r.source),
            remote_addr: r.remote_addr,
            outcome: view::outcome(r.outcome),
            subject: r.subject,
            alert_id: r.alert_id,
            error: r.error.unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPage {
    chrome: Chrome,
    id: String,
    name: String,
    outcomes: Vec<Opt>,
    rows: Vec<Row>,
    newest: String,
    older: String,
    searched_out: bool,
    filtered: bool,
}

pub async fn logs(
    State(console): State<Console>,
    visitor: Visitor,
    Path(id): Path<String>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(q) = q?;
    let config = console.live.get();
    let integration = config
        .integrations
        .iter()
        .find(|i| i.id == id)
        .ok_or_else(|| ConsoleError::not_found(format!("There is no integration \"{id}\".")))?;
    let outcome_text = given(&q.outcome).unwrap_or("").to_string();
    let outcome: Option<Outcome> = given(&q.outcome)
        .map(|o| {
            serde_json::from_value(serde_json::Value::String(o.to_string())).map_err(|_| {
                ConsoleError::bad_request(format!(
                    "outcome \"{o}\" is not one of {}",
                    OUTCOMES.join(", ")
                ))
            })
        })
        .transpose()?;
    let (limit, cursor) = (view::limit(q.limit)?, view::cursor(&q.cursor)?);
    let store = console.store.clone();
    let key = id.clone();
    let page = blocking(move || store.log_rows(&key, outcome, limit, cursor)).await?;
    let now = now_ms();
    let limit_text = q.limit.map(|n| n.to_string()).unwrap_or_default();
    let next = page.next.map(|n| n.to_string()).unwrap_or_default();
    let base = [
        ("outcome", outcome_text.as_str()),
        ("limit", limit_text.as_str()),
    ];
    let mut older = base.to_vec();
    older.push(("cursor", &next));
    let path = format!("/integrations/{id}/logs");
    view::page(&LogsPage {
        chrome: Chrome::new(format!("Log of {id}"), "integrations", &visitor),
        name: integration.name.clone(),
        outcomes: OUTCOMES
            .iter()
            .map(|o| Opt {
                value: o.to_string(),
                label: o.to_string(),
                selected: outcome_text == *o,
            })
            .collect(),
        rows: page.items.into_iter().map(|r| Row::new(r, now)).collect(),
        newest: if cursor.is_some() {
            format!("{path}{}", view::query(&base))
        } else {
            String::new()
        },
        older: if page.next.is_some() {
            format!("{path}{}", view::query(&older))
        } else {
            String::new()
        },
        searched_out: page.searched_out,
        filtered: outcome.is_some(),
        id,
    })
}
