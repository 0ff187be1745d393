//! What each writer job does to a group commit's batch, one function per job kind: ingest
//! (log entries and their alert requests), a user's change, auto resolve, and a delivery's
//! outcome; then the outbox deliveries the group's alert changes call for. Nothing here is
//! durable until the writer's sync returns.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::alerts::{self, AlertEvent, Outcome, Record, ResolvedBy, Transition, UserChange};
use super::jobs::{Answer, Job, Reply, Request};
use super::outbox::{self, DeliveryState, Payload, Queued};
use super::packed::Dictionary;
use super::timeline;
use super::txn::Txn;
use super::writer::{Applied, DeliveryOutcome, Receipt, State, WriterHandle};
use super::{Error, NewLog, logs, unix_ms};
use crate::config::Config;
use crate::metrics::{Actor, AlertChange};

/// Alerts auto-resolved in one group at most; the rest follow in the next.
const AUTO_RESOLVE_BATCH: usize = 1000;

/// One group commit being built: the transaction, and what it did so far.
pub(super) struct Group<'a> {
    pub txn: Txn<'a>,
    /// The group's time (ms since the epoch).
    pub now: u64,
    /// Log entries added per integration (for count retention).
    pub added: HashMap<String, usize>,
    /// Alert changes, counted in the metrics once the group is durable.
    pub changes: Vec<(String, AlertChange)>,
    /// Dead letters put back in the outbox, reported with the deliveries the group adds.
    pub retried: Vec<(String, Queued)>,
}

impl State {
    /// Applies one group's requests to the tree as one batch (not yet durable). Each request
    /// is applied from a savepoint: one that fails is rolled back and answered with its own
    /// error, and the rest of the group goes on. A group that cannot be applied as a whole
    /// (the store fails) comes back with `failed` set and nothing of it in the tree.
    pub(super) fn apply_group(&mut self, requests: &[Request]) -> Applied {
        let started = std::time::Instant::now();
        let handles = match self.store.handles() {
            Ok(h) => h,
            Err(e) => return Applied::failed(started, e),
        };
        let mut group = Group {
            txn: Txn::new(&handles.tree, &handles.db),
            now: unix_ms(crate::clock::now()),
            added: HashMap::new(),
            changes: Vec::new(),
            retried: Vec::new(),
        };
        let config = self
            .outbox
            .as_ref()
            .map(|o| o.live.get())
            .filter(|c| !c.destinations.is_empty());
        if config.is_some() {
            group.txn.events = Some(Vec::new());
        }
        group.txn.folding = Some(self.folding.clone());
        let mut results = Vec::with_capacity(requests.len());
        for request in requests {
            let at = group.txn.savepoint();
            let changes = group.changes.len();
            let result = match self.apply(&mut group, request) {
                Err(e) if e.is_store_failure() => return Applied::failed(started, e),
                Err(e) => {
                    group.txn.rollback(at);
                    group.changes.truncate(changes);
                    Err(e)
                }
                ok => ok,
            };
            results.push(result);
        }
        let Group {
            mut txn,
            now,
            added,
            changes,
            retried,
        } = group;
        let earliest = txn.earliest_deadline;
        let mut queued = retried;
        let result = (|| {
            if let (Some(config), Some(events)) = (&config, txn.events.take()) {
                queued.extend(self.enqueue(&mut txn, config, events, now)?);
            }
            let removed = self.prune_by_count(&handles.tree, &mut txn.batch, &added)?;
            if self.fault.load(Ordering::SeqCst) {
                return Err(Error::Injected);
            }
            super::journal::stamp(&mut txn.batch, self.next_seq);
            let journal = super::journal::encode(&txn.batch);
            handles.tree.apply_batch(txn.batch.into_batch())?;
            Ok((removed, journal))
        })();
        match result {
            Ok((removed, journal)) => {
                self.count_applied(added, removed);
                let seq = self.next_seq;
                self.next_seq += 1;
                Applied {
                    journal,
                    seq,
                    results,
                    queued,
                    changes,
                    started,
                    earliest,
                    failed: None,
                }
            }
            Err(e) => Applied::failed(started, e),
        }
    }

    /// Applies one request to the group's transaction.
    fn apply(&self, group: &mut Group<'_>, request: &Request) -> Result<Answer, Error> {
        match request {
            Request::Ingest(logs) => ingest(group, logs),
            Request::Change { id, change, now } => self.user_change(group, *id, *change, *now),
            Request::AutoResolve { now } => self.auto_resolve(group, *now),
            Request::Delivery { id, outcome } => self.delivery(group, *id, outcome),
            Request::Silence(op) => super::silences::apply(group, op),
            Request::Retry(id, now) => retry(group, *id, *now),
        }
    }

    /// A user's acknowledge or resolve of one alert, as [`UserChange::from`] allows it.
    fn user_change(
        &self,
        group: &mut Group<'_>,
        id: u64,
        change: UserChange,
        now: SystemTime,
    ) -> Result<Answer, Error> {
        let now = unix_ms(now);
        let record = match group.txn.record(id)? {
            None => Err(Error::NoSuchAlert(id)),
            Some(r) => match change.from(r.status) {
                Transition::Refused => Err(Error::Conflict {
                    id,
                    status: r.status,
                }),
                Transition::Already => Ok(r),
                Transition::To(status) => {
                    let counted = match change {
                        UserChange::Acknowledge => AlertChange::Acknowledged(Actor::User),
                        UserChange::Resolve => AlertChange::Resolved(Actor::User),
                    };
                    group.changes.push((r.integration.clone(), counted));
                    group.txn.set_status(r, status, Some(ResolvedBy::User), now)
                }
            },
        }?;
        let description = self.store.description(&record)?;
        Ok(Answer::Change(Box::new(record.into_alert(description))))
    }

    /// Resolves (by `auto`) up to [`AUTO_RESOLVE_BATCH`] alerts whose deadline has passed.
    fn auto_resolve(&self, group: &mut Group<'_>, now: SystemTime) -> Result<Answer, Error> {
        let now = unix_ms(now);
        let txn = &mut group.txn;
        let due = txn.due(now, AUTO_RESOLVE_BATCH)?;
        for id in &due {
            if let Some(r) = txn.record(*id)?
                && let Transition::To(status) = UserChange::Resolve.from(r.status)
            {
                group
                    .changes
                    .push((r.integration.clone(), AlertChange::Resolved(Actor::Auto)));
                txn.set_status(r, status, Some(ResolvedBy::Auto), now)?;
            }
        }
        // The resolved alerts' deadlines leave the tree with this batch: skip them.
        let next = alerts::next_deadline(txn.tree(), due.len())?;
        let next = match txn.earliest_deadline {
            Some(e) => Some(next.map_or(e, |n| n.min(e))),
            None => next,
        };
        Ok(Answer::AutoResolve(next))
    }

    /// Records how a delivery attempt ended: it leaves the outbox, waits for a retry, or moves
    /// to the dead letters.
    fn delivery(
        &self,
        group: &mut Group<'_>,
        id: u64,
        outcome: &DeliveryOutcome,
    ) -> Result<Answer, Error> {
        let leaves = !matches!(outcome, DeliveryOutcome::Retry(_));
        let tree = group.txn.tree();
        let batch = &mut group.txn.batch;
        let pending = outbox::state_key(outbox::PENDING, id);
        match outcome {
            DeliveryOutcome::Delivered => {
                batch.remove(&pending[..]);
                logs::remove_chunks(tree, batch, outbox::PAYLOAD, id)?;
            }
            DeliveryOutcome::Retry(state) => batch.insert(&pending[..], outbox::encode(state, id)?),
            DeliveryOutcome::Dead(state) => {
                batch.remove(&pending[..]);
                batch.insert(
                    &outbox::state_key(outbox::DEAD, id)[..],
                    outbox::encode(state, id)?,
                );
            }
        }
        Ok(Answer::Delivery(leaves))
    }

    /// Adds one delivery per alert change and destination that wants it to the group's batch.
    fn enqueue(
        &self,
        txn: &mut Txn<'_>,
        config: &Config,
        events: Vec<(Record, AlertEvent)>,
        now: u64,
    ) -> Result<Vec<(String, Queued)>, Error> {
        let mut queued = Vec::new();
        for (record, event) in events {
            let wanted = wanted_destinations(config, &record.integration, event);
            if wanted.is_empty() {
                continue;
            }
            let description = match txn.descriptions.get(&record.id) {
                Some(d) => d.clone(),
                None => self.store.description(&record)?,
            };
            let alert_id = record.id;
            let payload = Payload {
                event,
                alert: record.into_alert(description),
            };
            let json = serde_json::to_vec(&payload).map_err(|source| Error::Corrupt {
                key: format!("delivery payload of alert {alert_id}"),
                source,
            })?;
            for destination in wanted {
                let id = txn.generate_id()?;
                let state = DeliveryState {
                    destination: destination.to_string(),
                    event,
                    alert_id,
                    created_ms: now,
                    attempts: 0,
                    next_ms: now,
                    last_error: None,
                    dead_ms: None,
                };
                alerts::put_chunks(&mut txn.batch, outbox::PAYLOAD, id, &json);
                let note = timeline::Note::Delivery {
                    destination: destination.to_string(),
                    event,
                };
                timeline::note(&mut txn.batch, alert_id, id, &note);
                txn.batch.insert(
                    &outbox::state_key(outbox::PENDING, id)[..],
                    outbox::encode(&state, id)?,
                );
                queued.push((
                    destination.to_string(),
                    Queued {
                        id,
                        alert_id,
                        next_ms: now,
                        attempts: 0,
                    },
                ));
            }
        }
        Ok(queued)
    }
}

/// The destinations of `integration` that take `event`.
fn wanted_destinations<'c>(
    config: &'c Config,
    integration: &str,
    event: AlertEvent,
) -> Vec<&'c str> {
    let Some(integration) = config.integrations.iter().find(|i| i.id == integration) else {
        return Vec::new();
    };
    integration
        .destinations
        .iter()
        .filter(|d| {
            config
                .destinations
                .iter()
                .any(|x| &x.id == *d && x.events.contains(&event))
        })
        .map(String::as_str)
        .collect()
}

/// Log entries and the alert changes they ask for. Entries that share their raw input (one
/// input's events) store it once, under the first one's id.
pub(super) fn ingest(group: &mut Group<'_>, logs: &[NewLog]) -> Result<Answer, Error> {
    let mut receipts = Vec::with_capacity(logs.len());
    // Per raw input: where it is stored, and its entries' data's dictionary (`packed.rs`).
    let mut raws: Vec<(*const u8, u64, Dictionary)> = Vec::new();
    let mut added: HashMap<&str, usize> = HashMap::new();
    for (i, log) in logs.iter().enumerate() {
        let log_id = group.txn.generate_id()?;
        let (outcome, alert_id) = match &log.alert {
            Some(req) => {
                let (o, a) = group.txn.apply(&log.integration, req, log_id, group.now)?;
                if let Some(change) = ingest_change(o) {
                    group.changes.push((log.integration.clone(), change));
                }
                (Some(o), a)
            }
            None => (log.outcome, None),
        };
        let key = log.raw.as_ptr();
        let at = match raws.iter().position(|(k, ..)| *k == key) {
            Some(at) => at,
            None => {
                let sharing = logs[i..]
                    .iter()
                    .filter(|l| std::sync::Arc::ptr_eq(&l.raw, &log.raw))
                    .count();
                logs::put_raw(&mut group.txn.batch, log_id, &log.raw, sharing as u64)?;
                raws.push((key, log_id, Dictionary::new(&log.raw)));
                raws.len() - 1
            }
        };
        let (_, raw, dictionary) = &raws[at];
        let placed = logs::Placed {
            id: log_id,
            raw: *raw,
            dictionary,
        };
        logs::put_log(&mut group.txn.batch, placed, log, outcome, alert_id)?;
        // The entry that created an alert is on its timeline without a key: the record names
        // it (`log_id`), and `views::history` shows it from there.
        let created = match alert_id {
            Some(a) => group.txn.record(a)?.is_some_and(|r| r.log_id == log_id),
            None => false,
        };
        if !created {
            timeline::index_log(&mut group.txn.batch, alert_id, log_id);
        }
        *added.entry(&log.integration).or_default() += 1;
        receipts.push(Receipt {
            log_id,
            outcome,
            alert_id,
        });
    }
    // Counted only now: a request that failed half-way adds nothing.
    for (integration, n) in added {
        *group.added.entry(integration.to_string()).or_default() += n;
    }
    Ok(Answer::Ingest(receipts))
}

/// The alert change an input's outcome stands for, if any.
fn ingest_change(outcome: Outcome) -> Option<AlertChange> {
    match outcome {
        Outcome::Created => Some(AlertChange::Created),
        Outcome::Dropped => Some(AlertChange::Dropped),
        Outcome::Aggregated => Some(AlertChange::Aggregated),
        Outcome::Resolved => Some(AlertChange::Resolved(Actor::Integration)),
        Outcome::Acknowledged => Some(AlertChange::Acknowledged(Actor::Integration)),
        Outcome::Ignored | Outcome::Rejected => None,
    }
}

impl WriterHandle {
    /// Moves a dead letter back to the outbox, attempts reset, due now; its destination's
    /// worker gets it once the commit is durable. [`Error::NoSuchDeadLetter`] if it is not dead.
    pub async fn retry(&self, id: u64, now: SystemTime) -> Result<(), Error> {
        let request = Request::Retry(id, now);
        self.submit(|reply| Job::Write(request, Reply::Delivery(reply)))
            .await?
    }
}

/// A dead letter back to the outbox: attempts reset, due `now`, its payload as it was; the
/// group reports it to its destination's worker with the deliveries it adds.
fn retry(group: &mut Group<'_>, id: u64, now: SystemTime) -> Result<Answer, Error> {
    let dead = outbox::state_key(outbox::DEAD, id);
    let Some(v) = group.txn.tree().get(dead)? else {
        return Err(Error::NoSuchDeadLetter(id));
    };
    let mut state = outbox::decode(&v, id)?;
    state.attempts = 0;
    state.next_ms = unix_ms(now);
    state.dead_ms = None;
    let batch = &mut group.txn.batch;
    batch.remove(&dead[..]);
    batch.insert(
        &outbox::state_key(outbox::PENDING, id)[..],
        outbox::encode(&state, id)?,
    );
    let queued = Queued {
        id,
        alert_id: state.alert_id,
        next_ms: state.next_ms,
        attempts: 0,
    };
    group.retried.push((state.destination, queued));
    Ok(Answer::Delivery(false))
}
