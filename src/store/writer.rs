//! The group-commit writer: one task owns every write. It takes all pending requests,
//! works out their writes, appends them to Siren's journal with one `pwrite` and one
//! `fdatasync` (`journal.rs`), answers each waiting caller, then writes them to sled (flushed
//! behind the journal; reads wait at the store's gate until it holds them). It never calls `flush_async` (sled issue 1308).
//! Alert changes happen here too, so reads-then-writes (aggregation) never race.
//!
//! Every caller gets an answer of its own: its result, its own error (one input that cannot be
//! applied leaves the rest of its group alone), or the group's failure. When writes fail the
//! writer heals the store by itself (`heal.rs`) and answers [`Error::Unavailable`] meanwhile.
//! It also reopens the store now and then on purpose, to bound the next start-up (`reopen.rs`).

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::alerts::{self, UserChange};
use super::commit::Appender;
use super::fold::Folding;
use super::heal::Failing;
use super::jobs::{Answer, Job, Prune, Reply, Request};
use super::journal::{Journal, open_data_file};
use super::outbox::{self, DeliveryState, Queued};
use super::reopen::Bounds;
use super::seam::Backend;
use super::silences::{self, SilenceOp};
use super::{Alert, Error, NewLog, SledStore, Store};
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

/// Submits writes to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    pub(super) tx: mpsc::Sender<Job>,
    pub(super) fault: Arc<AtomicBool>,
    /// Woken when a commit adds an auto-resolve deadline earlier than the last one reported.
    pub(super) deadline_moved: Arc<Notify>,
    /// Why sled writes are failing, while they are (the healing writer sets it).
    pub(super) unwritable: Arc<Mutex<Option<Arc<str>>>>,
    /// Why the store cannot take writes now (PostgreSQL unreachable), for `/readyz`.
    pub(super) down: Arc<Mutex<Option<String>>>,
    /// The silences in force, which `commit` marks inputs with (`fold.rs`).
    pub(super) folding: Folding,
    /// Whether `commit` packs its inputs' values itself (`packed::prepack`; sled's writer).
    pub(super) prepack: bool,
}

impl WriterHandle {
    pub(super) async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<T>) -> Job,
    ) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(job(reply)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Writes the entries and their alert changes durably; returns what each came to, in order.
    pub async fn commit(&self, mut logs: Vec<NewLog>) -> Result<Vec<Receipt>, Error> {
        self.folding.mark(&mut logs);
        let packed = match self.prepack {
            true => super::packed::prepack(&logs),
            false => Vec::new(),
        };
        self.submit(|reply| Job::Write(Request::Ingest(logs, packed), Reply::Ingest(reply)))
            .await?
    }

    /// Acknowledges or resolves (by `user`) one alert.
    pub async fn change(
        &self,
        id: u64,
        change: UserChange,
        now: SystemTime,
    ) -> Result<Alert, Error> {
        let request = Request::Change { id, change, now };
        self.submit(|reply| Job::Write(request, Reply::Change(reply)))
            .await?
    }

    /// Resolves (by `auto`) alerts whose deadline has passed; returns the next deadline.
    pub async fn auto_resolve(&self, now: SystemTime) -> Result<Option<SystemTime>, Error> {
        let request = Request::AutoResolve { now };
        self.submit(|reply| Job::Write(request, Reply::AutoResolve(reply)))
            .await?
    }

    /// Resolves when a commit added an auto-resolve deadline earlier than the last reported,
    /// or the store was reopened (deadlines may differ from what was last reported).
    pub async fn deadline_moved(&self) {
        self.deadline_moved.notified().await
    }

    /// Records how a delivery attempt ended (durably, before it returns).
    pub async fn delivery(&self, id: u64, outcome: DeliveryOutcome) -> Result<(), Error> {
        let request = Request::Delivery { id, outcome };
        self.submit(|reply| Job::Write(request, Reply::Delivery(reply)))
            .await?
    }

    pub(super) async fn silence_request(
        &self,
        op: SilenceOp,
    ) -> Result<Option<Box<silences::Record>>, Error> {
        let request = Request::Silence(op);
        self.submit(|reply| Job::Write(request, Reply::Silence(reply)))
            .await?
    }

    /// Drops log entries older than the retention age; returns when the next one expires.
    pub async fn prune(&self, now: SystemTime) -> Result<Option<SystemTime>, Error> {
        self.submit(|reply| Job::Prune { now, reply }).await?
    }

    /// False once the writer task has ended (shutdown): nothing more is stored.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Why the store cannot be used right now (its database is unreachable), if it cannot.
    pub fn unavailable(&self) -> Option<String> {
        self.down.lock().ok().and_then(|d| d.clone())
    }

    /// Why writes are failing (a full disk, an I/O error), while they are; `None` when the
    /// store takes writes.
    pub fn unwritable(&self) -> Option<Arc<str>> {
        self.unwritable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes every following commit fail (until turned off), as a full disk would: the writer
    /// answers failures and heals once it is turned off. For tests and failure drills: the
    /// daemon must answer 451/503, say so on `/readyz`, and stay up.
    pub fn inject_failure(&self, on: bool) {
        self.fault.store(on, Ordering::SeqCst);
    }
}

/// The writer task. [`Writer::join`] ends it after everything queued so far is committed.
pub struct Writer {
    pub(super) task: JoinHandle<()>,
    pub(super) tx: mpsc::Sender<Job>,
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
        Self::spawn_with(store, retention, outbox, metrics, Bounds::default())
    }

    /// As [`Writer::spawn`], reopening a sled store at `bounds` (tests and `bench/fill.rs`).
    pub fn spawn_with(
        store: Store,
        retention: LogsConfig,
        outbox: Option<OutboxFeed>,
        metrics: Arc<Metrics>,
        bounds: Bounds,
    ) -> Result<(Writer, WriterHandle), Error> {
        // The engine behind the store decides which writer runs; the handle is the same.
        let store = match store.0 {
            Backend::Sled(s) => s,
            Backend::Postgres(pg) => {
                return super::postgres::spawn_writer(pg, retention, outbox, metrics);
            }
        };
        let tree = store.tree()?;
        let counts = super::index::counts(&tree)?;
        let outbox_depth = tree.scan_prefix([outbox::PENDING]).count() as u64;
        metrics.set_outbox_depth(outbox_depth);
        metrics.set_store_writable(true);
        let (tx, rx) = mpsc::channel(QUEUE);
        let folding = Folding::load(&tree)?;
        let handle = WriterHandle {
            tx: tx.clone(),
            fault: Arc::new(AtomicBool::new(false)),
            deadline_moved: Arc::new(Notify::new()),
            unwritable: Arc::new(Mutex::new(None)),
            down: Arc::default(),
            folding: folding.clone(),
            prepack: true,
        };
        let data_file = Arc::new(open_data_file(&store)?);
        let journal = Journal::open(&store.path, &store.handles()?.db, &tree, &data_file)?;
        let state = State {
            data_file,
            next_seq: journal.next_seq(),
            journal: Arc::new(Mutex::new(journal)),
            since_open: 0,
            bounds,
            store,
            retention,
            counts,
            fault: handle.fault.clone(),
            deadline_moved: handle.deadline_moved.clone(),
            reported_deadline: None,
            outbox,
            outbox_depth,
            metrics,
            failing: None,
            unwritable: handle.unwritable.clone(),
            folding,
            appender: None,
        };
        let task = tokio::spawn(state.run(rx));
        Ok((Writer { task, tx }, handle))
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

/// What answering a group needs, kept from applying it until it is durable.
pub(super) struct Applied {
    /// Each request's result, in order: its answer or its own error.
    pub results: Vec<Result<Answer, Error>>,
    pub queued: Vec<(String, Queued)>,
    pub changes: Vec<(String, AlertChange)>,
    pub started: Instant,
    pub earliest: Option<u64>,
    /// The group's writes as a journal record: durable once its sync returns.
    pub journal: Vec<u8>,
    /// The record's sequence number (stamped into the group's writes).
    pub seq: u64,
    /// The group's writes, for sled once the record is durable.
    pub writes: super::writes::Writes,
    /// Set when the group as a whole could not be applied or made durable.
    pub failed: Option<Error>,
}

impl Applied {
    /// A group none of whose requests reached the tree.
    pub(super) fn failed(started: Instant, e: Error) -> Self {
        Applied {
            results: Vec::new(),
            queued: Vec::new(),
            changes: Vec::new(),
            started,
            earliest: None,
            journal: Vec::new(),
            seq: 0,
            writes: Default::default(),
            failed: Some(e),
        }
    }
}

pub(super) struct State {
    pub store: SledStore,
    pub data_file: Arc<File>,
    /// Where each group is made durable (sled is flushed behind it).
    pub journal: Arc<Mutex<Journal>>,
    /// The journal sequence number of the next group applied (the journal's own is one group
    /// behind while a sync is in flight).
    pub next_seq: u64,
    /// Journal payload bytes appended since the store was last opened: what the next start
    /// would replay, about ([`Bounds`]).
    pub since_open: u64,
    pub bounds: Bounds,
    pub retention: LogsConfig,
    pub counts: std::collections::HashMap<String, usize>,
    pub fault: Arc<AtomicBool>,
    pub deadline_moved: Arc<Notify>,
    /// The next auto-resolve deadline as last reported to the timer.
    pub reported_deadline: Option<u64>,
    pub outbox: Option<OutboxFeed>,
    pub metrics: Arc<Metrics>,
    /// Pending deliveries in the outbox (the `siren_outbox_depth` gauge).
    pub outbox_depth: u64,
    /// Set from the first failed write until the store is healed.
    pub failing: Option<Failing>,
    /// What [`WriterHandle::unwritable`] reads.
    pub unwritable: Arc<Mutex<Option<Arc<str>>>>,
    pub folding: Folding,
    /// The journal's thread, once a group followed another ([`State::commit_group`]).
    pub appender: Option<Appender>,
}

/// One group's jobs as collected from the queue.
#[derive(Default)]
pub(super) struct Collected {
    pub requests: Vec<Request>,
    pub replies: Vec<Reply>,
    pub prunes: Vec<Prune>,
    pub shutdown: bool,
}

impl Collected {
    fn fail(self, e: impl Fn() -> Error) {
        for reply in self.replies {
            reply.fail(e());
        }
        for (_, reply) in self.prunes {
            let _ = reply.send(Err(e()));
        }
    }
}

/// Takes `first` and whatever else is queued, up to [`MAX_GROUP`] writes.
fn collect(first: Job, rx: &mut mpsc::Receiver<Job>) -> Collected {
    let mut c = Collected::default();
    let mut next = Some(first);
    while let Some(job) = next.take() {
        match job {
            Job::Write(request, reply) => {
                c.requests.push(request);
                c.replies.push(reply);
            }
            Job::Prune { now, reply } => c.prunes.push((now, reply)),
            Job::Shutdown => {
                c.shutdown = true;
                break;
            }
        }
        if c.requests.len() < MAX_GROUP {
            next = rx.try_recv().ok();
        }
    }
    c
}

impl State {
    /// Collects whatever is queued into one group and commits it on the blocking pool: applies
    /// it (computing its writes, reading the tree and the group's own changes), appends its
    /// record to the journal with one `pwrite` and one `fdatasync`, answers every caller, and
    /// then writes it to sled, key by key ([`super::writes::Writes::write_to`]). One
    /// group at a time: while one commits, the next one queues up, so a group is as large as
    /// what arrived during the last (and follows it on the same blocking thread,
    /// [`State::commit_blocking`]). sled never holds a write whose record is not durable,
    /// which is what makes key-by-key writes safe (ARCHITECTURE.md, "Durability details").
    /// (On the blocking pool, tokio knows work is in flight: paused-time tests do not run the
    /// clock ahead during a commit.)
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        loop {
            let retry_at = self.failing.as_ref().map(|f| f.retry_at);
            let first = tokio::select! {
                job = rx.recv() => job,
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)),
                    if retry_at.is_some() =>
                {
                    self = self.heal_blocking().await;
                    continue;
                }
                _ = tokio::time::sleep(self.bounds.idle_wait),
                    if self.reopen_due(true) =>
                {
                    self = self.reopen_blocking().await;
                    continue;
                }
            };
            let Some(first) = first else { break };
            let group = collect(first, &mut rx);
            let shutdown = group.shutdown;
            // Past the hard bound, the store is reopened before this group, writes or not.
            if self.reopen_due(false) {
                self = self.reopen_blocking().await;
            }
            // Writes are waiting: worth an attempt now (the first step is a cheap probe).
            if self.failing.is_some() {
                self = self.heal_blocking().await;
            }
            if let Some(f) = &self.failing {
                let reason = f.reason.clone();
                group.fail(|| Error::Unavailable(reason.clone()));
                if shutdown {
                    break;
                }
                continue;
            }
            let Some((state, queue, shutdown)) = self.commit_blocking(group, rx).await else {
                return;
            };
            (self, rx) = (state, queue);
            if shutdown {
                break;
            }
        }
        tracing::info!(journal_bytes = self.since_open, "store writer ends");
        if self.failing.is_none()
            && let Ok(h) = self.store.handles()
        {
            let flushed = tokio::task::spawn_blocking(move || h.db.flush()).await;
            if !matches!(flushed, Ok(Ok(_))) {
                tracing::error!("final store flush failed");
            }
        }
    }

    /// Commits `group` on the blocking pool, and then each group that queued up meanwhile, on
    /// the same thread, until the queue is empty: under load a group follows the last without
    /// a round trip through the writer's task (a wake-up of it, then of a blocking thread).
    /// The callers are woken from the thread that synced their group. It hands the state and
    /// the queue back when the queue is empty, at a shutdown, when the store fails (healing
    /// runs from the writer's task) or when the store is due to be reopened. A panic while
    /// applying counts as a failed write of the whole group (the store is then healed).
    /// `None` only if the blocking task itself was lost.
    async fn commit_blocking(
        mut self,
        mut group: Collected,
        mut rx: mpsc::Receiver<Job>,
    ) -> Option<(Self, mpsc::Receiver<Job>, bool)> {
        let task = tokio::task::spawn_blocking(move || {
            let handles = match self.store.handles() {
                Ok(h) => h,
                Err(e) => {
                    let shutdown = group.shutdown;
                    self.finish(Applied::failed(Instant::now(), e), group.replies);
                    self.run_prunes(group.prunes);
                    return (self, rx, shutdown);
                }
            };
            let mut last = None;
            loop {
                let shutdown = group.shutdown;
                last = self.commit_collected(&handles, group, last);
                if shutdown || self.failing.is_some() || self.reopen_due(false) {
                    self.write_last(&handles, last, true);
                    return (self, rx, shutdown);
                }
                match rx.try_recv() {
                    Ok(first) => group = collect(first, &mut rx),
                    Err(_) => {
                        self.write_last(&handles, last, true);
                        return (self, rx, false);
                    }
                }
            }
        });
        match task.await {
            Ok(done) => Some(done),
            Err(e) => {
                tracing::error!(error = %e, "store writer lost its state; no more writes");
                None
            }
        }
    }

    /// Answers a group once it is durable (or could not be made so): every waiting caller,
    /// the metrics, the resolver and the delivery workers.
    pub(super) fn finish(&mut self, mut applied: Applied, replies: Vec<Reply>) {
        let requests = replies.len();
        let failure = match (applied.failed.take(), &self.failing) {
            (Some(e), _) => Some(e),
            (None, Some(f)) => Some(Error::Unavailable(f.reason.clone())),
            (None, None) => None,
        };
        if let Some(e) = failure {
            tracing::error!(error = %e, requests, "group commit failed; every request in it was answered with a failure");
            self.metrics.commit_failed();
            if e.is_store_failure() {
                self.enter_failing(&e);
            }
            let shared = Arc::new(e);
            for reply in replies {
                reply.fail(Error::Commit(shared.clone()));
            }
            return;
        }
        let settled = self.answerer().answer(applied, replies);
        self.settle(settled);
    }
}
