//! What each writer job does in a group commit, one function per job kind: ingest (log entries
//! and their alert requests), a user's change, auto resolve, a delivery's outcome, a silence, a
//! dead letter's retry; then the outbox deliveries the group's alert changes call for. Written
//! once against [`Engine`], for both engines; [`State::apply_group`] is sled's group commit
//! (PostgreSQL's is `postgres/group.rs`). Nothing here is durable until the engine's commit.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::alerts::{AlertEvent, Outcome, Record, ResolvedBy, Transition, UserChange};
use super::engine::Engine;
use super::jobs::{Answer, Job, Reply, Request};
use super::outbox::{DeliveryState, Payload, Queued};
use super::packed::Prepacked;
use super::rules::Rules;
use super::timeline::Note;
use super::txn::Txn;
use super::view::{Overlay, View};
use super::writer::{Applied, DeliveryOutcome, Receipt, State, WriterHandle};
use super::{Error, Handles, NewLog, unix_ms};
use crate::config::Config;
use crate::metrics::{Actor, AlertChange};

/// Alerts auto-resolved in one group at most; the rest follow in the next.
const AUTO_RESOLVE_BATCH: usize = 1000;

/// One group commit being built: the engine's transaction, and what it did so far.
pub(super) struct Group<E> {
    pub txn: E,
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
    ///
    /// `last`: the writes of the group before, when sled does not hold them yet (the writer
    /// writes them while this group's record is made durable); the group reads the tree with
    /// them laid over it.
    pub(super) fn apply_group(
        &mut self,
        handles: &Handles,
        last: Option<&Overlay>,
        requests: &[Request],
    ) -> Applied {
        let started = std::time::Instant::now();
        let view = View {
            tree: &handles.tree,
            overlay: last,
        };
        let mut txn = Txn::new(view, &handles.db);
        txn.id_offset = handles.id_offset;
        let mut group = Group::new(txn, unix_ms(crate::clock::now()));
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
            let result = match group.apply(request) {
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
        group.txn.finish();
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
                queued.extend(enqueue(&mut txn, config, events, now)?);
            }
            let removed = self.prune_by_count(&view, &mut txn.batch, &added)?;
            if self.fault.load(Ordering::SeqCst) {
                return Err(Error::Injected);
            }
            super::journal::stamp(&mut txn.batch, self.next_seq);
            let journal = super::journal::encode(&txn.batch);
            Ok((removed, journal))
        })();
        match result {
            Ok((removed, journal)) => {
                let writes = std::mem::take(&mut txn.batch);
                self.count_applied(added, removed);
                let seq = self.next_seq;
                self.next_seq += 1;
                Applied {
                    journal,
                    seq,
                    writes,
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
}

impl<E: Engine> Group<E> {
    pub fn new(txn: E, now: u64) -> Self {
        Group {
            txn,
            now,
            added: HashMap::new(),
            changes: Vec::new(),
            retried: Vec::new(),
        }
    }

    /// Applies one request to the group's transaction.
    pub fn apply(&mut self, request: &Request) -> Result<Answer, Error> {
        match request {
            Request::Ingest(logs, packed) => self.ingest(logs, packed),
            Request::Change { id, change, now } => self.user_change(*id, *change, *now),
            Request::AutoResolve { now } => self.auto_resolve(*now),
            Request::Delivery { id, outcome } => {
                self.txn.delivery_outcome(*id, outcome)?;
                // Whether it left the outbox (delivered or dead).
                Ok(Answer::Delivery(!matches!(
                    outcome,
                    DeliveryOutcome::Retry(_)
                )))
            }
            Request::Silence(op) => super::silences::apply(&mut self.txn, op),
            Request::Retry(id, now) => self.retry(*id, *now),
        }
    }

    /// A user's acknowledge or resolve of one alert, as [`UserChange::from`] allows it.
    fn user_change(
        &mut self,
        id: u64,
        change: UserChange,
        now: SystemTime,
    ) -> Result<Answer, Error> {
        let now = unix_ms(now);
        let record = match self.txn.record(id)? {
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
                    self.changes.push((r.integration.clone(), counted));
                    Rules::new(&mut self.txn).set_status(r, status, Some(ResolvedBy::User), now)
                }
            },
        }?;
        let description = self.txn.description(&record)?;
        Ok(Answer::Change(Box::new(record.into_alert(description))))
    }

    /// Resolves (by `auto`) up to [`AUTO_RESOLVE_BATCH`] alerts whose deadline has passed.
    fn auto_resolve(&mut self, now: SystemTime) -> Result<Answer, Error> {
        let now = unix_ms(now);
        let due = self.txn.due(now, AUTO_RESOLVE_BATCH)?;
        self.resolve_due(&due, now)?;
        let next = self.txn.next_deadline(now, due.len())?;
        Ok(Answer::AutoResolve(next))
    }

    /// Resolves (by `auto`) the alerts `due` that are not resolved yet.
    pub fn resolve_due(&mut self, due: &[u64], now: u64) -> Result<(), Error> {
        for id in due {
            if let Some(r) = self.txn.record(*id)?
                && let Transition::To(status) = UserChange::Resolve.from(r.status)
            {
                self.changes
                    .push((r.integration.clone(), AlertChange::Resolved(Actor::Auto)));
                Rules::new(&mut self.txn).set_status(r, status, Some(ResolvedBy::Auto), now)?;
            }
        }
        Ok(())
    }

    /// A dead letter back to the outbox: attempts reset, due `now`, its payload as it was; the
    /// group reports it to its destination's worker with the deliveries it adds.
    fn retry(&mut self, id: u64, now: SystemTime) -> Result<Answer, Error> {
        let Some(state) = self.txn.requeue_dead(id, unix_ms(now))? else {
            return Err(Error::NoSuchDeadLetter(id));
        };
        let queued = Queued {
            id,
            alert_id: state.alert_id,
            next_ms: state.next_ms,
            attempts: 0,
        };
        self.retried.push((state.destination, queued));
        Ok(Answer::Delivery(false))
    }

    /// Log entries and the alert changes they ask for. Entries that share their raw input (one
    /// input's events) store it once, under the first one's id. `packed`: the entries' values
    /// as their submitter packed them, one per entry, or none.
    pub fn ingest(&mut self, logs: &[NewLog], packed: &[Prepacked]) -> Result<Answer, Error> {
        let mut receipts = Vec::with_capacity(logs.len());
        let mut raws: Vec<(*const u8, u64)> = Vec::new();
        let mut added: HashMap<&str, usize> = HashMap::new();
        for (i, log) in logs.iter().enumerate() {
            let packed = packed.get(i);
            let log_id = self.txn.generate_id()?;
            let (outcome, alert_id) = match &log.alert {
                Some(req) => {
                    let (o, a) =
                        Rules::new(&mut self.txn).apply(&log.integration, req, log_id, self.now)?;
                    if let Some(change) = ingest_change(o) {
                        self.changes.push((log.integration.clone(), change));
                    }
                    (Some(o), a)
                }
                None => (log.outcome, None),
            };
            let key = log.raw.as_ptr();
            let raw_id = match raws.iter().find(|(k, _)| *k == key) {
                Some(&(_, raw_id)) => raw_id,
                None => {
                    let sharing = logs[i..]
                        .iter()
                        .filter(|l| std::sync::Arc::ptr_eq(&l.raw, &log.raw))
                        .count();
                    self.txn.put_raw(log_id, &log.raw, sharing as u64, packed)?;
                    raws.push((key, log_id));
                    log_id
                }
            };
            self.txn
                .put_log(log_id, raw_id, log, packed, outcome, alert_id)?;
            *added.entry(&log.integration).or_default() += 1;
            receipts.push(Receipt {
                log_id,
                outcome,
                alert_id,
            });
        }
        // Counted only now: a request that failed half-way adds nothing.
        for (integration, n) in added {
            *self.added.entry(integration.to_string()).or_default() += n;
        }
        Ok(Answer::Ingest(receipts))
    }
}

/// Adds one delivery per alert change and destination that wants it; answers them with their
/// destinations, for the delivery workers.
pub(super) fn enqueue<E: Engine>(
    txn: &mut E,
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
        let description = txn.description(&record)?;
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
            txn.add_delivery(id, &state, &json)?;
            let note = Note::Delivery {
                destination: destination.to_string(),
                event,
            };
            txn.note(alert_id, id, &note)?;
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

/// The destinations of `integration` that take `event`.
pub(super) fn wanted_destinations<'c>(
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
