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

use super::alerts::{self, UserChange};
use super::outbox::{self, DeliveryState, Queued};
use super::{Alert, Error, NewLog, Store};
use crate::config::{Live, LogsConfig};
use crate::metrics::{AlertChange, Metrics};

/// Requests handled in one group commit at most; bounds the latency of the first one.
const MAX_GROUP: usize = 256;
/// Queue depth before submitters wait: back-pressure instead of unbounded memory.
const QUEUE: usize = 1024;

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

pub(super) enum Job {
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
    /// A user's retry of a dead letter: back to the outbox, attempts reset.
    Retry {
        id: u64,
        now: SystemTime,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// Commit what was queued before this, flush, and end the writer.
    Shutdown,
}

/// A job applied to the group's transaction, waiting for the commit to answer.
pub(super) enum Done {
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
pub(super) struct Applied {
    pub done: Vec<Done>,
    pub queued: Vec<(String, Queued)>,
    pub changes: Vec<(String, AlertChange)>,
    pub requests: usize,
    pub started: std::time::Instant,
    pub earliest: Option<u64>,
    pub failed: Option<Error>,
}

/// sled's blocking flush (its log, with `sync_file_range`), then fdatasync of its data file,
/// which that does not make durable by itself (file metadata).
pub(super) fn sync_files(db: &sled::Db, file: &File, path: &std::path::Path) -> Result<(), Error> {
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

pub(super) struct State {
    pub store: Store,
    pub data_file: Arc<File>,
    pub retention: LogsConfig,
    pub counts: HashMap<String, usize>,
    pub fault: Arc<AtomicBool>,
    pub deadline_moved: Arc<Notify>,
    /// The next auto-resolve deadline as last reported to the timer.
    pub reported_deadline: Option<u64>,
    pub outbox: Option<OutboxFeed>,
    pub metrics: Arc<Metrics>,
    /// Pending deliveries in the outbox (the `siren_outbox_depth` gauge).
    pub outbox_depth: u64,
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
}
