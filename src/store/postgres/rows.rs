//! How the store's types sit in PostgreSQL rows: an alert's columns, enums as their serde text,
//! a log entry's summary and data documents, and the key hashes of `siren_alert_keys`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;

use super::super::alerts::{Outcome, Record};
use super::super::engine::Key;
use super::super::fold::StormMembers;
use super::super::logs::summary_of;
use super::super::{EmailSource, Error, LogEntry, LogSummary, NewLog, rfc3339};

/// The columns of an alert record (no description), in the order [`record`] reads them.
pub(super) const COLUMNS: &str = "id, integration, thirdparty_id, title, urgency, status, \
    dedup_count, created_ms, updated_ms, resolved_ms, resolved_by, log_id, auto_resolve_ms, \
    storm_members, storm_open";

/// An enum as the text serde gives it (`"open"`, `"auto"`).
pub(super) fn text<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

pub(super) fn parse<T: DeserializeOwned>(s: &str, what: &str) -> Result<T, Error> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|source| {
        Error::Corrupt {
            key: what.to_string(),
            source,
        }
    })
}

/// A JSON document of a row.
pub(super) fn json<T: DeserializeOwned>(
    s: &str,
    what: impl FnOnce() -> String,
) -> Result<T, Error> {
    serde_json::from_str(s).map_err(|source| Error::Corrupt {
        key: what(),
        source,
    })
}

/// A value as a JSON document for a row.
pub(super) fn to_json<T: Serialize>(v: &T, what: impl FnOnce() -> String) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|source| Error::Corrupt {
        key: what(),
        source,
    })
}

/// An alert row selected with [`COLUMNS`] (from column `at` on).
pub(super) fn record_at(row: &Row, at: usize) -> Result<Record, Error> {
    let id: i64 = row.get(at);
    let what = format!("alert {id}");
    let resolved_by: Option<String> = row.get(at + 10);
    let members: Option<i64> = row.get(at + 13);
    let open: Option<i64> = row.get(at + 14);
    Ok(Record {
        id: id as u64,
        integration: row.get(at + 1),
        thirdparty_id: row.get(at + 2),
        title: row.get(at + 3),
        urgency: parse(row.get(at + 4), &what)?,
        status: parse(row.get(at + 5), &what)?,
        dedup_count: row.get::<_, i64>(at + 6) as u64,
        created_ms: row.get::<_, i64>(at + 7) as u64,
        updated_ms: row.get::<_, i64>(at + 8) as u64,
        resolved_ms: row.get::<_, Option<i64>>(at + 9).map(|v| v as u64),
        resolved_by: resolved_by.map(|s| parse(&s, &what)).transpose()?,
        log_id: row.get::<_, i64>(at + 11) as u64,
        auto_resolve_ms: row.get::<_, Option<i64>>(at + 12).map(|v| v as u64),
        storm: members.map(|m| StormMembers {
            members: m as u64,
            open: open.unwrap_or(0) as u64,
        }),
        // PostgreSQL keeps every description in its own column (`Engine::description`).
        description: None,
    })
}

pub(super) fn record(row: &Row) -> Result<Record, Error> {
    record_at(row, 0)
}

/// FNV-1a of `parts` joined by NUL: the same on every node and every version.
pub(super) fn fnv(parts: &[&[u8]]) -> i64 {
    let step = |h: u64, b: u8| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h = step(h, 0);
        }
        h = part.iter().fold(h, |h, &b| step(h, b));
    }
    h as i64
}

/// A key's kind and text as `siren_alert_keys` has them.
pub(super) fn key_parts<'k>(key: Key<'k>) -> (i8, &'k str) {
    match key {
        Key::ThirdParty(t) => (b't' as i8, t),
        Key::Title(t) => (b'h' as i8, t),
    }
}

/// An entry's data as the `data` column holds it (as sled's `V` value).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredData {
    Data(serde_json::Value),
    Email(EmailSource),
}

/// The `summary` and `data` documents of a new log entry.
pub(super) fn log_documents(
    log: &NewLog,
    id: u64,
    outcome: Option<Outcome>,
    alert_id: Option<u64>,
) -> Result<(String, String), Error> {
    let summary = LogSummary {
        id: id.to_string(),
        integration: log.integration.clone(),
        received_at: rfc3339(log.received_at),
        source: log.source,
        remote_addr: log.remote_addr.clone(),
        size: log.raw.len() as u64,
        summary: summary_of(&log.data),
        outcome,
        alert_id: alert_id.map(|a| a.to_string()),
        error: log.error.clone(),
    };
    let data = match &log.email {
        Some(email) => StoredData::Email(email.clone()),
        None => StoredData::Data(log.data.clone()),
    };
    let what = || format!("log {id}");
    Ok((to_json(&summary, what)?, to_json(&data, what)?))
}

/// A list's view of a stored entry.
pub(super) fn summary(id: i64, json_text: &str) -> Result<LogSummary, Error> {
    json(json_text, || format!("log {id}"))
}

/// One stored entry with its data; `raw` is the input it was received as.
pub(super) fn entry(
    id: i64,
    summary_text: &str,
    data: &str,
    raw: &[u8],
) -> Result<LogEntry, Error> {
    let data = match json(data, || format!("log data {id}"))? {
        StoredData::Email(email) => email.rebuild(raw),
        StoredData::Data(data) => data,
    };
    Ok(LogEntry {
        summary: summary(id, summary_text)?,
        data,
    })
}
