//! The writer on PostgreSQL: the same [`Job`] queue and [`WriterHandle`] as the sled writer,
//! so the pipeline cannot tell them apart. It takes whatever is queued as one group (up to
//! [`MAX_GROUP`]) and commits it as one transaction ([`group::commit`]); several groups may be in
//! flight at once on different connections (the server group-commits their WAL flushes), and
//! each caller is answered only after its own group's COMMIT returned.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::super::Error;
use super::super::fold::Folding;
use super::super::jobs::{Job, Reply, Request};
use super::super::writer::{OutboxFeed, Writer, WriterHandle};
use super::group::{self, Out};
use super::{PgStore, background, block, on_runtime};
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
            folding,
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
            let shared = Arc::new(e);
            for reply in replies {
                reply.fail(Error::Commit(shared.clone()));
            }
        }
    }
}
