//! Alerts in the store: the record, its indexes, and the aggregation rules of spec step 6,
//! applied by the writer inside one group commit through [`Txn`].
//!
//! | key                                              | value                     |
//! |--------------------------------------------------|---------------------------|
//! | `A` alert id                                     | the record (JSON, small), with a short description |
//! | `D` alert id, chunk                              | a longer description's chunks |
//! | `T` integration `\0` len(u32) third-party id, id | (by third-party id)       |
//! | `H` integration `\0` len(u32) title, id          | (by exact title)          |
//! | `N` integration `\0` id                          | (list by integration; no longer written: `Q` is merged) |
//! | `S` status, id                                   | (list by status)          |
//! | `Q` integration `\0` status, id                  | (list by both)            |
//! | `X` auto-resolve deadline (ms), id               | (auto-resolve timer)      |
//!
//! Every lookup is a prefix seek from the newest end: its cost does not grow with the number
//! of alerts. Ids are u64, big-endian in keys, so key order is creation order.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::view::Read;
use super::writes::Writes;
use super::{CHUNK, Error, chunk_key, chunk_prefix, rfc3339_ms, u64_at};
use crate::domain::Urgency;
pub(super) use crate::domain::{Action, AlertEvent, ResolvedBy};

pub(super) const ALERT: u8 = b'A';
pub(super) const DESCRIPTION: u8 = b'D';
pub(super) const BY_THIRDPARTY: u8 = b'T';
pub(super) const BY_TITLE: u8 = b'H';
pub(super) const BY_STATUS: u8 = b'S';
pub(super) const BY_BOTH: u8 = b'Q';
pub(super) const DEADLINE: u8 = b'X';

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Open,
    Acknowledged,
    Dropped,
    Resolved,
}

impl Status {
    pub(super) const ALL: [Status; 5] = [
        Status::Queued,
        Status::Open,
        Status::Acknowledged,
        Status::Dropped,
        Status::Resolved,
    ];

    /// Queued, open, acknowledged and dropped alerts are "still there" for aggregation.
    pub fn still_there(self) -> bool {
        self != Status::Resolved
    }

    pub(super) fn byte(self) -> u8 {
        match self {
            Status::Queued => b'q',
            Status::Open => b'o',
            Status::Acknowledged => b'a',
            Status::Dropped => b'd',
            Status::Resolved => b'r',
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// A status change asked of one alert: by a user (the API), by an integration's event, or by
/// the auto-resolve timer. [`UserChange::from`] is the one policy for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    Acknowledge,
    Resolve,
}

/// Where a [`UserChange`] leads from an alert's current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The alert moves to this status.
    To(Status),
    /// The alert already has the status asked for: nothing changes.
    Already,
    /// The change does not apply to an alert in this status (acknowledging a resolved or
    /// dropped alert).
    Refused,
}

impl UserChange {
    /// The status the change leads to.
    pub fn target(self) -> Status {
        match self {
            UserChange::Acknowledge => Status::Acknowledged,
            UserChange::Resolve => Status::Resolved,
        }
    }

    /// What the change does to an alert whose status is `status`: anything not yet resolved
    /// can be resolved; only a queued or open alert can be acknowledged.
    pub fn from(self, status: Status) -> Transition {
        match (self, status) {
            (_, s) if s == self.target() => Transition::Already,
            (UserChange::Acknowledge, Status::Open | Status::Queued) => {
                Transition::To(Status::Acknowledged)
            }
            (UserChange::Acknowledge, _) => Transition::Refused,
            (UserChange::Resolve, _) => Transition::To(Status::Resolved),
        }
    }
}

/// What happened to an input (Log JSON `outcome`, webhook results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Aggregated,
    Resolved,
    Acknowledged,
    Ignored,
    Dropped,
    Rejected,
}

/// An input's request for an alert change, with the integration settings that shape it.
#[derive(Debug, Clone)]
pub struct AlertRequest {
    pub action: Action,
    pub thirdparty_id: String,
    /// Further ids a `create` aggregates on, and a new alert is known by (and resolved by).
    pub dedup_keys: Vec<String>,
    pub title: String,
    pub description: String,
    pub urgency: Urgency,
    pub aggregate: Option<Duration>,
    pub auto_resolve: Option<Duration>,
    /// The title window's key, storm folding and silences (`fold.rs`).
    pub fold: super::fold::Fold,
}

/// An alert as the API and destinations show it (spec "Alert JSON").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub integration: String,
    pub thirdparty_id: String,
    pub title: String,
    pub description: String,
    pub urgency: Urgency,
    pub status: Status,
    pub dedup_count: u64,
    pub created_at: String,
    pub updated_at: String,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<ResolvedBy>,
    pub log_id: String,
}

/// Descriptions up to this size live in the record (a key fewer per alert); longer ones under
/// `D`, so that the record, rewritten on every change, stays small.
const INLINE_DESCRIPTION: usize = 512;

/// The stored record: small and rewritten on every change; a long description lives apart.
/// Field names are short and unset options left out: sled writes every byte of a record
/// twice or more. Records from before read through the long names (`alias`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Record {
    pub id: u64,
    #[serde(rename = "i", alias = "integration")]
    pub integration: String,
    #[serde(rename = "p", alias = "thirdparty_id")]
    pub thirdparty_id: String,
    #[serde(rename = "t", alias = "title")]
    pub title: String,
    #[serde(rename = "u", alias = "urgency")]
    pub urgency: Urgency,
    #[serde(rename = "s", alias = "status")]
    pub status: Status,
    #[serde(
        rename = "n",
        alias = "dedup_count",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub dedup_count: u64,
    #[serde(rename = "c", alias = "created_ms")]
    pub created_ms: u64,
    #[serde(rename = "m", alias = "updated_ms")]
    pub updated_ms: u64,
    #[serde(
        rename = "r",
        alias = "resolved_ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resolved_ms: Option<u64>,
    #[serde(
        rename = "b",
        alias = "resolved_by",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resolved_by: Option<ResolvedBy>,
    #[serde(rename = "l", alias = "log_id")]
    pub log_id: u64,
    #[serde(
        rename = "x",
        alias = "auto_resolve_ms",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_resolve_ms: Option<u64>,
    /// A storm alert's members (`fold.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm: Option<super::fold::StormMembers>,
    /// The description, when short (else under `D`; records from before have none).
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Stores a new alert's description: in its record when short, else under `D`.
pub(super) fn put_description(batch: &mut Writes, record: &mut Record, description: &str) {
    if description.len() <= INLINE_DESCRIPTION {
        record.description = Some(description.to_string());
    } else {
        put_chunks(batch, DESCRIPTION, record.id, description.as_bytes());
    }
}

/// An alert's description, from its record or from `D`.
pub(super) fn description(tree: &impl Read, record: &Record) -> Result<String, Error> {
    if let Some(d) = &record.description {
        return Ok(d.clone());
    }
    let bytes = super::read_chunks(tree, DESCRIPTION, record.id)?.unwrap_or_default();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl Record {
    pub fn into_alert(self, description: String) -> Alert {
        Alert {
            id: self.id.to_string(),
            integration: self.integration,
            thirdparty_id: self.thirdparty_id,
            title: self.title,
            description,
            urgency: self.urgency,
            status: self.status,
            dedup_count: self.dedup_count,
            created_at: rfc3339_ms(self.created_ms),
            updated_at: rfc3339_ms(self.updated_ms),
            resolved_at: self.resolved_ms.map(rfc3339_ms),
            resolved_by: self.resolved_by,
            log_id: self.log_id.to_string(),
        }
    }
}

pub(super) fn alert_key(id: u64) -> [u8; 9] {
    chunk_prefix(ALERT, id)
}

pub(super) fn scoped(kind: u8, integration: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(integration.len() + 16);
    k.push(kind);
    k.extend_from_slice(integration.as_bytes());
    k.push(0);
    k
}

/// `kind integration \0 len text` : the prefix of every alert indexed under `text`.
pub(super) fn text_prefix(kind: u8, integration: &str, text: &str) -> Vec<u8> {
    let mut k = scoped(kind, integration);
    k.extend_from_slice(&(text.len() as u32).to_be_bytes());
    k.extend_from_slice(text.as_bytes());
    k
}

pub(super) fn status_prefix(status: Status) -> Vec<u8> {
    vec![BY_STATUS, status.byte()]
}

pub(super) fn both_prefix(integration: &str, status: Status) -> Vec<u8> {
    let mut k = scoped(BY_BOTH, integration);
    k.push(status.byte());
    k
}

/// Ids of alerts, newest first, older than `cursor`, from the index that fits the filter. An
/// integration's alerts have no index of their own (a key fewer per alert): its status
/// indexes (`Q`) are merged, five ranges read side by side.
pub(super) fn newest_ids(
    tree: &sled::Tree,
    integration: Option<&str>,
    status: Option<Status>,
    cursor: Option<u64>,
) -> impl Iterator<Item = Result<u64, Error>> + use<> {
    let prefixes = match (integration, status) {
        (Some(i), Some(s)) => vec![both_prefix(i, s)],
        (Some(i), None) => Status::ALL.iter().map(|&s| both_prefix(i, s)).collect(),
        (None, Some(s)) => vec![status_prefix(s)],
        (None, None) => vec![vec![ALERT]],
    };
    let mut runs: Vec<_> = prefixes
        .into_iter()
        .map(|prefix| {
            let mut end = prefix.clone();
            match cursor {
                Some(c) => end.extend_from_slice(&c.to_be_bytes()),
                None => end.push(0xff),
            }
            let n = prefix.len();
            tree.range(prefix..end)
                .keys()
                .rev()
                .map(move |k| Ok(u64_at(&k?[n..])))
                .peekable()
        })
        .collect();
    std::iter::from_fn(move || {
        let mut newest: Option<(usize, u64)> = None;
        for (i, run) in runs.iter_mut().enumerate() {
            match run.peek() {
                None => {}
                Some(Err(_)) => return run.next(),
                Some(Ok(id)) if newest.is_none_or(|(_, n)| *id > n) => newest = Some((i, *id)),
                Some(Ok(_)) => {}
            }
        }
        newest.and_then(|(i, _)| runs[i].next())
    })
}

pub(super) fn with_id(mut prefix: Vec<u8>, id: u64) -> Vec<u8> {
    prefix.extend_from_slice(&id.to_be_bytes());
    prefix
}

pub(super) fn deadline_key(ms: u64, id: u64) -> [u8; 17] {
    let mut k = [0; 17];
    k[0] = DEADLINE;
    k[1..9].copy_from_slice(&ms.to_be_bytes());
    k[9..].copy_from_slice(&id.to_be_bytes());
    k
}

pub(super) fn read_record(tree: &impl Read, id: u64) -> Result<Option<Record>, Error> {
    match tree.get(alert_key(id))? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|source| Error::Corrupt {
                key: format!("alert {id}"),
                source,
            }),
    }
}

/// The earliest auto-resolve deadline in the tree after the first `skip`, if any.
pub(super) fn next_deadline(tree: &impl Read, skip: usize) -> Result<Option<u64>, Error> {
    match tree.scan_prefix([DEADLINE]).keys().nth(skip) {
        Some(k) => Ok(Some(u64_at(&k?[1..9]))),
        None => Ok(None),
    }
}

pub(super) fn put_chunks(batch: &mut Writes, kind: u8, id: u64, bytes: &[u8]) {
    if bytes.is_empty() {
        batch.insert(&chunk_key(kind, id, 0)[..], &[][..]);
    }
    for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
        batch.insert(&chunk_key(kind, id, n as u32)[..], chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::{Status, Transition, UserChange};

    #[test]
    fn acknowledge_applies_to_queued_and_open_alerts_and_resolve_to_any_unresolved_one() {
        use Status::*;
        let cases = [
            (
                UserChange::Acknowledge,
                Queued,
                Transition::To(Acknowledged),
            ),
            (UserChange::Acknowledge, Open, Transition::To(Acknowledged)),
            (UserChange::Acknowledge, Acknowledged, Transition::Already),
            (UserChange::Acknowledge, Dropped, Transition::Refused),
            (UserChange::Acknowledge, Resolved, Transition::Refused),
            (UserChange::Resolve, Queued, Transition::To(Resolved)),
            (UserChange::Resolve, Open, Transition::To(Resolved)),
            (UserChange::Resolve, Acknowledged, Transition::To(Resolved)),
            (UserChange::Resolve, Dropped, Transition::To(Resolved)),
            (UserChange::Resolve, Resolved, Transition::Already),
        ];
        for (change, status, want) in cases {
            assert_eq!(change.from(status), want, "{change:?} from {status:?}");
        }
    }
}
