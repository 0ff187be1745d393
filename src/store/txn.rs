//! One group commit's view of the sled store ([`Txn`]): the tree plus the group's own pending
//! changes, as the rules (`rules.rs`) and the writer's jobs see it through [`Engine`]. Every
//! lookup is a prefix seek from the newest end, so its cost does not grow with the number of
//! alerts.

use std::collections::HashMap;

use super::alerts::{
    self, AlertEvent, BY_THIRDPARTY, BY_TITLE, DEADLINE, Outcome, Record, alert_key, both_prefix,
    deadline_key, next_deadline, put_chunks, put_description, read_record, status_prefix,
    text_prefix, with_id,
};
use super::engine::{Engine, Key};
use super::fold::Folding;
use super::index;
use super::outbox::{self, DeliveryState};
use super::packed::{Dictionary, Prepacked};
use super::timeline::{self, Note};
use super::view::{Read, View};
use super::writer::DeliveryOutcome;
use super::writes::Writes;
use super::{Error, NewLog, logs, silences, u64_at};

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
    /// A log entry added to this alert's run.
    Link(u64),
    /// A log entry added to this integration's index run.
    Indexed(String),
}

/// One group commit's view of the alerts: the tree plus this group's not yet applied changes,
/// so that two inputs in one group see each other (the second folds into the first).
pub(super) struct Txn<'a> {
    tree: View<'a>,
    db: &'a sled::Db,
    /// Added to every id sled hands out (`Handles::id_offset`).
    pub id_offset: u64,
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
    /// Raw inputs put in this group whose entries are not all put yet, with what their
    /// entries' data is compressed with (`packed.rs`).
    dictionaries: Vec<Shared>,
    /// The raw input (as stored) that goes into its one entry's `L` value, until that entry
    /// is put: its id, which is the entry's.
    raw_with_entry: Option<(u64, super::entry_value::RawOwned)>,
    /// Per alert, the run of its timeline this group writes: the run's key id and its log
    /// entries (`timeline.rs`).
    runs: HashMap<u64, (u64, Vec<u64>)>,
    /// Per integration, the run of its log index this group writes ([`Txn::finish`]).
    index_runs: index::Runs,
}

/// A raw input some log entries still to come share: its id, its dictionary, how many left.
struct Shared {
    raw: u64,
    dictionary: Dictionary,
    left: u64,
}

impl<'a> Txn<'a> {
    pub fn new(tree: View<'a>, db: &'a sled::Db) -> Self {
        Self {
            tree,
            db,
            id_offset: 0,
            batch: Writes::default(),
            records: HashMap::new(),
            added: HashMap::new(),
            undo: Vec::new(),
            earliest_deadline: None,
            events: None,
            descriptions: HashMap::new(),
            folding: None,
            dictionaries: Vec::new(),
            raw_with_entry: None,
            runs: HashMap::new(),
            index_runs: index::Runs::default(),
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

    /// Completes the group's writes: each integration's index run for the entries put (one
    /// key per integration, `index.rs`). Called once every input of the group is applied and
    /// before anything reads the group's index (count retention).
    pub fn finish(&mut self) {
        std::mem::take(&mut self.index_runs).write(&mut self.batch);
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
                Undo::Indexed(integration) => self.index_runs.undo(&integration),
                Undo::Link(alert) => {
                    // The run's write before this one is the last in the batch again.
                    if let Some((_, ids)) = self.runs.get_mut(&alert) {
                        ids.pop();
                        if ids.is_empty() {
                            self.runs.remove(&alert);
                        }
                    }
                }
            }
        }
        if let Some(events) = &mut self.events {
            events.truncate(at.events);
        }
        self.earliest_deadline = at.earliest_deadline;
        // Only the request rolled back can have entries still to put.
        self.dictionaries.clear();
        self.raw_with_entry = None;
    }

    fn read(&self, id: u64) -> Result<Option<Record>, Error> {
        match self.records.get(&id) {
            Some(r) => Ok(Some(r.clone())),
            None => read_record(&self.tree, id),
        }
    }

    /// Ids under `prefix`, newest first, this group's additions before the tree's.
    fn newest_under(&self, prefix: &[u8], limit: usize) -> Result<Vec<u64>, Error> {
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

    fn index_under(&mut self, prefix: Vec<u8>, id: u64) {
        self.batch.insert(with_id(prefix.clone(), id), &[][..]);
        self.added.entry(prefix.clone()).or_default().push(id);
        self.undo.push(Undo::Index(prefix));
    }

    /// The description of an alert this group creates, for the outbox's payloads.
    fn describe(&mut self, id: u64, description: String) {
        if self.events.is_some() {
            self.descriptions.insert(id, description);
            self.undo.push(Undo::Description(id));
        }
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
        let id = new.id;
        let old = self.records.insert(id, new);
        self.undo.push(Undo::Record(id, old));
        Ok(())
    }

    fn key_prefix(integration: &str, key: Key<'_>) -> Vec<u8> {
        match key {
            Key::ThirdParty(t) => text_prefix(BY_THIRDPARTY, integration, t),
            Key::Title(t) => text_prefix(BY_TITLE, integration, t),
        }
    }

    /// Adds `ms` as a deadline of alert `id`.
    fn add_deadline(&mut self, ms: u64, id: u64) {
        self.batch.insert(&deadline_key(ms, id)[..], &[][..]);
        self.earliest_deadline = Some(self.earliest_deadline.map_or(ms, |e| e.min(ms)));
    }
}

impl Engine for Txn<'_> {
    fn generate_id(&mut self) -> Result<u64, Error> {
        Ok(self.db.generate_id()? + self.id_offset)
    }

    fn record(&mut self, id: u64) -> Result<Option<Record>, Error> {
        self.read(id)
    }

    fn description(&mut self, record: &Record) -> Result<String, Error> {
        if let Some(d) = self.descriptions.get(&record.id) {
            return Ok(d.clone());
        }
        alerts::description(&self.tree, record)
    }

    fn newest(&mut self, integration: &str, key: Key<'_>, limit: usize) -> Result<Vec<u64>, Error> {
        self.newest_under(&Self::key_prefix(integration, key), limit)
    }

    fn index(&mut self, integration: &str, key: Key<'_>, id: u64) -> Result<(), Error> {
        self.index_under(Self::key_prefix(integration, key), id);
        Ok(())
    }

    fn unindex(&mut self, integration: &str, key: Key<'_>, id: u64) -> Result<(), Error> {
        self.batch
            .remove(with_id(Self::key_prefix(integration, key), id));
        Ok(())
    }

    fn insert(&mut self, mut record: Record, description: &str) -> Result<(), Error> {
        let id = record.id;
        if let Some(ms) = record.auto_resolve_ms
            && record.status.still_there()
        {
            self.add_deadline(ms, id);
        }
        put_description(&mut self.batch, &mut record, description);
        self.describe(id, description.to_string());
        self.put(None, record)
    }

    fn update(&mut self, old: &Record, new: Record) -> Result<(), Error> {
        if new.status.still_there() && new.auto_resolve_ms != old.auto_resolve_ms {
            if let Some(ms) = old.auto_resolve_ms {
                self.batch.remove(&deadline_key(ms, old.id)[..]);
            }
            if let Some(ms) = new.auto_resolve_ms {
                self.add_deadline(ms, new.id);
            }
        }
        self.put(Some(old), new)
    }

    fn due(&mut self, now: u64, limit: usize) -> Result<Vec<u64>, Error> {
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

    fn next_deadline(&mut self, _now: u64, resolved: usize) -> Result<Option<u64>, Error> {
        // The resolved alerts' deadlines leave the tree with this batch: skip them.
        let next = next_deadline(&self.tree, resolved)?;
        Ok(match self.earliest_deadline {
            Some(e) => Some(next.map_or(e, |n| n.min(e))),
            None => next,
        })
    }

    fn storm_past(
        &mut self,
        integration: &str,
        storm: crate::domain::Storm,
        now: u64,
    ) -> Result<bool, Error> {
        Ok(self
            .folding
            .as_ref()
            .is_some_and(|f| f.past(integration, storm, now)))
    }

    fn event(&mut self, record: &Record, event: AlertEvent) {
        if let Some(events) = &mut self.events {
            events.push((record.clone(), event));
        }
    }

    fn note(&mut self, alert: u64, id: u64, note: &Note) -> Result<(), Error> {
        timeline::note(&mut self.batch, alert, id, note);
        Ok(())
    }

    fn put_raw(
        &mut self,
        raw: u64,
        bytes: &[u8],
        entries: u64,
        packed: Option<&Prepacked>,
    ) -> Result<(), Error> {
        let compressed;
        let compressed = match packed.and_then(|p| p.raw.as_ref()) {
            Some(c) => c,
            None => {
                compressed = super::packed::compress_raw(bytes)?;
                &compressed
            }
        };
        let stored = logs::stored_raw(bytes, compressed);
        if logs::raw_goes_with(entries, stored) {
            self.raw_with_entry = Some((raw, stored.into()));
        } else {
            logs::put_raw(&mut self.batch, raw, stored, entries);
        }
        // Entries packed by their submitter need no dictionary here.
        if packed.is_none() {
            self.dictionaries.push(Shared {
                raw,
                dictionary: Dictionary::new(bytes),
                left: entries,
            });
        }
        Ok(())
    }

    fn put_log(
        &mut self,
        id: u64,
        raw: u64,
        log: &NewLog,
        packed: Option<&Prepacked>,
        outcome: Option<Outcome>,
        alert: Option<u64>,
    ) -> Result<(), Error> {
        // Packed by the submitter, or with the raw input's dictionary, prepared once by
        // `put_raw` for all its entries and dropped with the last of them (an entry whose input
        // was not put here gets its own).
        let at = self.dictionaries.iter().position(|d| d.raw == raw);
        let own;
        let data = match (packed, at) {
            (Some(p), _) => logs::Data::Packed(&p.data),
            (None, Some(at)) => logs::Data::With(&self.dictionaries[at].dictionary),
            (None, None) => {
                own = Dictionary::new(&log.raw);
                logs::Data::With(&own)
            }
        };
        let placed = logs::Placed { id, raw, data };
        let raw_value = self.raw_with_entry.take_if(|(r, _)| *r == id);
        let raw_value = raw_value.as_ref().map(|(_, r)| r.as_value());
        logs::put_log(&mut self.batch, placed, log, outcome, alert, raw_value)?;
        let received_ms = super::unix_ms(log.received_at);
        self.index_runs
            .add(&log.integration, id, received_ms, outcome);
        self.undo.push(Undo::Indexed(log.integration.clone()));
        if let Some(at) = at {
            self.dictionaries[at].left = self.dictionaries[at].left.saturating_sub(1);
            if self.dictionaries[at].left == 0 {
                self.dictionaries.swap_remove(at);
            }
        }
        // The entry that created an alert is on its timeline without a key: the record names
        // it (`log_id`), and `views::history` shows it from there.
        let created = match alert {
            Some(a) => self.read(a)?.is_some_and(|r| r.log_id == id),
            None => false,
        };
        if !created && let Some(alert) = alert {
            // One key per alert per group: the group's run, written again with each entry (the
            // batch keeps the last write).
            let (run, ids) = self.runs.entry(alert).or_insert_with(|| (id, Vec::new()));
            ids.push(id);
            timeline::link(&mut self.batch, alert, *run, ids);
            self.undo.push(Undo::Link(alert));
        }
        Ok(())
    }

    fn add_delivery(
        &mut self,
        id: u64,
        state: &DeliveryState,
        payload: &[u8],
    ) -> Result<(), Error> {
        put_chunks(&mut self.batch, outbox::PAYLOAD, id, payload);
        self.batch.insert(
            &outbox::state_key(outbox::PENDING, id)[..],
            outbox::encode(state, id)?,
        );
        Ok(())
    }

    fn delivery_outcome(&mut self, id: u64, outcome: &DeliveryOutcome) -> Result<(), Error> {
        let pending = outbox::state_key(outbox::PENDING, id);
        match outcome {
            DeliveryOutcome::Delivered => {
                self.batch.remove(&pending[..]);
                logs::remove_chunks(&self.tree, &mut self.batch, outbox::PAYLOAD, id)?;
            }
            DeliveryOutcome::Retry(state) => {
                self.batch.insert(&pending[..], outbox::encode(state, id)?)
            }
            DeliveryOutcome::Dead(state) => {
                self.batch.remove(&pending[..]);
                self.batch.insert(
                    &outbox::state_key(outbox::DEAD, id)[..],
                    outbox::encode(state, id)?,
                );
            }
        }
        Ok(())
    }

    fn requeue_dead(&mut self, id: u64, now: u64) -> Result<Option<DeliveryState>, Error> {
        let dead = outbox::state_key(outbox::DEAD, id);
        let Some(v) = self.tree.get(dead)? else {
            return Ok(None);
        };
        let state = outbox::decode(&v, id)?.retried(now);
        self.batch.remove(&dead[..]);
        self.batch.insert(
            &outbox::state_key(outbox::PENDING, id)[..],
            outbox::encode(&state, id)?,
        );
        Ok(Some(state))
    }

    fn silence(&mut self, id: u64) -> Result<Option<silences::Record>, Error> {
        silences::read(&self.tree, id)
    }

    fn put_silence(&mut self, record: &silences::Record) -> Result<(), Error> {
        silences::write(&mut self.batch, record)
    }
}
