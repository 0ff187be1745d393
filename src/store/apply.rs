//! What each writer job does to a group commit's batch, one function per job kind: ingest
//! (log entries and their alert requests), a user's change, auto resolve, and a delivery's
//! outcome; then the outbox deliveries the group's alert changes call for. Nothing here is
//! durable until the writer's sync returns.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::sync::oneshot;

use super::alerts::{self, AlertEvent, Outcome, Record, ResolvedBy, Transition, UserChange};
use super::outbox::{self, DeliveryState, Payload, Queued};
use super::timeline;
use super::txn::Txn;
use super::writer::{Applied, DeliveryOutcome, Done, Job, Receipt, State};
use super::{Alert, Error, LOG, NewLog, RAW, StoredLog, rfc3339, unix_ms};
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
}

impl State {
    /// Applies one group's jobs to the tree as one batch (not yet durable). A group that
    /// cannot be applied comes back with `failed` set and nothing of it in the tree.
    pub(super) fn apply_group(&mut self, jobs: Vec<Job>) -> Applied {
        let started = std::time::Instant::now();
        let requests = jobs.len();
        let (tree, db) = (self.store.tree.clone(), self.store.db.clone());
        let mut group = Group {
            txn: Txn::new(&tree, &db),
            now: unix_ms(crate::clock::now()),
            added: HashMap::new(),
            changes: Vec::new(),
        };
        let config = self
            .outbox
            .as_ref()
            .map(|o| o.live.get())
            .filter(|c| !c.destinations.is_empty());
        if config.is_some() {
            group.txn.events = Some(Vec::new());
        }
        let mut done = Vec::with_capacity(jobs.len());
        let mut applied = Ok(());
        for job in jobs {
            match self.apply(&mut group, job) {
                Ok(d) => done.push(d),
                Err(e) => {
                    applied = Err(e);
                    break;
                }
            }
        }
        let Group {
            mut txn,
            now,
            added,
            changes,
        } = group;
        let earliest = txn.earliest_deadline;
        let mut queued = Vec::new();
        let result = applied.and_then(|()| {
            if let (Some(config), Some(events)) = (&config, txn.events.take()) {
                queued = self.enqueue(&mut txn, config, events, now)?;
            }
            let removed = self.prune_by_count(&mut txn.batch, &added)?;
            if self.fault.load(Ordering::SeqCst) {
                return Err(Error::Injected);
            }
            self.store.tree.apply_batch(txn.batch)?;
            Ok(removed)
        });
        let failed = match result {
            Ok(removed) => {
                self.count_applied(added, removed);
                None
            }
            Err(e) => Some(e),
        };
        Applied {
            done,
            queued,
            changes,
            requests,
            started,
            earliest,
            failed,
        }
    }

    /// Applies one job to the group's transaction.
    fn apply(&self, group: &mut Group<'_>, job: Job) -> Result<Done, Error> {
        match job {
            Job::Ingest { logs, reply } => ingest(group, &logs, reply),
            Job::Change {
                id,
                change,
                now,
                reply,
            } => self.user_change(group, id, change, now, reply),
            Job::AutoResolve { now, reply } => self.auto_resolve(group, now, reply),
            Job::Delivery { id, outcome, reply } => self.delivery(group, id, outcome, reply),
            Job::Retry { id, now, reply } => self.retry(group, id, now, reply),
            Job::Prune { .. } | Job::Shutdown => unreachable!("handled outside groups"),
        }
    }

    /// A user's acknowledge or resolve of one alert, as [`UserChange::from`] allows it.
    fn user_change(
        &self,
        group: &mut Group<'_>,
        id: u64,
        change: UserChange,
        now: SystemTime,
        reply: oneshot::Sender<Result<Alert, Error>>,
    ) -> Result<Done, Error> {
        let now = unix_ms(now);
        let result = match group.txn.record(id)? {
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
        };
        let alert = match result {
            Ok(r) => {
                let description = self.store.description(r.id)?;
                Ok(r.into_alert(description))
            }
            Err(e) => Err(e),
        };
        Ok(Done::Change(reply, Box::new(alert)))
    }

    /// Resolves (by `auto`) up to [`AUTO_RESOLVE_BATCH`] alerts whose deadline has passed.
    fn auto_resolve(
        &self,
        group: &mut Group<'_>,
        now: SystemTime,
        reply: oneshot::Sender<Result<Option<SystemTime>, Error>>,
    ) -> Result<Done, Error> {
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
        let next = alerts::next_deadline(&self.store.tree, due.len())?;
        let next = match txn.earliest_deadline {
            Some(e) => Some(next.map_or(e, |n| n.min(e))),
            None => next,
        };
        Ok(Done::AutoResolve(reply, next))
    }

    /// Records how a delivery attempt ended: it leaves the outbox, waits for a retry, or moves
    /// to the dead letters.
    fn delivery(
        &self,
        group: &mut Group<'_>,
        id: u64,
        outcome: DeliveryOutcome,
        reply: oneshot::Sender<Result<(), Error>>,
    ) -> Result<Done, Error> {
        let leaves = !matches!(outcome, DeliveryOutcome::Retry(_));
        let batch = &mut group.txn.batch;
        let pending = outbox::state_key(outbox::PENDING, id);
        match outcome {
            DeliveryOutcome::Delivered => {
                batch.remove(&pending[..]);
                self.remove_chunks(batch, outbox::PAYLOAD, id)?;
            }
            DeliveryOutcome::Retry(state) => {
                batch.insert(&pending[..], outbox::encode(&state, id)?)
            }
            DeliveryOutcome::Dead(state) => {
                batch.remove(&pending[..]);
                batch.insert(
                    &outbox::state_key(outbox::DEAD, id)[..],
                    outbox::encode(&state, id)?,
                );
            }
        }
        Ok(Done::Delivery(reply, leaves))
    }

    /// A dead letter back to the outbox: attempts reset, due `now`, its payload as it was.
    fn retry(
        &self,
        group: &mut Group<'_>,
        id: u64,
        now: SystemTime,
        reply: oneshot::Sender<Result<(), Error>>,
    ) -> Result<Done, Error> {
        let dead = outbox::state_key(outbox::DEAD, id);
        let Some(v) = self.store.tree.get(dead)? else {
            return Ok(Done::Retry(reply, Err(Error::NoSuchDeadLetter(id))));
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
        Ok(Done::Retry(reply, Ok((state.destination, queued))))
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
                None => self.store.description(record.id)?,
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

    pub(super) fn remove_chunks(
        &self,
        batch: &mut sled::Batch,
        kind: u8,
        id: u64,
    ) -> Result<(), Error> {
        for key in self
            .store
            .tree
            .scan_prefix(super::chunk_prefix(kind, id))
            .keys()
        {
            batch.remove(key?);
        }
        Ok(())
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

/// Log entries and the alert changes they ask for.
fn ingest(
    group: &mut Group<'_>,
    logs: &[NewLog],
    reply: oneshot::Sender<Result<Vec<Receipt>, Error>>,
) -> Result<Done, Error> {
    let mut receipts = Vec::with_capacity(logs.len());
    for log in logs {
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
        put_log(&mut group.txn.batch, log_id, log, outcome, alert_id)?;
        *group.added.entry(log.integration.clone()).or_default() += 1;
        receipts.push(Receipt {
            log_id,
            outcome,
            alert_id,
        });
    }
    Ok(Done::Ingest(reply, receipts))
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

fn put_log(
    batch: &mut sled::Batch,
    id: u64,
    log: &NewLog,
    outcome: Option<Outcome>,
    alert_id: Option<u64>,
) -> Result<(), Error> {
    let entry = StoredLog {
        id: id.to_string(),
        integration: &log.integration,
        received_at: rfc3339(log.received_at),
        source: log.source,
        remote_addr: &log.remote_addr,
        size: log.raw.len() as u64,
        data: log.email.is_none().then_some(&log.data),
        outcome,
        alert_id: alert_id.map(|a| a.to_string()),
        error: log.error.as_deref(),
        email: log.email.as_ref(),
    };
    let json = serde_json::to_vec(&entry).map_err(|source| Error::Corrupt {
        key: format!("log {id}"),
        source,
    })?;
    alerts::put_chunks(batch, LOG, id, &json);
    alerts::put_chunks(batch, RAW, id, &log.raw);
    let received = unix_ms(log.received_at);
    timeline::index_log(batch, &log.integration, id, received, outcome, alert_id);
    Ok(())
}
