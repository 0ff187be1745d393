//! Reads for the web console: the alert list with a title search, an alert's timeline and
//! deliveries, integration logs as rows, and per-integration counts. The index these read that
//! the writer keeps is in `timeline`.
//!
//! Every read is a prefix seek and bounded: a title search looks at [`SEARCH_LIMIT`] alerts
//! per request at most and says where to go on, a timeline keeps its newest
//! [`TIMELINE_LIMIT`] entries.

use serde::{Deserialize, Serialize};

use super::alerts::{self, AlertEvent, Outcome, Record, ResolvedBy, Status};
use super::index;
use super::logs::{self, LogSummary};
use super::outbox::{self, DeliveryState};
use super::timeline::{Note, byte_outcome, linked, outcome_byte, timeline_prefix};
use super::{Error, SledStore, Source, u64_at};
use crate::domain::Urgency;

/// Alerts a title search reads per request at most; the page then says where to go on.
pub const SEARCH_LIMIT: usize = 10_000;
/// Log rows an outcome filter reads per request at most.
pub const LOG_SCAN_LIMIT: usize = 10_000;
/// Timeline entries shown at most (the newest).
pub const TIMELINE_LIMIT: usize = 200;

/// Filters of the console's alert list.
#[derive(Debug, Clone, Default)]
pub struct AlertSearch {
    pub status: Option<Status>,
    pub integration: Option<String>,
    /// Case-insensitive text the title must contain.
    pub text: Option<String>,
}

/// An alert as a list row: the record without its description.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    pub id: u64,
    pub integration: String,
    pub title: String,
    pub urgency: Urgency,
    pub status: Status,
    pub dedup_count: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub resolved_by: Option<ResolvedBy>,
}

impl From<Record> for AlertRow {
    fn from(r: Record) -> Self {
        AlertRow {
            id: r.id,
            integration: r.integration,
            title: r.title,
            urgency: r.urgency,
            status: r.status,
            dedup_count: r.dedup_count,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            resolved_by: r.resolved_by,
        }
    }
}

/// A page of alert rows, newest first.
#[derive(Debug, Clone)]
pub struct AlertRows {
    pub items: Vec<AlertRow>,
    /// Where the next page starts (an alert id), as the API's cursors.
    pub next: Option<u64>,
    /// True when a title search stopped at [`SEARCH_LIMIT`] alerts before the page was full.
    pub searched_out: bool,
}

/// One row of an integration log.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub id: u64,
    pub received_ms: u64,
    pub source: Source,
    pub remote_addr: String,
    pub size: u64,
    pub outcome: Option<Outcome>,
    pub alert_id: Option<u64>,
    pub error: Option<String>,
    /// The input's subject or title (its log summary), or else the title of its alert.
    pub subject: String,
}

/// A page of log rows, newest first.
#[derive(Debug, Clone)]
pub struct LogRows {
    pub items: Vec<LogRow>,
    pub next: Option<u64>,
    /// True when an outcome filter stopped at [`LOG_SCAN_LIMIT`] entries before the page was full.
    pub searched_out: bool,
}

/// What happened to an alert, in time order.
#[derive(Debug, Clone)]
pub enum TimelineEntry {
    /// A log entry that created it, aggregated into it, or resolved or acknowledged it.
    Log {
        id: u64,
        at_ms: u64,
        source: Source,
        remote_addr: String,
        outcome: Option<Outcome>,
    },
    /// A user's acknowledge or resolve, or auto resolve.
    Change {
        at_ms: u64,
        event: AlertEvent,
        by: ResolvedBy,
    },
}

impl TimelineEntry {
    pub fn at_ms(&self) -> u64 {
        match self {
            TimelineEntry::Log { at_ms, .. } | TimelineEntry::Change { at_ms, .. } => *at_ms,
        }
    }
}

/// One outbox delivery of an alert.
#[derive(Debug, Clone)]
pub struct AlertDelivery {
    pub id: u64,
    pub destination: String,
    pub event: AlertEvent,
    /// `pending`, `dead`, or `delivered` (it left the outbox without being dead-lettered).
    pub state: &'static str,
    pub attempts: u32,
    pub created_ms: Option<u64>,
    pub next_ms: Option<u64>,
    pub dead_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// An alert's timeline and deliveries.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Oldest first; the newest [`TIMELINE_LIMIT`].
    pub entries: Vec<TimelineEntry>,
    /// Older entries not in `entries`.
    pub earlier: usize,
    pub deliveries: Vec<AlertDelivery>,
}

/// An integration's inputs over a window.
#[derive(Debug, Clone, Default)]
pub struct IntegrationStats {
    pub last_input_ms: Option<u64>,
    pub total: usize,
    /// Per outcome, in [`Outcome`] order; entries of unknown outcome are only in `total`.
    pub by_outcome: Vec<(Outcome, usize)>,
}

/// A log entry's summary (the list part: no data).
fn summary(tree: &sled::Tree, id: u64) -> Result<Option<LogSummary>, Error> {
    Ok(logs::stored(tree, id)?.map(|s| s.summary))
}

/// An alert id in a list, with its record when the list reads the records themselves.
type Row = (u64, Option<sled::IVec>);

#[derive(Deserialize)]
struct TitleOnly<'a> {
    #[serde(borrow, rename = "t", alias = "title")]
    title: std::borrow::Cow<'a, str>,
}

fn decode<'a, T: Deserialize<'a>>(value: &'a [u8], id: u64) -> Result<T, Error> {
    serde_json::from_slice(value).map_err(|source| Error::Corrupt {
        key: format!("alert {id}"),
        source,
    })
}

fn parse_ms(rfc3339: &str) -> u64 {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| u64::try_from(t.as_millisecond()).unwrap_or(0))
        .unwrap_or(0)
}

impl SledStore {
    /// Alerts, newest first, from the index that fits the filter, starting after `cursor`. A
    /// title search reads at most [`SEARCH_LIMIT`] alerts and then returns what it found with
    /// the cursor to go on from.
    pub fn alert_rows(
        &self,
        search: &AlertSearch,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<AlertRows, Error> {
        let tree = self.tree()?;
        let needle = search.text.as_ref().map(|t| t.to_lowercase());
        let mut items: Vec<AlertRow> = Vec::new();
        // Listing every alert, the index is the records themselves: no second lookup.
        let rows: Box<dyn Iterator<Item = Result<Row, Error>>> =
            match (&search.integration, search.status) {
                (None, None) => {
                    let end = match cursor {
                        Some(c) => alerts::alert_key(c).to_vec(),
                        None => vec![alerts::ALERT, 0xff],
                    };
                    Box::new(tree.range(vec![alerts::ALERT]..end).rev().map(|kv| {
                        let (k, v) = kv?;
                        Ok((u64_at(&k[1..]), Some(v)))
                    }))
                }
                (i, s) => Box::new(
                    alerts::newest_ids(&tree, i.as_deref(), s, cursor)
                        .map(|id| id.map(|id| (id, None))),
                ),
            };
        for (read, row) in rows.enumerate() {
            let (id, record) = row?;
            if items.len() == limit {
                return Ok(AlertRows {
                    next: items.last().map(|a| a.id),
                    items,
                    searched_out: false,
                });
            }
            if needle.is_some() && read == SEARCH_LIMIT {
                return Ok(AlertRows {
                    items,
                    next: Some(id + 1),
                    searched_out: true,
                });
            }
            let value = match record {
                Some(v) => Some(v),
                None => tree.get(alerts::alert_key(id))?,
            };
            let Some(value) = value else { continue };
            if let Some(n) = &needle {
                // Only the title is read to test it; the whole record only for a match.
                let t: TitleOnly = decode(&value, id)?;
                if !t.title.to_lowercase().contains(n.as_str()) {
                    continue;
                }
            }
            let r: Record = decode(&value, id)?;
            items.push(r.into());
        }
        Ok(AlertRows {
            items,
            next: None,
            searched_out: false,
        })
    }

    /// The alert's timeline (its log entries, users' and auto resolve's changes) and deliveries.
    /// `creating_log` is shown even when the alert predates the timeline index.
    pub fn history(&self, alert: u64, creating_log: u64) -> Result<History, Error> {
        let tree = self.tree()?;
        let mut history = History::default();
        let mut logs = Vec::new();
        let mut seen_creating = false;
        for kv in tree.scan_prefix(timeline_prefix(alert)).rev() {
            let (k, v) = kv?;
            let id = u64_at(&k[9..]);
            if let Some(ids) = linked(id, &v) {
                for id in ids.into_iter().rev() {
                    seen_creating |= id == creating_log;
                    if logs.len() + history.entries.len() < TIMELINE_LIMIT {
                        logs.push(id);
                    } else {
                        history.earlier += 1;
                    }
                }
                continue;
            }
            let note: Note = serde_json::from_slice(&v).map_err(|source| Error::Corrupt {
                key: format!("timeline note {alert}/{id}"),
                source,
            })?;
            match note {
                Note::Change { event, by, at_ms } => {
                    if logs.len() + history.entries.len() < TIMELINE_LIMIT {
                        history
                            .entries
                            .push(TimelineEntry::Change { at_ms, event, by });
                    } else {
                        history.earlier += 1;
                    }
                }
                Note::Delivery { destination, event } => {
                    history
                        .deliveries
                        .push(alert_delivery(&tree, id, destination, event)?);
                }
            }
        }
        // The creating entry has no timeline key (the record names it; older alerts have
        // none at all): it is the oldest entry.
        if !seen_creating {
            if history.earlier == 0 {
                logs.push(creating_log);
            } else if summary(&tree, creating_log)?.is_some() {
                history.earlier += 1;
            }
        }
        for id in logs {
            if let Some(head) = summary(&tree, id)? {
                history.entries.push(TimelineEntry::Log {
                    id,
                    at_ms: parse_ms(&head.received_at),
                    source: head.source,
                    remote_addr: head.remote_addr,
                    outcome: head.outcome,
                });
            }
        }
        history.entries.sort_by_key(TimelineEntry::at_ms);
        history.deliveries.reverse();
        Ok(history)
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
        let tree = self.tree()?;
        let mut items: Vec<LogRow> = Vec::new();
        for (read, index) in index::newest_first(&tree, integration, cursor).enumerate() {
            let index = index?;
            let id = index.id;
            if items.len() == limit {
                let next = items.last().map(|r| r.id);
                return Ok(LogRows {
                    items,
                    next,
                    searched_out: false,
                });
            }
            if outcome.is_some() && read == LOG_SCAN_LIMIT {
                return Ok(LogRows {
                    items,
                    next: Some(id + 1),
                    searched_out: true,
                });
            }
            if index.known && outcome.is_some() && index.outcome != outcome {
                continue;
            }
            let Some(head) = summary(&tree, id)? else {
                continue;
            };
            if outcome.is_some() && head.outcome != outcome {
                continue;
            }
            let alert_id = head.alert_id.as_deref().and_then(|a| a.parse().ok());
            let subject = match alert_id {
                // Entries from before summaries were kept: the alert's title, if any.
                Some(a) if head.summary.is_empty() => alerts::read_record(&tree, a)?
                    .map(|r| r.title)
                    .unwrap_or_default(),
                _ => head.summary,
            };
            items.push(LogRow {
                id,
                received_ms: index.received_ms,
                source: head.source,
                remote_addr: head.remote_addr,
                size: head.size,
                outcome: head.outcome,
                alert_id,
                error: head.error,
                subject,
            });
        }
        Ok(LogRows {
            items,
            next: None,
            searched_out: false,
        })
    }

    /// An integration's inputs received at or after `since_ms`, and its last input.
    pub fn integration_stats(
        &self,
        integration: &str,
        since_ms: u64,
    ) -> Result<IntegrationStats, Error> {
        let mut stats = IntegrationStats::default();
        let mut counts = [0usize; 8];
        for index in index::index(&self.tree()?, integration).rev() {
            let index = index?;
            stats.last_input_ms.get_or_insert(index.received_ms);
            if index.received_ms < since_ms {
                break;
            }
            stats.total += 1;
            counts[usize::from(outcome_byte(index.outcome))] += 1;
        }
        stats.by_outcome = (1..8)
            .filter_map(|b| byte_outcome(b).map(|o| (o, counts[usize::from(b)])))
            .filter(|(_, n)| *n > 0)
            .collect();
        Ok(stats)
    }
}

fn alert_delivery(
    tree: &sled::Tree,
    id: u64,
    destination: String,
    event: AlertEvent,
) -> Result<AlertDelivery, Error> {
    let mut d = AlertDelivery {
        id,
        destination,
        event,
        state: "delivered",
        attempts: 0,
        created_ms: None,
        next_ms: None,
        dead_ms: None,
        last_error: None,
    };
    for (kind, state) in [(outbox::PENDING, "pending"), (outbox::DEAD, "dead")] {
        if let Some(v) = tree.get(outbox::state_key(kind, id))? {
            let s: DeliveryState = outbox::decode(&v, id)?;
            d.state = state;
            d.attempts = s.attempts;
            d.created_ms = Some(s.created_ms);
            d.next_ms = (kind == outbox::PENDING).then_some(s.next_ms);
            d.dead_ms = s.dead_ms;
            d.last_error = s.last_error;
        }
    }
    Ok(d)
}
