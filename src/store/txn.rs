//! One group commit's view of the alerts ([`Txn`]): the tree plus the group's own pending
//! changes, and the aggregation rules of spec step 6 applied through it. Every lookup is a
//! prefix seek from the newest end, so its cost does not grow with the number of alerts.

use std::collections::HashMap;

use super::alerts::{
    Action, AlertEvent, AlertRequest, BY_THIRDPARTY, BY_TITLE, DEADLINE, Outcome, Record,
    ResolvedBy, Status, Transition, UserChange, alert_key, both_prefix, deadline_key,
    put_description, read_record, status_prefix, text_prefix, with_id,
};
use super::fold::Folding;
use super::{Error, u64_at};

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

/// A group's writes in order; they become one sled `Batch` when the group is complete, and
/// can be cut back to a [`Savepoint`] until then (a sled `Batch` cannot).
#[derive(Default)]
pub(super) struct Writes {
    ops: Vec<(sled::IVec, Option<sled::IVec>)>,
}

impl Writes {
    pub fn insert(&mut self, key: impl Into<sled::IVec>, value: impl Into<sled::IVec>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl Into<sled::IVec>) {
        self.ops.push((key.into(), None));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The writes in order (what the journal records).
    pub fn ops(&self) -> &[(sled::IVec, Option<sled::IVec>)] {
        &self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn truncate(&mut self, len: usize) {
        self.ops.truncate(len);
    }

    /// The batch, later writes to a key replacing earlier ones.
    pub fn into_batch(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (key, value) in self.ops {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        batch
    }
}

/// A point in a group that [`Txn::rollback`] returns to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Savepoint {
    writes: usize,
    undo: usize,
    events: usize,
    earliest_deadline: Option<u64>,
}

enum Undo {
    /// The record before the change (`None`: it was not in the group).
    Record(u64, Option<Record>),
    /// An id added under this index prefix.
    Index(Vec<u8>),
    Description(u64),
}

/// One group commit's view of the alerts: the tree plus this group's not yet applied changes,
/// so that two inputs in one group see each other (the second folds into the first).
pub(super) struct Txn<'a> {
    tree: &'a sled::Tree,
    db: &'a sled::Db,
    pub batch: Writes,
    /// Alerts changed in this group, as they will be after it.
    records: HashMap<u64, Record>,
    /// Index keys added in this group, newest last, per prefix.
    added: HashMap<Vec<u8>, Vec<u64>>,
    /// What undoes the changes to `records`, `added` and `descriptions`, oldest first.
    undo: Vec<Undo>,
    /// The earliest auto-resolve deadline this group added.
    pub earliest_deadline: Option<u64>,
    /// When destinations are configured: each alert change of this group, in order, with the
    /// alert as it was right after it (the outbox reports them).
    pub events: Option<Vec<(Record, AlertEvent)>>,
    /// Descriptions of the alerts this group creates (not in the tree yet).
    pub descriptions: HashMap<u64, String>,
    /// The writer's storm windows and silences (`fold.rs`); none: no storm folding.
    pub folding: Option<Folding>,
    /// Set while applying a silenced input: its changes notify no destination.
    quiet: bool,
}

impl<'a> Txn<'a> {
    pub fn new(tree: &'a sled::Tree, db: &'a sled::Db) -> Self {
        Self {
            tree,
            db,
            batch: Writes::default(),
            records: HashMap::new(),
            added: HashMap::new(),
            undo: Vec::new(),
            earliest_deadline: None,
            events: None,
            descriptions: HashMap::new(),
            folding: None,
            quiet: false,
        }
    }

    /// Where [`Txn::rollback`] returns to: the group as it is now.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            writes: self.batch.len(),
            undo: self.undo.len(),
            events: self.events.as_ref().map_or(0, Vec::len),
            earliest_deadline: self.earliest_deadline,
        }
    }

    /// Forgets everything done since `at`: one input that failed leaves no trace in the group.
    pub fn rollback(&mut self, at: Savepoint) {
        self.batch.truncate(at.writes);
        while self.undo.len() > at.undo {
            match self.undo.pop().expect("undo entry") {
                Undo::Record(id, Some(old)) => drop(self.records.insert(id, old)),
                Undo::Record(id, None) => drop(self.records.remove(&id)),
                Undo::Index(prefix) => {
                    if let Some(ids) = self.added.get_mut(&prefix) {
                        ids.pop();
                    }
                }
                Undo::Description(id) => drop(self.descriptions.remove(&id)),
            }
        }
        if let Some(events) = &mut self.events {
            events.truncate(at.events);
        }
        self.earliest_deadline = at.earliest_deadline;
    }

    pub(super) fn event(&mut self, record: &Record, event: AlertEvent) {
        if self.quiet {
            return;
        }
        if let Some(events) = &mut self.events {
            events.push((record.clone(), event));
        }
    }

    pub fn tree(&self) -> &'a sled::Tree {
        self.tree
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
    pub(super) fn newest(&self, prefix: &[u8], limit: usize) -> Result<Vec<u64>, Error> {
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

    pub(super) fn index(&mut self, prefix: Vec<u8>, id: u64) {
        self.batch.insert(with_id(prefix.clone(), id), &[][..]);
        self.added.entry(prefix.clone()).or_default().push(id);
        self.undo.push(Undo::Index(prefix));
    }

    /// The description of an alert this group creates, for the outbox's payloads.
    pub(super) fn describe(&mut self, id: u64, description: String) {
        if self.events.is_some() {
            self.descriptions.insert(id, description);
            self.undo.push(Undo::Description(id));
        }
    }

    /// Writes `new` (and its status indexes, when its status changed from `old`'s).
    pub(super) fn put(&mut self, old: Option<&Record>, new: Record) -> Result<(), Error> {
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
        let id = new.id;
        let old = self.records.insert(id, new);
        self.undo.push(Undo::Record(id, old));
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
            dedup_keys: req
                .dedup_keys
                .iter()
                .map(|k| bounded(k, MAX_ID_BYTES))
                .collect(),
            title: bounded(&req.title, MAX_TITLE_BYTES),
            fold: super::fold::Fold {
                key: req.fold.key.as_deref().map(|k| bounded(k, MAX_TITLE_BYTES)),
                ..req.fold.clone()
            },
            ..req.clone()
        };
        self.quiet = req.fold.silence.is_some();
        match req.action {
            Action::Other => Ok((Outcome::Ignored, None)),
            Action::Create | Action::Drop => self.create(integration, req, log_id, now),
            Action::Resolve => {
                self.change_by_thirdparty(integration, &req.thirdparty_id, now, UserChange::Resolve)
            }
            Action::Acknowledge => self.change_by_thirdparty(
                integration,
                &req.thirdparty_id,
                now,
                UserChange::Acknowledge,
            ),
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
            && takes(&r, req)
        {
            return self.aggregate(r, now);
        }
        // Then by the input's further ids (a thread's Message-IDs, a webhook's `dedup_keys`).
        for key in &req.dedup_keys {
            if let Some(&id) = self
                .newest(&text_prefix(BY_THIRDPARTY, integration, key), 1)?
                .first()
                && let Some(r) = self.record(id)?
                && takes(&r, req)
            {
                self.index(tp_prefix, r.id);
                return self.aggregate(r, now);
            }
        }
        // Auto aggregate: a still-there alert with exactly this key (the title, unless
        // `aggregate_key`), created within the window. It takes the latest title.
        let key = req.fold.key.as_deref().unwrap_or(&req.title);
        if let Some(window) = req.aggregate {
            let from = now.saturating_sub(window.as_millis() as u64);
            for id in self.newest(&text_prefix(BY_TITLE, integration, key), TITLE_LOOKBACK)? {
                let Some(r) = self.record(id)? else { continue };
                if r.created_ms < from {
                    break;
                }
                if takes(&r, req) {
                    // Later inputs with this third-party id find the alert they folded into.
                    self.index(tp_prefix, r.id);
                    let mut titled = r.clone();
                    titled.title = req.title.clone();
                    return self.aggregate_into(r, titled, now);
                }
            }
        }
        if let Some(folded) = self.storm_fold(integration, req, tp_prefix.clone(), log_id, now)? {
            return Ok(folded);
        }
        let id = self.generate_id()?;
        // A silenced input's alert is dropped: kept, notifying no destination.
        let status = if quiet(req) {
            Status::Dropped
        } else {
            Status::Open
        };
        let auto_resolve_ms = req.auto_resolve.map(|d| now + d.as_millis() as u64);
        let mut record = Record {
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
            storm: None,
            description: None,
        };
        self.index(tp_prefix, id);
        for key in &req.dedup_keys {
            self.index(text_prefix(BY_THIRDPARTY, integration, key), id);
        }
        // Only auto aggregate looks alerts up by title: without a window, no title index.
        if req.aggregate.is_some() {
            self.index(text_prefix(BY_TITLE, integration, key), id);
        }
        if let Some(ms) = auto_resolve_ms
            && status.still_there()
        {
            self.batch.insert(&deadline_key(ms, id)[..], &[][..]);
            self.earliest_deadline = Some(self.earliest_deadline.map_or(ms, |e| e.min(ms)));
        }
        put_description(&mut self.batch, &mut record, &req.description);
        let outcome = if status == Status::Dropped {
            Outcome::Dropped
        } else {
            self.event(&record, AlertEvent::Create);
            Outcome::Created
        };
        self.describe(id, req.description.clone());
        self.put(None, record)?;
        Ok((outcome, Some(id)))
    }

    fn aggregate(&mut self, old: Record, now: u64) -> Result<(Outcome, Option<u64>), Error> {
        let new = old.clone();
        self.aggregate_into(old, new, now)
    }

    /// Counts one more input into `old`, which becomes `r` (with a new title, say).
    fn aggregate_into(
        &mut self,
        old: Record,
        mut r: Record,
        now: u64,
    ) -> Result<(Outcome, Option<u64>), Error> {
        r.dedup_count += 1;
        r.updated_ms = now;
        let id = r.id;
        // A storm alert's repeats page no one: it paged once, for all of them.
        if r.storm.is_none() {
            self.event(&r, AlertEvent::Aggregate);
        }
        self.put(Some(&old), r)?;
        Ok((Outcome::Aggregated, Some(id)))
    }

    /// Changes the newest alert with the third-party id that `change` applies to (by the
    /// integration).
    fn change_by_thirdparty(
        &mut self,
        integration: &str,
        thirdparty_id: &str,
        now: u64,
        change: UserChange,
    ) -> Result<(Outcome, Option<u64>), Error> {
        let prefix = text_prefix(BY_THIRDPARTY, integration, thirdparty_id);
        for id in self.newest(&prefix, THIRDPARTY_LOOKBACK)? {
            let Some(old) = self.record(id)? else {
                continue;
            };
            if old.storm.is_some() && old.thirdparty_id != thirdparty_id {
                let resolve = change == UserChange::Resolve;
                return self.storm_member(old, integration, thirdparty_id, resolve, now);
            }
            if let Transition::To(status) = change.from(old.status) {
                self.set_status(old, status, Some(ResolvedBy::Integration), now)?;
                let outcome = match change {
                    UserChange::Acknowledge => Outcome::Acknowledged,
                    UserChange::Resolve => Outcome::Resolved,
                };
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
                let note = super::timeline::Note::Change {
                    event,
                    by,
                    at_ms: now,
                };
                let id = self.generate_id()?;
                super::timeline::note(&mut self.batch, r.id, id, &note);
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

/// Whether `req` is dropped on arrival: by its rule's action, or by a silence in force.
fn quiet(req: &AlertRequest) -> bool {
    req.action == Action::Drop || req.fold.silence.is_some()
}

/// Whether the alert `r` takes `req` in as a repeat. A dropped alert takes only inputs that
/// would be dropped themselves: once its silence has ended (or the drop rule no longer
/// matches), a repeat of the problem makes a new alert that pages, instead of folding quietly
/// into the one nobody was told about.
fn takes(r: &Record, req: &AlertRequest) -> bool {
    r.status.still_there() && (r.status != Status::Dropped || quiet(req))
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
