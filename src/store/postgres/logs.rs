//! Log entries on PostgreSQL: the JSON document `siren_logs.entry` holds, written by the
//! writer and read back by lists (the summary only) and by one entry's detail (with its data,
//! an e-mail's rebuilt from the `raw` column as on sled).

use serde::{Deserialize, Serialize};

use super::super::logs::summary_of;
use super::super::{EmailSource, Error, LogEntry, LogSummary, NewLog, Outcome, rfc3339};

/// A log entry as stored: the summary's fields, and `data` unless `email` can rebuild it.
#[derive(Serialize)]
struct StoredLog<'a> {
    #[serde(flatten)]
    summary: LogSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a EmailSource>,
}

/// [`StoredLog`] as read back. Entries written before `summary` was stored read with an empty
/// one; a list never parses data or rebuilds an e-mail to make it.
#[derive(Deserialize)]
struct ReadLog {
    #[serde(flatten)]
    summary: LogSummary,
    #[serde(default)]
    data: serde_json::Value,
    email: Option<EmailSource>,
}

fn corrupt(id: i64) -> impl FnOnce(serde_json::Error) -> Error {
    move |source| Error::Corrupt {
        key: format!("log {id}"),
        source,
    }
}

/// The `entry` document of a new log entry.
pub(super) fn stored(
    log: &NewLog,
    id: u64,
    outcome: Option<Outcome>,
    alert_id: Option<u64>,
) -> Result<String, Error> {
    let entry = StoredLog {
        summary: LogSummary {
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
        },
        data: log.email.is_none().then_some(&log.data),
        email: log.email.as_ref(),
    };
    serde_json::to_string(&entry).map_err(corrupt(id as i64))
}

/// A list's view of a stored entry: its summary, without data (unknown fields are skipped).
pub(super) fn summary(id: i64, json: &str) -> Result<LogSummary, Error> {
    serde_json::from_str(json).map_err(corrupt(id))
}

/// One stored entry with its data; `raw` is the input it was received as.
pub(super) fn entry(id: i64, json: &str, raw: &[u8]) -> Result<LogEntry, Error> {
    let stored: ReadLog = serde_json::from_str(json).map_err(corrupt(id))?;
    let data = match &stored.email {
        Some(email) => email.rebuild(raw),
        None => stored.data,
    };
    Ok(LogEntry {
        summary: stored.summary,
        data,
    })
}
