//! Alerts in the store: the record, its indexes, and the aggregation rules of spec step 6,
//! applied by the writer inside one group commit through [`Txn`].
//!
//! | key                                              | value                     |
//! |--------------------------------------------------|---------------------------|
//! | `A` alert id                                     | the record (JSON, small)  |
//! | `D` alert id, chunk                              | description chunks        |
//! | `T` integration `\0` len(u32) third-party id, id | (by third-party id)       |
//! | `H` integration `\0` len(u32) title, id          | (by exact title)          |
//! | `N` integration `\0` id                          | (list by integration)     |
//! | `S` status, id                                   | (list by status)          |
//! | `Q` integration `\0` status, id                  | (list by both)            |
//! | `X` auto-resolve deadline (ms), id               | (auto-resolve timer)      |
//!
//! Every lookup is a prefix seek from the newest end: its cost does not grow with the number
//! of alerts. Ids are u64, big-endian in keys, so key order is creation order.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CHUNK, Error, chunk_key, chunk_prefix, rfc3339_ms, u64_at};
use crate::config::Urgency;

pub(super) const ALERT: u8 = b'A';
pub(super) const DESCRIPTION: u8 = b'D';
const BY_THIRDPARTY: u8 = b'T';
const BY_TITLE: u8 = b'H';
pub(super) const BY_INTEGRATION: u8 = b'N';
pub(super) const BY_STATUS: u8 = b'S';
pub(super) const BY_BOTH: u8 = b'Q';
pub(super) const DEADLINE: u8 = b'X';

/// How many same-title alerts, newest first, auto aggregate looks at. Only the newest can
/// match unless the window was widened since; this bounds the work either way.
const TITLE_LOOKBACK: usize = 8;
/// How many alerts per third-party id, newest first, resolve/acknowledge look through.
const THIRDPARTY_LOOKBACK: usize = 32;
/// Third-party ids and titles are in index keys and in the record: bounded, so that no sled
/// page can grow past the size at which sled moves it to a blob file it never syncs.
const MAX_ID_BYTES: usize = 512;
const MAX_TITLE_BYTES: usize = 4096;

/// `text` if it fits in `max` bytes; else a prefix and a hash of the whole, so that distinct
/// long values stay distinct (and the same long value always maps to the same key).
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut cut = max - 20;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…{hash:016x}", &text[..cut])
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolvedBy {
    Integration,
    Auto,
    User,
}

/// What an input asks of the alerts of its integration (spec step 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Resolve,
    Acknowledge,
    /// Create the alert with status `dropped` (a rule dropped it).
    Drop,
    /// Log it and change nothing.
    Other,
}

/// A change to an alert that destinations can be told about (`destinations[].events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEvent {
    Create,
    Acknowledge,
    Resolve,
    Aggregate,
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
    pub title: String,
    pub description: String,
    pub urgency: Urgency,
    pub aggregate: Option<Duration>,
    pub auto_resolve: Option<Duration>,
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

/// The stored record: small and rewritten on every change; the description lives apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Record {
    pub id: u64,
    pub integration: String,
    pub thirdparty_id: String,
    pub title: String,
    pub urgency: Urgency,
    pub status: Status,
    pub dedup_count: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub resolved_ms: Option<u64>,
    pub resolved_by: Option<ResolvedBy>,
    pub log_id: u64,
    pub auto_resolve_ms: Option<u64>,
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

fn scoped(kind: u8, integration: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(integration.len() + 16);
    k.push(kind);
    k.extend_from_slice(integration.as_bytes());
    k.push(0);
    k
}

/// `kind integration \0 len text` : the prefix of every alert indexed under `text`.
fn text_prefix(kind: u8, integration: &str, text: &str) -> Vec<u8> {
    let mut k = scoped(kind, integration);
    k.extend_from_slice(&(text.len() as u32).to_be_bytes());
    k.extend_from_slice(text.as_bytes());
    k
}

pub(super) fn integration_prefix(integration: &str) -> Vec<u8> {
    scoped(BY_INTEGRATION, integration)
}

pub(super) fn status_prefix(status: Status) -> Vec<u8> {
    vec![BY_STATUS, status.byte()]
}

pub(super) fn both_prefix(integration: &str, status: Status) -> Vec<u8> {
    let mut k = scoped(BY_BOTH, integration);
    k.push(status.byte());
    k
}

fn with_id(mut prefix: Vec<u8>, id: u64) -> Vec<u8> {
    prefix.extend_from_slice(&id.to_be_bytes());
    prefix
}

fn deadline_key(ms: u64, id: u64) -> [u8; 17] {
    let mut k = [0; 17];
    k[0] = DEADLINE;
    k[1..9].copy_from_slice(&ms.to_be_bytes());
    k[9..].copy_from_slice(&id.to_be_bytes());
    k
}

pub(super) fn read_record(tree: &sled::Tree, id: u64) -> Result<Option<Record>, Error> {
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

/// One group commit's view of the alerts: the tree plus this group's not yet applied changes,
/// so that two inputs in one group see each other (the second folds into the first).
pub(super) struct Txn<'a> {
    tree: &'a sled::Tree,
    db: &'a sled::Db,
    pub batch: sled::Batch,
    /// Alerts changed in this group, as they will be after it.
    records: HashMap<u64, Record>,
    /// Index keys added in this group, newest last, per prefix.
    added: HashMap<Vec<u8>, Vec<u64>>,
    /// The earliest auto-resolve deadline this group added.
    pub earliest_deadline: Option<u64>,
    /// When destinations are configured: each alert change of this group, in order, with the
    /// alert as it was right after it (the outbox reports them).
    pub events: Option<Vec<(Record, AlertEvent)>>,
    /// Descriptions of the alerts this group creates (not in the tree yet).
    pub descriptions: HashMap<u64, String>,
}

impl<'a> Txn<'a> {
    pub fn new(tree: &'a sled::Tree, db: &'a sled::Db) -> Self {
        Self {
            tree,
            db,
            batch: sled::Batch::default(),
            records: HashMap::new(),
            added: HashMap::new(),
            earliest_deadline: None,
            events: None,
            descriptions: HashMap::new(),
        }
    }

    fn event(&mut self, record: &Record, event: AlertEvent) {
        if let Some(events) = &mut self.events {
            events.push((record.clone(), event));
        }
    }

    pub fn generate_id(&self) -> Result<u64, Error> {
        Ok(self.db.generate_id()?)
    }

    pub fn record(&self, id: u64) -> Result<Option<Record>, Error> {
        match self.records.get(&id) {
            Some(r) => Ok(Some(r.clone())),
            None => read_record(self.tree, id),
        }
    }

    /// Ids under `prefix`, newest first, this group's additions before the tree's.
    fn newest(&self, prefix: &[u8], limit: usize) -> Result<Vec<u64>, Error> {
        let mut ids: Vec<u64> = self
            .added
            .get(prefix)
            .map(|v| v.iter().rev().copied().collect())
            .unwrap_or_default();
        for kv in self.tree.scan_prefix(prefix).keys().rev() {
            if ids.len() >= limit {
                break;
            }
            let k = kv?;
            let id = u64_at(&k[k.len() - 8..]);
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.truncate(limit);
        Ok(ids)
    }

    fn index(&mut self, prefix: Vec<u8>, id: u64) {
        self.batch.insert(with_id(prefix.clone(), id), &[][..]);
        self.added.entry(prefix).or_default().push(id);
    }

    /// Writes `new` (and its status indexes, when its status changed from `old`'s).
    fn put(&mut self, old: Option<&Record>, new: Record) -> Result<(), Error> {
        let status_changed = old.is_none_or(|o| o.status != new.status);
        if status_changed {
            if let Some(o) = old {
                self.batch.remove(with_id(status_prefix(o.status), o.id));
                self.batch
                    .remove(with_id(both_prefix(&o.integration, o.status), o.id));
            }
            self.batch
                .insert(with_id(status_prefix(new.status), new.id), &[][..]);
            self.batch.insert(
                with_id(both_prefix(&new.integration, new.status), new.id),
                &[][..],
            );
        }
        if !new.status.still_there()
            && let Some(ms) = new.auto_resolve_ms
        {
            self.batch.remove(&deadline_key(ms, new.id)[..]);
        }
        let json = serde_json::to_vec(&new).map_err(|source| Error::Corrupt {
            key: format!("alert {}", new.id),
            source,
        })?;
        self.batch.insert(&alert_key(new.id)[..], json);
        self.records.insert(new.id, new);
        Ok(())
    }

    /// Applies one input's request; returns what happened and to which alert.
    pub fn apply(
        &mut self,
        integration: &str,
        req: &AlertRequest,
        log_id: u64,
        now: u64,
    ) -> Result<(Outcome, Option<u64>), Error> {
        let req = &AlertRequest {
            thirdparty_id: bounded(&req.thirdparty_id, MAX_ID_BYTES),
            title: bounded(&req.title, MAX_TITLE_BYTES),
            ..req.clone()
        };
        match req.action {
            Action::Other => Ok((Outcome::Ignored, None)),
            Action::Create | Action::Drop => self.create(integration, req, log_id, now),
            Action::Resolve => {
                self.change_by_thirdparty(integration, &req.thirdparty_id, now, |r| {
                    r.status.still_there().then_some((
                        Status::Resolved,
                        Some(ResolvedBy::Integration),
                        Outcome::Resolved,
                    ))
                })
            }
            Action::Acknowledge => {
                self.change_by_thirdparty(integration, &req.thirdparty_id, now, |r| {
                    matches!(r.status, Status::Open | Status::Queued).then_some((
                        Status::Acknowledged,
                        None,
                        Outcome::Acknowledged,
                    ))
                })
            }
        }
    }

    fn create(
        &mut self,
        integration: &str,
        req: &AlertRequest,
        log_id: u64,
        now: u64,
    ) -> Result<(Outcome, Option<u64>), Error> {
        let tp_prefix = text_prefix(BY_THIRDPARTY, integration, &req.thirdparty_id);
        // Aggregation by third-party id: the newest alert with it, if still there.
        if let Some(&id) = self.newest(&tp_prefix, 1)?.first()
            && let Some(r) = self.record(id)?
            && r.status.still_there()
        {
            return self.aggregate(r, now);
        }
        // Auto aggregate: a still-there alert with exactly this title, created within the window.
        if let Some(window) = req.aggregate {
            let from = now.saturating_sub(window.as_millis() as u64);
            for id in self.newest(
                &text_prefix(BY_TITLE, integration, &req.title),
                TITLE_LOOKBACK,
            )? {
                let Some(r) = self.record(id)? else { continue };
                if r.created_ms < from {
                    break;
                }
                if r.status.still_there() {
                    // Later inputs with this third-party id find the alert they folded into.
                    self.index(tp_prefix, r.id);
                    return self.aggregate(r, now);
                }
            }
        }
        let id = self.generate_id()?;
        let status = if req.action == Action::Drop {
            Status::Dropped
        } else {
            Status::Open
        };
        let auto_resolve_ms = req.auto_resolve.map(|d| now + d.as_millis() as u64);
        let record = Record {
            id,
            integration: integration.to_string(),
            thirdparty_id: req.thirdparty_id.clone(),
            title: req.title.clone(),
            urgency: req.urgency,
            status,
            dedup_count: 0,
            created_ms: now,
            updated_ms: now,
            resolved_ms: None,
            resolved_by: None,
            log_id,
            auto_resolve_ms,
        };
        self.index(tp_prefix, id);
        // Only auto aggregate looks alerts up by title: without a window, no title index.
        if req.aggregate.is_some() {
            self.index(text_prefix(BY_TITLE, integration, &req.title), id);
        }
        self.index(integration_prefix(integration), id);
        if let Some(ms) = auto_resolve_ms
            && status.still_there()
        {
            self.batch.insert(&deadline_key(ms, id)[..], &[][..]);
            self.earliest_deadline = Some(self.earliest_deadline.map_or(ms, |e| e.min(ms)));
        }
        put_chunks(&mut self.batch, DESCRIPTION, id, req.description.as_bytes());
        let outcome = if status == Status::Dropped {
            Outcome::Dropped
        } else {
            self.event(&record, AlertEvent::Create);
            Outcome::Created
        };
        if self.events.is_some() {
            self.descriptions.insert(id, req.description.clone());
        }
        self.put(None, record)?;
        Ok((outcome, Some(id)))
    }

    fn aggregate(&mut self, old: Record, now: u64) -> Result<(Outcome, Option<u64>), Error> {
        let mut r = old.clone();
        r.dedup_count += 1;
        r.updated_ms = now;
        let id = r.id;
        self.event(&r, AlertEvent::Aggregate);
        self.put(Some(&old), r)?;
        Ok((Outcome::Aggregated, Some(id)))
    }

    /// Changes the newest alert with the third-party id that `change` accepts.
    fn change_by_thirdparty(
        &mut self,
        integration: &str,
        thirdparty_id: &str,
        now: u64,
        change: impl Fn(&Record) -> Option<(Status, Option<ResolvedBy>, Outcome)>,
    ) -> Result<(Outcome, Option<u64>), Error> {
        let prefix = text_prefix(BY_THIRDPARTY, integration, thirdparty_id);
        for id in self.newest(&prefix, THIRDPARTY_LOOKBACK)? {
            let Some(old) = self.record(id)? else {
                continue;
            };
            if let Some((status, by, outcome)) = change(&old) {
                self.set_status(old, status, by, now)?;
                return Ok((outcome, Some(id)));
            }
        }
        Ok((Outcome::Ignored, None))
    }

    pub fn set_status(
        &mut self,
        old: Record,
        status: Status,
        by: Option<ResolvedBy>,
        now: u64,
    ) -> Result<Record, Error> {
        let mut r = old.clone();
        r.status = status;
        r.updated_ms = now;
        if status == Status::Resolved {
            r.resolved_ms = Some(now);
            r.resolved_by = by;
        }
        let event = match status {
            Status::Resolved => Some(AlertEvent::Resolve),
            Status::Acknowledged => Some(AlertEvent::Acknowledge),
            Status::Queued | Status::Open | Status::Dropped => None,
        };
        if let Some(event) = event {
            self.event(&r, event);
            // An integration's change is on the timeline as its log entry; these have none.
            if let Some(by @ (ResolvedBy::User | ResolvedBy::Auto)) = by {
                let note = super::views::Note::Change {
                    event,
                    by,
                    at_ms: now,
                };
                let id = self.generate_id()?;
                super::views::note(&mut self.batch, r.id, id, &note);
            }
        }
        self.put(Some(&old), r.clone())?;
        Ok(r)
    }

    /// Alerts whose auto-resolve deadline is at or before `now`, oldest deadline first.
    pub fn due(&self, now: u64, limit: usize) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        for k in self.tree.scan_prefix([DEADLINE]).keys() {
            let k = k?;
            if u64_at(&k[1..9]) > now || out.len() >= limit {
                break;
            }
            out.push(u64_at(&k[9..17]));
        }
        Ok(out)
    }
}

/// The earliest auto-resolve deadline in the tree after the first `skip`, if any.
pub(super) fn next_deadline(tree: &sled::Tree, skip: usize) -> Result<Option<u64>, Error> {
    match tree.scan_prefix([DEADLINE]).keys().nth(skip) {
        Some(k) => Ok(Some(u64_at(&k?[1..9]))),
        None => Ok(None),
    }
}

pub(super) fn put_chunks(batch: &mut sled::Batch, kind: u8, id: u64, bytes: &[u8]) {
    if bytes.is_empty() {
        batch.insert(&chunk_key(kind, id, 0)[..], &[][..]);
    }
    for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
        batch.insert(&chunk_key(kind, id, n as u32)[..], chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn long_keys_are_bounded_and_stay_distinct() {
        assert_eq!(bounded("short", 512), "short");
        let a = format!("{}a", "x".repeat(40_000));
        let b = format!("{}b", "x".repeat(40_000));
        assert!(bounded(&a, 512).len() <= 512);
        assert_ne!(bounded(&a, 512), bounded(&b, 512));
        assert_eq!(bounded(&a, 512), bounded(&a, 512));
        let wide = "é".repeat(1000);
        assert!(bounded(&wide, 512).len() <= 512);
    }
}
