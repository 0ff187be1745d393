//! The console's reads on PostgreSQL, the same answers as sled's (`store/views.rs`): the alert
//! list with its title search, an alert's timeline and deliveries, log rows with an outcome
//! filter, and per-integration counts. The same bounds hold: a title search looks at
//! [`SEARCH_LIMIT`] alerts per request, an outcome filter at [`LOG_SCAN_LIMIT`] entries, a
//! timeline shows its newest [`TIMELINE_LIMIT`] entries.

use super::super::alerts::Status;
use super::super::outbox::DeliveryState;
use super::super::timeline::{Note, outcome_byte};
use super::super::views::{LOG_SCAN_LIMIT, SEARCH_LIMIT, TIMELINE_LIMIT};
use super::super::{
    AlertDelivery, AlertRow, AlertRows, AlertSearch, Error, History, IntegrationStats, LogRow,
    LogRows, LogSummary, Outcome, TimelineEntry,
};
use super::rows::{COLUMNS, json, parse, record, summary, text};
use super::{PgStore, block, db_error};

/// A cursor as the API gives it (an id); a newest-first list goes on below it.
fn below(cursor: Option<u64>) -> i64 {
    cursor.map_or(i64::MAX, |c| c.min(i64::MAX as u64) as i64)
}

type Client = deadpool_postgres::Object;

async fn rows(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, Error> {
    client.query(sql, params).await.map_err(|e| db_error(&e))
}

impl PgStore {
    /// Alerts, newest first, that fit the search, starting after `cursor`. A title search reads
    /// at most [`SEARCH_LIMIT`] alerts and then says where to go on.
    pub fn alert_rows(
        &self,
        search: &AlertSearch,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<AlertRows, Error> {
        let s = self.clone();
        let search = search.clone();
        block(async move {
            let client = s.client().await?;
            let status: Option<String> = search.status.map(|st: Status| text(&st));
            let filter = "($1::text IS NULL OR status = $1) \
                 AND ($2::text IS NULL OR integration = $2) AND id < $3";
            let (status, integration, from) = (&status, &search.integration, below(cursor));
            let Some(needle) = search.text.map(|t| t.to_lowercase()) else {
                let sql = format!(
                    "SELECT {COLUMNS} FROM siren_alerts WHERE {filter} ORDER BY id DESC LIMIT $4"
                );
                let found = rows(
                    &client,
                    &sql,
                    &[status, integration, &from, &(limit as i64 + 1)],
                )
                .await?;
                let mut items: Vec<AlertRow> = Vec::with_capacity(limit);
                for row in found.iter().take(limit) {
                    items.push(record(row)?.into());
                }
                let next = (found.len() > limit).then(|| items.last().map(|a| a.id));
                return Ok(AlertRows {
                    items,
                    next: next.flatten(),
                    searched_out: false,
                });
            };
            // The titles first (compared as sled does, in Rust), the matching records after.
            let sql = format!(
                "SELECT id, title FROM siren_alerts WHERE {filter} ORDER BY id DESC LIMIT $4"
            );
            let scanned = rows(
                &client,
                &sql,
                &[status, integration, &from, &(SEARCH_LIMIT as i64 + 1)],
            )
            .await?;
            let mut hits: Vec<i64> = Vec::new();
            let mut next = None;
            let mut searched_out = false;
            for (read, row) in scanned.iter().enumerate() {
                let id: i64 = row.get(0);
                if hits.len() == limit {
                    next = hits.last().map(|&h| h as u64);
                    break;
                }
                if read == SEARCH_LIMIT {
                    next = Some(id as u64 + 1);
                    searched_out = true;
                    break;
                }
                if row.get::<_, &str>(1).to_lowercase().contains(&needle) {
                    hits.push(id);
                }
            }
            let sql =
                format!("SELECT {COLUMNS} FROM siren_alerts WHERE id = ANY($1) ORDER BY id DESC");
            let mut items: Vec<AlertRow> = Vec::with_capacity(hits.len());
            for row in rows(&client, &sql, &[&hits]).await? {
                items.push(record(&row)?.into());
            }
            Ok(AlertRows {
                items,
                next,
                searched_out,
            })
        })
    }

    /// The alert's timeline (its log entries, users' and auto resolve's changes) and deliveries.
    pub fn history(&self, alert: u64, creating_log: u64) -> Result<History, Error> {
        let s = self.clone();
        block(async move {
            let client = s.client().await?;
            let alert = alert as i64;
            let newest = rows(
                &client,
                "SELECT id, received_ms, summary, NULL::text FROM siren_logs WHERE alert_id = $1 \
                 UNION ALL SELECT id, NULL::bigint, NULL::text, note FROM siren_notes \
                 WHERE alert_id = $1 AND kind = 'c' ORDER BY id DESC LIMIT $2",
                &[&alert, &(TIMELINE_LIMIT as i64)],
            )
            .await?;
            let total: i64 = rows(
                &client,
                "SELECT (SELECT count(*) FROM siren_logs WHERE alert_id = $1) \
                 + (SELECT count(*) FROM siren_notes WHERE alert_id = $1 AND kind = 'c')",
                &[&alert],
            )
            .await?
            .first()
            .map_or(0, |r| r.get(0));
            let mut history = History {
                earlier: (total as usize).saturating_sub(newest.len()),
                ..History::default()
            };
            let mut seen_creating = false;
            // Oldest first, so that entries of the same millisecond stay in id order.
            for row in newest.iter().rev() {
                let id: i64 = row.get(0);
                match row.get::<_, Option<&str>>(3) {
                    None => {
                        seen_creating |= id as u64 == creating_log;
                        let head = summary(id, row.get(2))?;
                        history.entries.push(log_entry(id, row.get(1), head));
                    }
                    Some(note) => {
                        if let Note::Change { event, by, at_ms } =
                            json(note, || format!("timeline note {alert}/{id}"))?
                        {
                            history
                                .entries
                                .push(TimelineEntry::Change { at_ms, event, by });
                        }
                    }
                }
            }
            if !seen_creating && history.earlier == 0 {
                let creating = rows(
                    &client,
                    "SELECT id, received_ms, summary FROM siren_logs WHERE id = $1",
                    &[&(creating_log as i64)],
                )
                .await?;
                if let Some(row) = creating.first() {
                    let id: i64 = row.get(0);
                    history
                        .entries
                        .push(log_entry(id, row.get(1), summary(id, row.get(2))?));
                }
            }
            history.entries.sort_by_key(TimelineEntry::at_ms);
            history.deliveries = deliveries(&client, alert).await?;
            Ok(history)
        })
    }

    /// One integration's log entries as rows, newest first, after `cursor`, optionally only
    /// those with `outcome` (reading at most [`LOG_SCAN_LIMIT`] entries per request).
    pub fn log_rows(
        &self,
        integration: &str,
        outcome: Option<Outcome>,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<LogRows, Error> {
        let s = self.clone();
        let integration = integration.to_string();
        block(async move {
            let client = s.client().await?;
            let wanted: Option<String> = outcome.as_ref().map(text);
            // Without a filter every row read is a hit; with one, only hits carry a summary.
            let scan = if outcome.is_some() {
                LOG_SCAN_LIMIT as i64 + 1
            } else {
                limit as i64 + 1
            };
            let found = rows(
                &client,
                "SELECT id, received_ms, CASE WHEN $3::text IS NULL \
                 OR outcome IS NOT DISTINCT FROM $3 THEN summary END \
                 FROM siren_logs WHERE integration = $1 AND id < $2 ORDER BY id DESC LIMIT $4",
                &[&integration, &below(cursor), &wanted, &scan],
            )
            .await?;
            let mut page = LogRows {
                items: Vec::new(),
                next: None,
                searched_out: false,
            };
            for (read, row) in found.iter().enumerate() {
                let id: i64 = row.get(0);
                if page.items.len() == limit {
                    page.next = page.items.last().map(|r| r.id);
                    break;
                }
                if outcome.is_some() && read == LOG_SCAN_LIMIT {
                    page.next = Some(id as u64 + 1);
                    page.searched_out = true;
                    break;
                }
                let Some(text) = row.get::<_, Option<&str>>(2) else {
                    continue;
                };
                let head = summary(id, text)?;
                page.items.push(LogRow {
                    id: id as u64,
                    received_ms: row.get::<_, i64>(1) as u64,
                    source: head.source,
                    remote_addr: head.remote_addr,
                    size: head.size,
                    outcome: head.outcome,
                    alert_id: head.alert_id.as_deref().and_then(|a| a.parse().ok()),
                    error: head.error,
                    subject: head.summary,
                });
            }
            Ok(page)
        })
    }

    /// An integration's inputs received at or after `since_ms`, and its last input.
    pub fn integration_stats(
        &self,
        integration: &str,
        since_ms: u64,
    ) -> Result<IntegrationStats, Error> {
        let s = self.clone();
        let integration = integration.to_string();
        block(async move {
            let client = s.client().await?;
            let last = rows(
                &client,
                "SELECT received_ms FROM siren_logs WHERE integration = $1 ORDER BY id DESC LIMIT 1",
                &[&integration],
            )
            .await?;
            let counts = rows(
                &client,
                "SELECT outcome, count(*) FROM siren_logs WHERE integration = $1 \
                 AND received_ms >= $2 GROUP BY outcome",
                &[&integration, &(since_ms as i64)],
            )
            .await?;
            let mut stats = IntegrationStats {
                last_input_ms: last.first().map(|r| r.get::<_, i64>(0) as u64),
                ..IntegrationStats::default()
            };
            for row in &counts {
                let n = row.get::<_, i64>(1) as usize;
                stats.total += n;
                let outcome: Option<&str> = row.get(0);
                if let Some(o) = outcome
                    .map(|o| parse::<Outcome>(o, "log outcome"))
                    .transpose()?
                {
                    stats.by_outcome.push((o, n));
                }
            }
            stats
                .by_outcome
                .sort_by_key(|(o, _)| outcome_byte(Some(*o)));
            Ok(stats)
        })
    }
}

/// A log entry on a timeline.
fn log_entry(id: i64, received_ms: Option<i64>, head: LogSummary) -> TimelineEntry {
    TimelineEntry::Log {
        id: id as u64,
        at_ms: received_ms.unwrap_or(0) as u64,
        source: head.source,
        remote_addr: head.remote_addr,
        outcome: head.outcome,
    }
}

/// An alert's deliveries, oldest first: pending and dead ones with their state, the others
/// delivered (they left the outbox).
async fn deliveries(client: &Client, alert: i64) -> Result<Vec<AlertDelivery>, Error> {
    let found = rows(
        client,
        "SELECT n.id, n.note, d.state, d.dead FROM siren_notes n \
         LEFT JOIN siren_deliveries d ON d.id = n.id \
         WHERE n.alert_id = $1 AND n.kind = 'd' ORDER BY n.id",
        &[&alert],
    )
    .await?;
    let mut out = Vec::with_capacity(found.len());
    for row in &found {
        let id: i64 = row.get(0);
        let Note::Delivery { destination, event } =
            json(row.get(1), || format!("timeline note {alert}/{id}"))?
        else {
            continue;
        };
        let mut d = AlertDelivery {
            id: id as u64,
            destination,
            event,
            state: "delivered",
            attempts: 0,
            created_ms: None,
            next_ms: None,
            dead_ms: None,
            last_error: None,
        };
        if let Some(state) = row.get::<_, Option<&str>>(2) {
            let s: DeliveryState = json(state, || format!("delivery {id}"))?;
            let dead: bool = row.get(3);
            d.state = if dead { "dead" } else { "pending" };
            d.attempts = s.attempts;
            d.created_ms = Some(s.created_ms);
            d.next_ms = (!dead).then_some(s.next_ms);
            d.dead_ms = s.dead_ms;
            d.last_error = s.last_error;
        }
        out.push(d);
    }
    Ok(out)
}
