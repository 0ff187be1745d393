//! The alert rules of spec step 6, once for both engines: an input's create aggregates into a
//! still-there alert with its third-party id, then one with any of its further ids, then one
//! whose title window key matches within the window, then into its integration's storm alert
//! (`fold.rs`), and else makes a new alert; resolve and acknowledge change the newest alert with
//! the third-party id they apply to; users and auto resolve change alerts by id. [`Rules`] runs
//! them through the group's [`Engine`]. Every lookup is bounded ([`TITLE_LOOKBACK`],
//! [`THIRDPARTY_LOOKBACK`]), so its cost does not grow with the number of alerts.

use super::Error;
use super::alerts::{
    Action, AlertEvent, AlertRequest, Outcome, Record, ResolvedBy, Status, Transition, UserChange,
};
use super::engine::{Engine, Key};
use super::fold::Fold;
use super::timeline::Note;

/// How many same-title alerts, newest first, auto aggregate looks at. Only the newest can
/// match unless the window was widened since; this bounds the work either way.
const TITLE_LOOKBACK: usize = 8;
/// How many alerts per third-party id, newest first, resolve/acknowledge look through.
const THIRDPARTY_LOOKBACK: usize = 32;
/// Third-party ids and titles are in index keys and in the record: bounded, so that no sled
/// page can grow past the size at which sled moves it to a blob file it never syncs (and no
/// PostgreSQL index entry past its page).
const MAX_ID_BYTES: usize = 512;
const MAX_TITLE_BYTES: usize = 4096;

/// `text` if it fits in `max` bytes; else a prefix and a hash of the whole, so that distinct
/// long values stay distinct (and the same long value always maps to the same key).
pub(super) fn bounded(text: &str, max: usize) -> String {
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

/// The request as the rules see it: its ids, title and title window key bounded.
pub(super) fn bounded_request(req: &AlertRequest) -> AlertRequest {
    AlertRequest {
        thirdparty_id: bounded(&req.thirdparty_id, MAX_ID_BYTES),
        dedup_keys: req
            .dedup_keys
            .iter()
            .map(|k| bounded(k, MAX_ID_BYTES))
            .collect(),
        title: bounded(&req.title, MAX_TITLE_BYTES),
        fold: Fold {
            key: req.fold.key.as_deref().map(|k| bounded(k, MAX_TITLE_BYTES)),
            ..req.fold.clone()
        },
        ..req.clone()
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

/// The rules applied through one group's engine.
pub(super) struct Rules<'e, E> {
    pub(super) e: &'e mut E,
    /// Set while applying a silenced input: its changes notify no destination.
    quiet: bool,
}

impl<'e, E: Engine> Rules<'e, E> {
    pub fn new(e: &'e mut E) -> Self {
        Rules { e, quiet: false }
    }

    /// An alert change for the outbox, unless the input is silenced.
    pub(super) fn event(&mut self, record: &Record, event: AlertEvent) {
        if !self.quiet {
            self.e.event(record, event);
        }
    }

    /// Applies one input's request; returns what happened and to which alert.
    pub fn apply(
        &mut self,
        integration: &str,
        req: &AlertRequest,
        log_id: u64,
        now: u64,
    ) -> Result<(Outcome, Option<u64>), Error> {
        let req = &bounded_request(req);
        self.quiet = req.fold.silence.is_some();
        let applied = match req.action {
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
        };
        self.quiet = false;
        applied
    }

    /// The newest alert under `key` if it takes `req` in ([`takes`]).
    fn taking(
        &mut self,
        integration: &str,
        key: Key<'_>,
        req: &AlertRequest,
    ) -> Result<Option<Record>, Error> {
        match self.e.newest(integration, key, 1)?.first() {
            Some(&id) => Ok(self.e.record(id)?.filter(|r| takes(r, req))),
            None => Ok(None),
        }
    }

    fn create(
        &mut self,
        integration: &str,
        req: &AlertRequest,
        log_id: u64,
        now: u64,
    ) -> Result<(Outcome, Option<u64>), Error> {
        let tp = Key::ThirdParty(&req.thirdparty_id);
        // Aggregation by third-party id: the newest alert with it, if still there.
        if let Some(r) = self.taking(integration, tp, req)? {
            return self.aggregate(r, now);
        }
        // Then by the input's further ids (a thread's Message-IDs, a webhook's `dedup_keys`).
        for key in &req.dedup_keys {
            if let Some(r) = self.taking(integration, Key::ThirdParty(key), req)? {
                self.e.index(integration, tp, r.id)?;
                return self.aggregate(r, now);
            }
        }
        // Auto aggregate: a still-there alert with exactly this key (the title, unless
        // `aggregate_key`), created within the window. It takes the latest title.
        let key = req.fold.key.as_deref().unwrap_or(&req.title);
        if let Some(window) = req.aggregate {
            let from = now.saturating_sub(window.as_millis() as u64);
            for id in self
                .e
                .newest(integration, Key::Title(key), TITLE_LOOKBACK)?
            {
                let Some(r) = self.e.record(id)? else {
                    continue;
                };
                if r.created_ms < from {
                    break;
                }
                if takes(&r, req) {
                    // Later inputs with this third-party id find the alert they folded into.
                    self.e.index(integration, tp, r.id)?;
                    let mut titled = r.clone();
                    titled.title = req.title.clone();
                    return self.aggregate_into(r, titled, now);
                }
            }
        }
        if let Some(folded) = self.storm_fold(integration, req, log_id, now)? {
            return Ok(folded);
        }
        let id = self.e.generate_id()?;
        // A silenced input's alert is dropped: kept, notifying no destination.
        let status = if quiet(req) {
            Status::Dropped
        } else {
            Status::Open
        };
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
            auto_resolve_ms: req.auto_resolve.map(|d| now + d.as_millis() as u64),
            storm: None,
            description: None,
        };
        self.e.index(integration, tp, id)?;
        for key in &req.dedup_keys {
            self.e.index(integration, Key::ThirdParty(key), id)?;
        }
        // Only auto aggregate looks alerts up by title: without a window, no title index.
        if req.aggregate.is_some() {
            self.e.index(integration, Key::Title(key), id)?;
        }
        let outcome = if status == Status::Dropped {
            Outcome::Dropped
        } else {
            self.event(&record, AlertEvent::Create);
            Outcome::Created
        };
        self.e.insert(record, &req.description)?;
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
        self.e.update(&old, r)?;
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
        let key = Key::ThirdParty(thirdparty_id);
        for id in self.e.newest(integration, key, THIRDPARTY_LOOKBACK)? {
            let Some(old) = self.e.record(id)? else {
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

    /// Moves `old` to `status` (resolved: by `by`), telling the outbox and, for a user's or
    /// auto resolve's change, the alert's timeline.
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
                let note = Note::Change {
                    event,
                    by,
                    at_ms: now,
                };
                let id = self.e.generate_id()?;
                self.e.note(r.id, id, &note)?;
            }
        }
        self.e.update(&old, r.clone())?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::alerts::{AlertEvent, UserChange};
    use super::super::apply::Group;
    use super::super::jobs::{Answer, Request};
    use super::super::txn::Txn;
    use super::super::{NewLog, Source};
    use super::*;

    fn input(tp: &str, silence: Option<u64>) -> NewLog {
        NewLog {
            integration: "i".into(),
            received_at: std::time::SystemTime::now(),
            source: Source::Http,
            remote_addr: "127.0.0.1:1".into(),
            data: serde_json::json!({}),
            alert: Some(AlertRequest {
                action: Action::Create,
                thirdparty_id: tp.into(),
                dedup_keys: Vec::new(),
                title: tp.into(),
                description: String::new(),
                urgency: crate::domain::Urgency::High,
                aggregate: None,
                auto_resolve: None,
                fold: Fold {
                    silence,
                    ..Fold::default()
                },
            }),
            outcome: None,
            error: None,
            raw: Arc::from(&b"{}"[..]),
            email: None,
        }
    }

    /// Regression: a silenced input left the rest of its group commit quiet, so a user's
    /// acknowledge committed with it notified no destination.
    #[test]
    fn a_silenced_input_leaves_the_changes_after_it_in_its_group_heard() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("siren").unwrap();
        let mut txn = Txn::new(super::super::view::View::plain(&tree), &db);
        txn.events = Some(Vec::new());
        let mut group = Group::new(txn, 1_000);
        let Ok(Answer::Ingest(open)) =
            group.apply(&Request::Ingest(vec![input("a", None)], Vec::new()))
        else {
            panic!("ingest");
        };
        let silenced = group.apply(&Request::Ingest(vec![input("b", Some(7))], Vec::new()));
        assert!(
            matches!(&silenced, Ok(Answer::Ingest(r)) if r[0].outcome == Some(Outcome::Dropped))
        );
        let id = open[0].alert_id.unwrap();
        let change = Request::Change {
            id,
            change: UserChange::Acknowledge,
            now: std::time::SystemTime::now(),
        };
        assert!(group.apply(&change).is_ok());
        let events: Vec<_> = group
            .txn
            .events
            .take()
            .unwrap()
            .into_iter()
            .map(|(r, e)| (r.id, e))
            .collect();
        assert_eq!(
            events,
            [(id, AlertEvent::Create), (id, AlertEvent::Acknowledge)]
        );
    }

    /// A request rolled back takes its entry out of its alert's timeline run: the group's
    /// later entries extend the run without it.
    #[test]
    fn a_rolled_back_entry_leaves_its_alerts_run() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("siren").unwrap();
        let view = super::super::view::View::plain(&tree);
        let ingest = |group: &mut Group<Txn<'_>>, logs: Vec<NewLog>| {
            let at = group.txn.savepoint();
            match group.apply(&Request::Ingest(logs, Vec::new())) {
                Ok(Answer::Ingest(receipts)) => Some(receipts),
                _ => {
                    group.txn.rollback(at);
                    None
                }
            }
        };
        // Alerts "a" and "b" in the tree, "b"'s record unreadable.
        let mut group = Group::new(Txn::new(view, &db), 1_000);
        let a = ingest(&mut group, vec![input("a", None)]).unwrap()[0]
            .alert_id
            .unwrap();
        let b = ingest(&mut group, vec![input("b", None)]).unwrap()[0]
            .alert_id
            .unwrap();
        group.txn.finish();
        tree.apply_batch(group.txn.batch.into_batch()).unwrap();
        tree.insert(super::super::alerts::alert_key(b), &b"not a record"[..])
            .unwrap();

        let mut group = Group::new(Txn::new(view, &db), 2_000);
        let first = ingest(&mut group, vec![input("a", None)]).unwrap()[0].log_id;
        // Its first entry folds into "a", its second fails on "b": the request rolls back.
        assert!(ingest(&mut group, vec![input("a", None), input("b", None)]).is_none());
        let last = ingest(&mut group, vec![input("a", None)]).unwrap()[0].log_id;
        group.txn.finish();
        tree.apply_batch(group.txn.batch.into_batch()).unwrap();
        assert_eq!(super::super::timeline::entries(&tree, a), [first, last]);
        // The group's index run holds what was kept, not the rolled-back request's entries.
        let indexed: Vec<u64> = super::super::index::index(&tree, "i")
            .map(|e| e.unwrap().id)
            .collect();
        assert_eq!(indexed[2..], [first, last]);
    }

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
