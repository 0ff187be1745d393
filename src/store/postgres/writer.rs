//! The writer on PostgreSQL: the same [`Job`] queue and [`WriterHandle`] as the sled writer,
//! so the pipeline cannot tell them apart. It takes whatever is queued as one group (up to
//! [`MAX_GROUP`]) and commits it as one transaction ([`group::commit`]); several groups may be in
//! flight at once on different connections (the server group-commits their WAL flushes), and
//! each caller is answered only after its own group's COMMIT returned.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::super::Error;
use super::super::fold::Folding;
use super::super::jobs::{Answer, Job, Reply, Request};
use super::super::writer::{OutboxFeed, Writer, WriterHandle};
use super::group::{self, Out};
use super::{PgStore, background, block, wait};
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
    /// Why commits are failing, while they are (`/readyz`).
    unwritable: Unwritable,
    /// Pending deliveries (the outbox gauge): followed commit by commit, counted again from
    /// the database by the background work (other nodes add and take deliveries too).
    depth: Arc<AtomicU64>,
}

/// What [`WriterHandle::unwritable`] reads.
pub(super) type Unwritable = Arc<Mutex<Option<Arc<str>>>>;

/// Records whether writes work: the reason while they fail, cleared by the next success.
pub(super) fn writable(unwritable: &Unwritable, metrics: &Metrics, failure: Option<&Error>) {
    let mut u = unwritable.lock().unwrap_or_else(|e| e.into_inner());
    *u = failure.map(|e| Arc::from(e.to_string()));
    metrics.set_store_writable(failure.is_none());
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
    let unwritable: Unwritable = Arc::default();
    let depth = Arc::new(AtomicU64::new(0));
    let (live, queued) = match outbox {
        Some(o) => (Some(o.live), Some(o.queued)),
        None => (None, None),
    };
    let folding = Folding::with_silences(block({
        let store = store.clone();
        async move { background::silences(&store).await }
    })?);
    let stop = CancellationToken::new();
    super::runtime().spawn(background::run(background::Background {
        folding: folding.clone(),
        store: store.clone(),
        retention: retention.clone(),
        live: live.clone(),
        queued: queued.clone(),
        metrics: metrics.clone(),
        deadline_moved: deadline_moved.clone(),
        down: down.clone(),
        stop: stop.clone(),
        fault: fault.clone(),
        unwritable: unwritable.clone(),
        depth: depth.clone(),
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
        unwritable: unwritable.clone(),
        depth,
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
            unwritable,
            down,
            folding,
            prepack: false,
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
        let mut requests = Vec::new();
        let mut replies = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Shutdown => {
                    running = false;
                    break;
                }
                Job::Prune { now, reply } => {
                    let (store, ctx) = (ctx.store.clone(), ctx.clone());
                    let max_age = retention.max_age;
                    groups.spawn(async move {
                        let next = if ctx.fault.load(Ordering::SeqCst) {
                            Err(Error::Injected)
                        } else {
                            // On a blocking thread, as a group commit: tokio knows work is in
                            // flight (paused-time tests do not run the clock ahead meanwhile).
                            tokio::task::spawn_blocking(move || {
                                wait(background::prune(&store, now, max_age))
                            })
                            .await
                            .unwrap_or_else(|e| {
                                Err(Error::Postgres(format!("pruning panicked: {e}")))
                            })
                        };
                        writable(&ctx.unwritable, &ctx.metrics, next.as_ref().err());
                        let _ = reply.send(next);
                    });
                }
                Job::Write(request, reply) => {
                    requests.push(request);
                    replies.push(reply);
                }
            }
            if requests.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if requests.is_empty() {
            continue;
        }
        let ctx = ctx.clone();
        groups.spawn(async move {
            let _permit = permit;
            commit(&ctx, requests, replies).await;
        });
    }
    groups.close();
    groups.wait().await;
    stop.cancel();
}

/// Commits one group on a blocking thread and answers each of its callers.
async fn commit(ctx: &Arc<Ctx>, requests: Vec<Request>, replies: Vec<Reply>) {
    let started = Instant::now();
    let count = requests.len();
    let config = ctx.live.as_ref().map(|l| l.get());
    let c = ctx.clone();
    let result = tokio::task::spawn_blocking(move || {
        group::commit(&c.store, &requests, config.as_deref(), &c.fault)
    })
    .await
    .unwrap_or_else(|e| Err(Error::Postgres(format!("the group commit panicked: {e}"))));
    match result {
        Ok(Out {
            results,
            queued,
            changes,
            earliest,
        }) => {
            let elapsed = started.elapsed();
            ctx.metrics.commit(elapsed, count);
            ctx.metrics.alert_changes(&changes);
            tracing::trace!(requests = count, ?elapsed, "group commit");
            if earliest.is_some() {
                ctx.deadline_moved.notify_one();
            }
            writable(&ctx.unwritable, &ctx.metrics, None);
            let left = results
                .iter()
                .filter(|r| matches!(r, Ok(Answer::Delivery(true))))
                .count() as u64;
            if !queued.is_empty() || left > 0 {
                let added = queued.len() as u64;
                let depth = ctx
                    .depth
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
                        Some((d + added).saturating_sub(left))
                    })
                    .map_or(0, |d| (d + added).saturating_sub(left));
                ctx.metrics.set_outbox_depth(depth);
            }
            if let Some(feed) = &ctx.queued
                && !queued.is_empty()
            {
                let _ = feed.send(queued);
            }
            for (reply, result) in replies.into_iter().zip(results) {
                reply.send(result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, requests = count, "group commit failed; every request in it was answered with a failure");
            ctx.metrics.commit_failed();
            writable(&ctx.unwritable, &ctx.metrics, Some(&e));
            let shared = Arc::new(e);
            for reply in replies {
                reply.fail(Error::Commit(shared.clone()));
            }
        }
    }
}
