//! The group-commit writer: one task owns every write. It takes all pending requests,
//! applies them as one sled batch, calls the blocking `flush()` once, `fdatasync`s sled's data
//! file itself (sled's flush uses `sync_file_range`, which does not persist file metadata), and
//! only then answers each waiting caller. It never calls `flush_async` (sled issue 1308).
//! Alert changes happen here too, so reads-then-writes (aggregation) never race.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::alerts::{self, AlertEvent, Record, ResolvedBy, Status, Txn};
use super::outbox::{self, DeliveryState, Payload, Queued};
use super::views;
use super::{
    Alert, Error, LOG, NewLog, RAW, Store, StoredLog, chunk_prefix, index_key, rfc3339, u64_at,
    unix_ms,
};
use crate::config::{Config, Live, LogsConfig};
use crate::metrics::{AlertChange, Metrics};

/// Requests handled in one group commit at most; bounds the latency of the first one.
const MAX_GROUP: usize = 256;
/// Queue depth before submitters wait: back-pressure instead of unbounded memory.
const QUEUE: usize = 1024;
/// Alerts auto-resolved in one group at most; the rest follow in the next.
const AUTO_RESOLVE_BATCH: usize = 1000;

/// What one logged input came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub log_id: u64,
    pub outcome: Option<alerts::Outcome>,
    pub alert_id: Option<u64>,
}

/// Where the writer reports the deliveries it adds to the outbox, and the configuration that
/// says which destinations each integration's alert changes go to.
pub struct OutboxFeed {
    pub live: Live,
    /// After each commit that added deliveries: each one with its destination id.
    pub queued: mpsc::UnboundedSender<Vec<(String, Queued)>>,
}

/// How one delivery attempt ended, as the delivery worker records it.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    /// The destination took it: it leaves the outbox.
    Delivered,
    /// It failed; the state holds the attempt count, the error and when to try again.
    Retry(DeliveryState),
    /// It failed for the last time: it moves to the dead letters, payload kept.
    Dead(DeliveryState),
}

/// A change a user asks for through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    Acknowledge,
    Resolve,
}

enum Job {
    Ingest {
        logs: Vec<NewLog>,
        reply: oneshot::Sender<Result<Vec<Receipt>, Error>>,
    },
    Change {
        id: u64,
        change: UserChange,
        now: SystemTime,
        reply: oneshot::Sender<Result<Alert, Error>>,
    },
    AutoResolve {
        now: SystemTime,
        reply: oneshot::Sender<Result<Option<SystemTime>, Error>>,
    },
    Prune {
        now: SystemTime,
        reply: oneshot::Sender<Option<SystemTime>>,
    },
    Delivery {
        id: u64,
        outcome: DeliveryOutcome,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// A user's retry of a dead letter: it goes back to the outbox with its attempts reset.
    Retry {
        id: u64,
        now: SystemTime,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// Commit what was queued before this, flush, and end the writer.
    Shutdown,
}

/// A job applied to the group's transaction, waiting for the commit to answer.
enum Done {
    Ingest(oneshot::Sender<Result<Vec<Receipt>, Error>>, Vec<Receipt>),
    Change(
        oneshot::Sender<Result<Alert, Error>>,
        Box<Result<Alert, Error>>,
    ),
    AutoResolve(
        oneshot::Sender<Result<Option<SystemTime>, Error>>,
        Option<u64>,
    ),
    /// Whether the delivery left the outbox (delivered or dead).
    Delivery(oneshot::Sender<Result<(), Error>>, bool),
    /// The retried delivery, for its destination's worker.
    Retry(
        oneshot::Sender<Result<(), Error>>,
        Result<(String, Queued), Error>,
    ),
}

impl Done {
    fn succeed(self) {
        match self {
            Done::Ingest(reply, receipts) => drop(reply.send(Ok(receipts))),
            Done::Change(reply, result) => drop(reply.send(*result)),
            Done::AutoResolve(reply, next) => drop(reply.send(Ok(next.map(ms_time)))),
            Done::Delivery(reply, _) => drop(reply.send(Ok(()))),
            Done::Retry(reply, result) => drop(reply.send(result.map(|_| ()))),
        }
    }

    fn fail(self, e: &Arc<Error>) {
        let err = || Error::Commit(e.clone());
        match self {
            Done::Ingest(reply, _) => drop(reply.send(Err(err()))),
            Done::Change(reply, _) => drop(reply.send(Err(err()))),
            Done::AutoResolve(reply, _) => drop(reply.send(Err(err()))),
            Done::Delivery(reply, _) | Done::Retry(reply, _) => drop(reply.send(Err(err()))),
        }
    }
}

fn ms_time(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// Submits writes to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    fault: Arc<AtomicBool>,
    /// Woken when a commit adds an auto-resolve deadline earlier than the last one reported.
    deadline_moved: Arc<Notify>,
}

impl WriterHandle {
    async fn submit<T>(&self, job: impl FnOnce(oneshot::Sender<T>) -> Job) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(job(reply)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Writes the entries and their alert changes durably; returns what each came to, in order.
    pub async fn commit(&self, logs: Vec<NewLog>) -> Result<Vec<Receipt>, Error> {
        self.submit(|reply| Job::Ingest { logs, reply }).await?
    }

    /// Acknowledges or resolves (by `user`) one alert.
    pub async fn change(
        &self,
        id: u64,
        change: UserChange,
        now: SystemTime,
    ) -> Result<Alert, Error> {
        self.submit(|reply| Job::Change {
            id,
            change,
            now,
            reply,
        })
        .await?
    }

    /// Resolves (by `auto`) alerts whose deadline has passed; returns the next deadline.
    pub async fn auto_resolve(&self, now: SystemTime) -> Result<Option<SystemTime>, Error> {
        self.submit(|reply| Job::AutoResolve { now, reply }).await?
    }

    /// Resolves when a commit added an auto-resolve deadline earlier than the last reported.
    pub async fn deadline_moved(&self) {
        self.deadline_moved.notified().await
    }

    /// Records how a delivery attempt ended (durably, before it returns).
    pub async fn delivery(&self, id: u64, outcome: DeliveryOutcome) -> Result<(), Error> {
        self.submit(|reply| Job::Delivery { id, outcome, reply })
            .await?
    }

    /// Moves a dead letter back to the outbox, attempts reset, due now; its destination's
    /// worker gets it once the commit is durable. [`Error::NoSuchDeadLetter`] if it is not dead.
    pub async fn retry(&self, id: u64, now: SystemTime) -> Result<(), Error> {
        self.submit(|reply| Job::Retry { id, now, reply }).await?
    }

    /// Drops log entries older than the retention age; returns when the next one expires.
    pub async fn prune(&self, now: SystemTime) -> Result<Option<SystemTime>, Error> {
        self.submit(|reply| Job::Prune { now, reply }).await
    }

    /// False once the writer task has ended (shutdown, or a failure): nothing more is stored.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Makes every following commit fail (until turned off), as a full disk would. For tests
    /// and failure drills: the daemon must answer 451/503 and stay up.
    pub fn inject_failure(&self, on: bool) {
        self.fault.store(on, Ordering::SeqCst);
    }
}

/// The writer task. [`Writer::join`] ends it after everything queued so far is committed.
pub struct Writer {
    task: JoinHandle<()>,
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer. With `outbox`, alert changes add deliveries for the destinations of
    /// their integration, and each commit reports the ones it added.
    pub fn spawn(
        store: Store,
        retention: LogsConfig,
        outbox: Option<OutboxFeed>,
        metrics: Arc<Metrics>,
    ) -> Result<(Writer, WriterHandle), Error> {
        let data_file = File::options()
            .read(true)
            .write(true)
            .open(store.path.join("db"))
            .map_err(|source| Error::Io {
                path: store.path.join("db"),
                source,
            })?;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for kv in store.tree.scan_prefix([super::INDEX]) {
            let (k, _) = kv?;
            if let Some(end) = k.iter().position(|&b| b == 0) {
                let name = String::from_utf8_lossy(&k[1..end]).into_owned();
                *counts.entry(name).or_default() += 1;
            }
        }
        let outbox_depth = store.tree.scan_prefix([outbox::PENDING]).count() as u64;
        metrics.set_outbox_depth(outbox_depth);
        let (tx, rx) = mpsc::channel(QUEUE);
        let fault = Arc::new(AtomicBool::new(false));
        let deadline_moved = Arc::new(Notify::new());
        let state = State {
            store,
            data_file: Arc::new(data_file),
            retention,
            counts,
            fault: fault.clone(),
            deadline_moved: deadline_moved.clone(),
            reported_deadline: None,
            outbox,
            outbox_depth,
            metrics,
        };
        let task = tokio::spawn(state.run(rx));
        Ok((
            Writer {
                task,
                tx: tx.clone(),
            },
            WriterHandle {
                tx,
                fault,
                deadline_moved,
            },
        ))
    }

    /// Commits everything queued so far, flushes, and ends the writer; later submissions get
    /// [`Error::Stopped`].
    pub async fn join(self) {
        let _ = self.tx.send(Job::Shutdown).await;
        if self.task.await.is_err() {
            tracing::error!("store writer task failed");
        }
    }
}

/// A group applied to the tree whose sync is running.
struct InFlight {
    sync: JoinHandle<Result<(), Error>>,
    applied: Applied,
}

/// What answering a group needs, kept from applying it until its sync returns.
struct Applied {
    done: Vec<Done>,
    queued: Vec<(String, Queued)>,
    changes: Vec<(String, AlertChange)>,
    requests: usize,
    started: std::time::Instant,
    earliest: Option<u64>,
    failed: Option<Error>,
}

/// sled's blocking flush (its log, with `sync_file_range`), then fdatasync of its data file,
/// which that does not make durable by itself (file metadata).
fn sync_files(db: &sled::Db, file: &File, path: &std::path::Path) -> Result<(), Error> {
    db.flush()?;
    file.sync_data().map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// A sync task's result, a panicked task counting as a failed sync.
fn flatten(joined: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    joined.unwrap_or_else(|e| {
        Err(Error::Io {
            path: std::path::PathBuf::from("db"),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

struct State {
    store: Store,
    data_file: Arc<File>,
    retention: LogsConfig,
    counts: HashMap<String, usize>,
    fault: Arc<AtomicBool>,
    deadline_moved: Arc<Notify>,
    /// The next auto-resolve deadline as last reported to the timer.
    reported_deadline: Option<u64>,
    outbox: Option<OutboxFeed>,
    metrics: Arc<Metrics>,
    /// Pending deliveries in the outbox (the `siren_outbox_depth` gauge).
    outbox_depth: u64,
}

impl State {
    /// Collects whatever is queued into one group, applies it to the tree, and makes it durable,
    /// all on the blocking pool. Groups are pipelined: while one group's flush and fdatasync
    /// wait for the disk, the next group is applied (sled's batches are atomic and in order, so
    /// a sync covers every group applied before it). Each group is answered only after its own
    /// sync returned; syncs never overlap. (On the blocking pool, tokio knows work is in
    /// flight: paused-time tests do not run the clock ahead during a commit.)
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut running = true;
        let mut in_flight: Option<InFlight> = None;
        while running {
            let first = match &mut in_flight {
                Some(f) => tokio::select! {
                    job = rx.recv() => job,
                    synced = &mut f.sync => {
                        let f = in_flight.take().expect("in flight");
                        self.finish(f.applied, flatten(synced));
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(first) = first else { break };
            let mut jobs = Vec::new();
            let mut prunes = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Prune { now, reply } => prunes.push((now, reply)),
                    Job::Shutdown => {
                        running = false;
                        break;
                    }
                    job => jobs.push(job),
                }
                if jobs.len() < MAX_GROUP {
                    next = rx.try_recv().ok();
                }
            }
            if !prunes.is_empty()
                && let Some(f) = in_flight.take()
            {
                // Pruning syncs by itself: never two syncs at once.
                let synced = f.sync.await;
                self.finish(f.applied, flatten(synced));
            }
            let group = tokio::task::spawn_blocking(move || {
                let applied = (!jobs.is_empty()).then(|| self.apply_group(jobs));
                for (now, reply) in prunes {
                    let next = self.prune_by_age(now).unwrap_or_else(|e| {
                        tracing::error!(error = %e, "pruning old log entries failed");
                        None
                    });
                    let _ = reply.send(next);
                }
                (self, applied)
            });
            let applied = match group.await {
                Ok((state, applied)) => {
                    self = state;
                    applied
                }
                Err(e) => {
                    tracing::error!(error = %e, "store writer failed; no more writes");
                    return;
                }
            };
            if let Some(f) = in_flight.take() {
                let synced = f.sync.await;
                self.finish(f.applied, flatten(synced));
            }
            match applied {
                Some(applied) if applied.failed.is_none() => {
                    let (db, file, path) = (
                        self.store.db.clone(),
                        self.data_file.clone(),
                        self.store.path.join("db"),
                    );
                    in_flight = Some(InFlight {
                        sync: tokio::task::spawn_blocking(move || sync_files(&db, &file, &path)),
                        applied,
                    });
                }
                Some(applied) => self.finish(applied, Ok(())),
                None => {}
            }
        }
        if let Some(f) = in_flight.take() {
            let synced = f.sync.await;
            self.finish(f.applied, flatten(synced));
        }
        let db = self.store.db.clone();
        let flushed = tokio::task::spawn_blocking(move || db.flush()).await;
        if !matches!(flushed, Ok(Ok(_))) {
            tracing::error!("final store flush failed");
        }
    }

    /// Applies one group's jobs to the tree as one batch (not yet durable). A group that
    /// cannot be applied comes back with `failed` set and nothing of it in the tree.
    fn apply_group(&mut self, jobs: Vec<Job>) -> Applied {
        let started = std::time::Instant::now();
        let requests = jobs.len();
        let now = unix_ms(crate::clock::now());
        let mut added: HashMap<String, usize> = HashMap::new();
        let mut changes = Vec::new();
        let (tree, db) = (self.store.tree.clone(), self.store.db.clone());
        let mut txn = Txn::new(&tree, &db);
        let config = self
            .outbox
            .as_ref()
            .map(|o| o.live.get())
            .filter(|c| !c.destinations.is_empty());
        if config.is_some() {
            txn.events = Some(Vec::new());
        }
        let mut done = Vec::with_capacity(jobs.len());
        let mut applied = Ok(());
        for job in jobs {
            match self.apply(&mut txn, job, now, &mut added, &mut changes) {
                Ok(d) => done.push(d),
                Err(e) => {
                    applied = Err(e);
                    break;
                }
            }
        }
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
                // The tree has the group now: retention counts follow the tree.
                for (integration, n) in added {
                    *self.counts.entry(integration).or_default() += n;
                }
                for (integration, n) in removed {
                    if let Some(c) = self.counts.get_mut(&integration) {
                        *c = c.saturating_sub(n);
                    }
                }
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

    /// Answers a group once its sync returned (or it could not be applied): every waiting
    /// caller, the metrics, the resolver and the delivery workers.
    fn finish(&mut self, applied: Applied, synced: Result<(), Error>) {
        let Applied {
            done,
            mut queued,
            changes,
            requests,
            started,
            earliest,
            failed,
        } = applied;
        match failed.map_or(synced, Err) {
            Ok(()) => {
                queued.extend(done.iter().filter_map(|d| match d {
                    Done::Retry(_, Ok(q)) => Some(q.clone()),
                    _ => None,
                }));
                if let Some(ms) = earliest
                    && self.reported_deadline.is_none_or(|r| ms < r)
                {
                    self.reported_deadline = Some(ms);
                    self.deadline_moved.notify_one();
                }
                let elapsed = started.elapsed();
                self.metrics.commit(elapsed, requests);
                self.metrics.alert_changes(&changes);
                tracing::trace!(requests, ?elapsed, "group commit");
                let left = done
                    .iter()
                    .filter(|d| matches!(d, Done::Delivery(_, true)))
                    .count() as u64;
                if !queued.is_empty() || left > 0 {
                    self.outbox_depth =
                        (self.outbox_depth + queued.len() as u64).saturating_sub(left);
                    self.metrics.set_outbox_depth(self.outbox_depth);
                }
                if let Some(feed) = &self.outbox
                    && !queued.is_empty()
                {
                    let _ = feed.queued.send(queued);
                }
                for d in done {
                    if let Done::AutoResolve(_, next) = &d {
                        self.reported_deadline = *next;
                    }
                    d.succeed();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests, "group commit failed; every request in it was answered with a failure");
                self.metrics.commit_failed();
                let shared = Arc::new(e);
                for d in done {
                    d.fail(&shared);
                }
            }
        }
    }

    /// Applies one job to the group's transaction; the alert changes it makes go to `changes`,
    /// which are counted once the group is durable.
    fn apply(
        &self,
        txn: &mut Txn<'_>,
        job: Job,
        now: u64,
        added: &mut HashMap<String, usize>,
        changes: &mut Vec<(String, AlertChange)>,
    ) -> Result<Done, Error> {
        match job {
            Job::Ingest { logs, reply } => {
                let mut receipts = Vec::with_capacity(logs.len());
                for log in &logs {
                    let log_id = txn.generate_id()?;
                    let (outcome, alert_id) = match &log.alert {
                        Some(req) => {
                            let (o, a) = txn.apply(&log.integration, req, log_id, now)?;
                            if let Some(change) = ingest_change(o) {
                                changes.push((log.integration.clone(), change));
                            }
                            (Some(o), a)
                        }
                        None => (log.outcome, None),
                    };
                    put_log(&mut txn.batch, log_id, log, outcome, alert_id)?;
                    *added.entry(log.integration.clone()).or_default() += 1;
                    receipts.push(Receipt {
                        log_id,
                        outcome,
                        alert_id,
                    });
                }
                Ok(Done::Ingest(reply, receipts))
            }
            Job::Change {
                id,
                change,
                now,
                reply,
            } => {
                let now = unix_ms(now);
                let result = match txn.record(id)? {
                    None => Err(Error::NoSuchAlert(id)),
                    Some(r) => {
                        let target = match change {
                            UserChange::Acknowledge => Status::Acknowledged,
                            UserChange::Resolve => Status::Resolved,
                        };
                        let allowed = match change {
                            UserChange::Acknowledge => matches!(
                                r.status,
                                Status::Open | Status::Queued | Status::Acknowledged
                            ),
                            UserChange::Resolve => true,
                        };
                        if !allowed {
                            Err(Error::Conflict {
                                id,
                                status: r.status,
                            })
                        } else if r.status == target {
                            Ok(r)
                        } else {
                            let change = match change {
                                UserChange::Acknowledge => AlertChange::Acknowledged,
                                UserChange::Resolve => AlertChange::Resolved,
                            };
                            changes.push((r.integration.clone(), change(ResolvedBy::User)));
                            txn.set_status(r, target, Some(ResolvedBy::User), now)
                        }
                    }
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
            Job::AutoResolve { now, reply } => {
                let now = unix_ms(now);
                let due = txn.due(now, AUTO_RESOLVE_BATCH)?;
                for id in &due {
                    if let Some(r) = txn.record(*id)?
                        && r.status.still_there()
                    {
                        changes.push((
                            r.integration.clone(),
                            AlertChange::Resolved(ResolvedBy::Auto),
                        ));
                        txn.set_status(r, Status::Resolved, Some(ResolvedBy::Auto), now)?;
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
            Job::Delivery { id, outcome, reply } => {
                let leaves = !matches!(outcome, DeliveryOutcome::Retry(_));
                match outcome {
                    DeliveryOutcome::Delivered => {
                        txn.batch
                            .remove(&outbox::state_key(outbox::PENDING, id)[..]);
                        self.remove_chunks(&mut txn.batch, outbox::PAYLOAD, id)?;
                    }
                    DeliveryOutcome::Retry(state) => txn.batch.insert(
                        &outbox::state_key(outbox::PENDING, id)[..],
                        outbox::encode(&state, id)?,
                    ),
                    DeliveryOutcome::Dead(state) => {
                        txn.batch
                            .remove(&outbox::state_key(outbox::PENDING, id)[..]);
                        txn.batch.insert(
                            &outbox::state_key(outbox::DEAD, id)[..],
                            outbox::encode(&state, id)?,
                        );
                    }
                }
                Ok(Done::Delivery(reply, leaves))
            }
            Job::Retry { id, now, reply } => {
                let dead = outbox::state_key(outbox::DEAD, id);
                let result = match self.store.tree.get(dead)? {
                    None => Err(Error::NoSuchDeadLetter(id)),
                    Some(v) => {
                        let mut state = outbox::decode(&v, id)?;
                        state.attempts = 0;
                        state.next_ms = unix_ms(now);
                        state.dead_ms = None;
                        txn.batch.remove(&dead[..]);
                        txn.batch.insert(
                            &outbox::state_key(outbox::PENDING, id)[..],
                            outbox::encode(&state, id)?,
                        );
                        let queued = Queued {
                            id,
                            alert_id: state.alert_id,
                            next_ms: state.next_ms,
                            attempts: 0,
                        };
                        Ok((state.destination, queued))
                    }
                };
                Ok(Done::Retry(reply, result))
            }
            Job::Prune { .. } | Job::Shutdown => unreachable!("handled outside groups"),
        }
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
            let Some(integration) = config
                .integrations
                .iter()
                .find(|i| i.id == record.integration)
            else {
                continue;
            };
            let wanted: Vec<&str> = integration
                .destinations
                .iter()
                .filter(|d| {
                    config
                        .destinations
                        .iter()
                        .any(|x| &x.id == *d && x.events.contains(&event))
                })
                .map(String::as_str)
                .collect();
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
                let note = views::Note::Delivery {
                    destination: destination.to_string(),
                    event,
                };
                views::note(&mut txn.batch, alert_id, id, &note);
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

    fn remove_chunks(&self, batch: &mut sled::Batch, kind: u8, id: u64) -> Result<(), Error> {
        for key in self.store.tree.scan_prefix(chunk_prefix(kind, id)).keys() {
            batch.remove(key?);
        }
        Ok(())
    }

    /// Makes the applied batch durable: sled's own flush, then fdatasync of its data file.
    fn sync(&self) -> Result<(), Error> {
        sync_files(&self.store.db, &self.data_file, &self.store.path.join("db"))
    }

    /// Adds removals of the oldest entries of each integration over its count limit.
    fn prune_by_count(
        &self,
        batch: &mut sled::Batch,
        added: &HashMap<String, usize>,
    ) -> Result<HashMap<String, usize>, Error> {
        let mut removed = HashMap::new();
        for (integration, n) in added {
            let total = self.counts.get(integration).copied().unwrap_or(0) + n;
            let excess = total.saturating_sub(self.retention.max_entries);
            if excess == 0 {
                continue;
            }
            let mut done = 0;
            for item in self.store.index(integration).take(excess) {
                let (id, _) = item?;
                self.remove_log(batch, integration, id)?;
                done += 1;
            }
            removed.insert(integration.clone(), done);
        }
        Ok(removed)
    }

    fn prune_by_age(&mut self, now: SystemTime) -> Result<Option<SystemTime>, Error> {
        let cutoff = unix_ms(now).saturating_sub(self.retention.max_age.as_millis() as u64);
        let mut batch = sled::Batch::default();
        let mut removed: HashMap<String, usize> = HashMap::new();
        let mut oldest_kept: Option<u64> = None;
        for integration in self.counts.keys() {
            for item in self.store.index(integration) {
                let (id, received) = item?;
                if received >= cutoff {
                    oldest_kept = Some(oldest_kept.map_or(received, |o| o.min(received)));
                    break;
                }
                self.remove_log(&mut batch, integration, id)?;
                *removed.entry(integration.clone()).or_default() += 1;
            }
        }
        // Dead letters follow the logs' age limit (checked whenever the logs are).
        let mut dead = 0;
        for kv in self.store.tree.scan_prefix([outbox::DEAD]) {
            let (k, v) = kv?;
            let id = u64_at(&k[1..]);
            let state: DeliveryState =
                serde_json::from_slice(&v).map_err(|source| Error::Corrupt {
                    key: format!("delivery {id}"),
                    source,
                })?;
            if state.dead_ms.unwrap_or(0) < cutoff {
                batch.remove(k);
                views::unnote(&mut batch, state.alert_id, id);
                self.remove_chunks(&mut batch, outbox::PAYLOAD, id)?;
                dead += 1;
            }
        }
        if !removed.is_empty() || dead > 0 {
            self.store.tree.apply_batch(batch)?;
            self.sync()?;
            for (integration, n) in removed {
                if let Some(c) = self.counts.get_mut(&integration) {
                    *c = c.saturating_sub(n);
                }
            }
        }
        Ok(oldest_kept
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms) + self.retention.max_age))
    }

    fn remove_log(&self, batch: &mut sled::Batch, integration: &str, id: u64) -> Result<(), Error> {
        views::unindex_log(&self.store.tree, batch, integration, id)?;
        batch.remove(index_key(integration, id));
        for kind in [LOG, RAW] {
            self.remove_chunks(batch, kind, id)?;
        }
        Ok(())
    }
}

/// The alert change an input's outcome stands for, if any.
fn ingest_change(outcome: alerts::Outcome) -> Option<AlertChange> {
    use alerts::Outcome as O;
    match outcome {
        O::Created => Some(AlertChange::Created),
        O::Dropped => Some(AlertChange::Dropped),
        O::Aggregated => Some(AlertChange::Aggregated),
        O::Resolved => Some(AlertChange::Resolved(ResolvedBy::Integration)),
        O::Acknowledged => Some(AlertChange::Acknowledged(ResolvedBy::Integration)),
        O::Ignored | O::Rejected => None,
    }
}

fn put_log(
    batch: &mut sled::Batch,
    id: u64,
    log: &NewLog,
    outcome: Option<alerts::Outcome>,
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
    views::index_log(batch, &log.integration, id, received, outcome, alert_id);
    Ok(())
}
