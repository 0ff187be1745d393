//! The writer on PostgreSQL: the same [`Job`] queue and [`WriterHandle`] as the sled writer,
//! so the pipeline cannot tell them apart. It takes whatever is queued as one group (up to
//! [`MAX_GROUP`]) and commits it as one transaction ([`group::commit`]); several groups may be in
//! flight at once on different connections (the server group-commits their WAL flushes), and
//! each caller is answered only after its own group's COMMIT returned.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::super::Error;
use super::super::jobs::{Job, Reply};
use super::super::writer::{OutboxFeed, Writer, WriterHandle};
use super::group::{self, Answer, Out, Work};
use super::{PgStore, background, on_runtime};
use crate::config::{Live, LogsConfig};
use crate::metrics::Metrics;

/// Requests in one group at most.
const MAX_GROUP: usize = 256;
/// Queue depth before submitters wait.
const QUEUE: usize = 1024;

/// What every group task shares.
struct Ctx {
    store: PgStore,
    live: Option<Live>,
    queued: Option<mpsc::UnboundedSender<Vec<(String, super::super::Queued)>>>,
    metrics: Arc<Metrics>,
    fault: Arc<AtomicBool>,
    deadline_moved: Arc<Notify>,
}

/// Starts the PostgreSQL writer and its background work (health, shared outbox, retention).
pub(in crate::store) fn spawn(
    store: PgStore,
    retention: LogsConfig,
    outbox: Option<OutboxFeed>,
    metrics: Arc<Metrics>,
) -> Result<(Writer, WriterHandle), Error> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let fault = Arc::new(AtomicBool::new(false));
    let deadline_moved = Arc::new(Notify::new());
    let down = Arc::new(Mutex::new(None));
    let (live, queued) = match outbox {
        Some(o) => (Some(o.live), Some(o.queued)),
        None => (None, None),
    };
    let stop = CancellationToken::new();
    super::runtime().spawn(background::run(background::Background {
        store: store.clone(),
        retention: retention.clone(),
        live: live.clone(),
        queued: queued.clone(),
        metrics: metrics.clone(),
        deadline_moved: deadline_moved.clone(),
        down: down.clone(),
        stop: stop.clone(),
    }));
    // Groups in flight at once: half the pool, leaving connections for reads and claims.
    let slots = (store.pool.status().max_size / 2).max(1);
    let ctx = Arc::new(Ctx {
        store,
        live,
        queued,
        metrics,
        fault: fault.clone(),
        deadline_moved: deadline_moved.clone(),
    });
    let task = tokio::spawn(run(ctx, rx, slots, retention, stop));
    Ok((
        Writer {
            task,
            tx: tx.clone(),
        },
        WriterHandle {
            tx,
            fault,
            deadline_moved,
            unwritable: Arc::default(),
            down,
            folding: Default::default(),
        },
    ))
}

async fn run(
    ctx: Arc<Ctx>,
    mut rx: mpsc::Receiver<Job>,
    slots: usize,
    retention: LogsConfig,
    stop: CancellationToken,
) {
    let groups = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(slots));
    let mut running = true;
    while running {
        // A slot first: while every slot is busy, requests queue up and the next group grows.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some(first) = rx.recv().await else { break };
        let mut works = Vec::new();
        let mut replies = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Shutdown => {
                    running = false;
                    break;
                }
                Job::Prune { now, reply } => {
                    let store = ctx.store.clone();
                    let max_age = retention.max_age;
                    groups.spawn(async move {
                        let next =
                            on_runtime(
                                async move { background::prune(&store, now, max_age).await },
                            )
                            .await;
                        let _ = reply.send(next);
                    });
                }
                Job::Write(work, reply) => {
                    works.push(work);
                    replies.push(reply);
                }
            }
            if works.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if works.is_empty() {
            continue;
        }
        let ctx = ctx.clone();
        groups.spawn(async move {
            let _permit = permit;
            commit(&ctx, works, replies).await;
        });
    }
    groups.close();
    groups.wait().await;
    stop.cancel();
}

/// Commits one group and answers each of its callers.
async fn commit(ctx: &Arc<Ctx>, works: Vec<Work>, replies: Vec<Reply>) {
    let started = Instant::now();
    let requests = works.len();
    let config = ctx.live.as_ref().map(|l| l.get());
    let c = ctx.clone();
    let result =
        on_runtime(async move { group::commit(&c.store, &works, config, &c.fault).await }).await;
    match result {
        Ok(Out {
            answers,
            queued,
            changes,
            earliest,
        }) => {
            let elapsed = started.elapsed();
            ctx.metrics.commit(elapsed, requests);
            ctx.metrics.alert_changes(&changes);
            tracing::trace!(requests, ?elapsed, "group commit");
            if earliest.is_some() {
                ctx.deadline_moved.notify_one();
            }
            if let Some(feed) = &ctx.queued
                && !queued.is_empty()
            {
                let _ = feed.send(queued);
            }
            for (reply, answer) in replies.into_iter().zip(answers) {
                answer_one(reply, answer);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, requests, "group commit failed; every request in it was answered with a failure");
            ctx.metrics.commit_failed();
            let shared = Arc::new(e);
            for reply in replies {
                fail_one(reply, &shared);
            }
        }
    }
}

fn answer_one(reply: Reply, answer: Answer) {
    let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    match (reply, answer) {
        (Reply::Ingest(r), Answer::Ingest(receipts)) => drop(r.send(Ok(receipts))),
        (Reply::Change(r), Answer::Change(result)) => drop(r.send(*result)),
        (Reply::AutoResolve(r), Answer::AutoResolve(next)) => drop(r.send(Ok(next.map(at)))),
        (Reply::Delivery(r), Answer::Delivery) => drop(r.send(Ok(()))),
        (reply, _) => fail_one(reply, &Arc::new(Error::Stopped)),
    }
}

fn fail_one(reply: Reply, e: &Arc<Error>) {
    let err = || Error::Commit(e.clone());
    match reply {
        Reply::Ingest(r) => drop(r.send(Err(err()))),
        Reply::Change(r) => drop(r.send(Err(err()))),
        Reply::AutoResolve(r) => drop(r.send(Err(err()))),
        Reply::Delivery(r) => drop(r.send(Err(err()))),
        Reply::Silence(r) => drop(r.send(Err(err()))),
    }
}
