//! Stage 8: delivery of the outbox. The writer adds deliveries in the same commit as the alert
//! change and reports them here; one worker per destination sends them ([`send`]), and records
//! each attempt's end through the writer: delivered (it leaves the outbox), retry (exponential
//! backoff with jitter, up to `retry_max`), or dead (after `max_attempts`, kept for the API).
//!
//! Order: a worker takes its deliveries in id (commit) order and never starts an alert's
//! delivery while an earlier one of the same alert is waiting for a retry, so each alert's
//! events arrive in order; other alerts' deliveries go ahead meanwhile. Each destination has
//! its own worker, so a slow or failing destination holds up no other.
//!
//! At start, every pending delivery in the store is picked up again: what was not recorded as
//! delivered before a crash is sent again (at least once; receivers can tell a repeat by its
//! delivery id, which is the same on every attempt).

mod send;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock;
use crate::config::{Destination, Live};
use crate::metrics::{self, Metrics};
use crate::store::{DeliveryOutcome, Queued, Store, WriterHandle, unix_ms};

pub use send::Sender;

/// How many pending deliveries a worker looks through for the next one that is due.
const SCAN_LIMIT: usize = 10_000;
/// How long a delivery whose destination left the configuration waits before looking again.
const UNCONFIGURED_WAIT: Duration = Duration::from_secs(60);
/// How long a worker waits after the store could not record an attempt.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// What every worker shares.
struct Shared {
    store: Store,
    writer: WriterHandle,
    live: Live,
    sender: Sender,
    metrics: Arc<Metrics>,
}

/// Runs the delivery workers until `stop`: picks up the store's pending deliveries, then the
/// ones each commit reports. Returns once every worker has finished its current attempt.
pub async fn run(
    store: Store,
    writer: WriterHandle,
    live: Live,
    mut queued: mpsc::UnboundedReceiver<Vec<(String, Queued)>>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let hello = live.get().smtp.hostname.clone();
    let shared = Arc::new(Shared {
        store,
        writer,
        live,
        sender: Sender::new(hello),
        metrics,
    });
    let workers = TaskTracker::new();
    let mut inboxes: HashMap<String, mpsc::UnboundedSender<Queued>> = HashMap::new();
    let mut route = |destination: String, q: Queued| {
        let inbox = inboxes.entry(destination.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            workers.spawn(worker(destination, shared.clone(), rx, stop.clone()));
            tx
        });
        let _ = inbox.send(q);
    };
    match shared.store.pending_deliveries() {
        Ok(pending) => {
            if !pending.is_empty() {
                tracing::info!(count = pending.len(), "resuming pending deliveries");
            }
            for (destination, q) in pending {
                route(destination, q);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the pending deliveries"),
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            batch = queued.recv() => match batch {
                Some(batch) => for (destination, q) in batch {
                    route(destination, q);
                },
                None => break,
            },
        }
    }
    // Closing the inboxes ends any worker that is idle; a busy one ends after its attempt.
    drop(inboxes);
    workers.close();
    workers.wait().await;
}

/// The next delivery that may go now, or else when the earliest waiting one is due. Skips
/// every delivery of an alert behind one of its earlier deliveries that is still waiting.
fn next_due(pending: &BTreeMap<u64, Queued>, now: u64) -> Result<u64, Option<u64>> {
    let mut blocked = HashSet::new();
    let mut wake: Option<u64> = None;
    for q in pending.values().take(SCAN_LIMIT) {
        if blocked.contains(&q.alert_id) {
            continue;
        }
        if q.next_ms <= now {
            return Ok(q.id);
        }
        blocked.insert(q.alert_id);
        wake = Some(wake.map_or(q.next_ms, |w| w.min(q.next_ms)));
    }
    Err(wake)
}

/// The wait before attempt `attempts + 1`: `retry_initial` doubled per attempt made, at most
/// `retry_max`, then between half and all of that (jitter, so retries of many deliveries do
/// not arrive together).
pub fn backoff(d: &Destination, attempts: u32) -> Duration {
    let doubled = d
        .retry_initial
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(31));
    let full = doubled.min(d.retry_max);
    let half = full / 2;
    half + full.saturating_sub(half).mul_f64(fastrand::f64())
}

async fn worker(
    destination: String,
    shared: Arc<Shared>,
    mut inbox: mpsc::UnboundedReceiver<Queued>,
    stop: CancellationToken,
) {
    let mut pending: BTreeMap<u64, Queued> = BTreeMap::new();
    loop {
        while let Ok(q) = inbox.try_recv() {
            pending.insert(q.id, q);
        }
        if stop.is_cancelled() {
            return;
        }
        let now = unix_ms(clock::now());
        match next_due(&pending, now) {
            Ok(id) => {
                // An attempt is never cut short by a stop: a receiver that got it must not
                // get it again after a restart just because its answer was not awaited.
                match attempt(&shared, &destination, pending[&id]).await {
                    Some(retry_at) => {
                        if let Some(q) = pending.get_mut(&id) {
                            q.next_ms = retry_at;
                        }
                    }
                    None => {
                        pending.remove(&id);
                    }
                }
            }
            Err(wake) => {
                let sleep = wake.map(|ms| Duration::from_millis(ms.saturating_sub(now)));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    q = inbox.recv() => match q {
                        Some(q) => { pending.insert(q.id, q); }
                        None => return,
                    },
                    _ = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => {}
                }
            }
        }
    }
}

/// Makes one attempt and records it. Returns when to try again (ms), or `None` when the
/// delivery is done with (delivered, dead, or no longer pending).
async fn attempt(shared: &Shared, destination: &str, q: Queued) -> Option<u64> {
    let config = shared.live.get();
    // A blocking read (it waits out a planned reopen of sled, or a PostgreSQL round trip):
    // off the runtime's threads, which serve SMTP and HTTP meanwhile.
    let (store, id) = (shared.store.clone(), q.id);
    let read = tokio::task::spawn_blocking(move || store.pending_delivery(id))
        .await
        .unwrap_or_else(|e| Err(crate::store::Error::Unavailable(e.to_string().into())));
    let loaded = match read {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(delivery = q.id, error = %e, "cannot read a pending delivery");
            return Some(unix_ms(clock::now()) + STORE_RETRY.as_millis() as u64);
        }
    };
    let (mut state, payload) = loaded;
    let now = || unix_ms(clock::now());
    let Some(dest) = config.destinations.iter().find(|d| d.id == destination) else {
        tracing::warn!(
            destination,
            delivery = q.id,
            "destination is no longer configured; the delivery waits for it to come back"
        );
        return Some(now() + UNCONFIGURED_WAIT.as_millis() as u64);
    };
    let sent =
        match tokio::time::timeout(dest.timeout, shared.sender.send(dest, q.id, &payload)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(dest.timeout)
            )),
        };
    let (outcome, retry_at) = match sent {
        Ok(()) => {
            tracing::info!(
                destination,
                delivery = q.id,
                alert = q.alert_id,
                event = ?state.event,
                "delivered"
            );
            (DeliveryOutcome::Delivered, None)
        }
        Err(error) => {
            let attempts = state.attempts + 1;
            if attempts >= dest.max_attempts {
                state.failed(&error, now(), Some(now()));
                tracing::error!(
                    destination,
                    delivery = q.id,
                    alert = q.alert_id,
                    attempts,
                    error,
                    "delivery failed for the last time; dead-lettered"
                );
                (DeliveryOutcome::Dead(state), None)
            } else {
                let at = now() + backoff(dest, attempts).as_millis() as u64;
                state.failed(&error, at, None);
                tracing::warn!(
                    destination,
                    delivery = q.id,
                    alert = q.alert_id,
                    attempts,
                    error,
                    retry_at = %crate::store::rfc3339_ms(at),
                    "delivery failed; will retry"
                );
                (DeliveryOutcome::Retry(state), Some(at))
            }
        }
    };
    let counted = match &outcome {
        DeliveryOutcome::Delivered => metrics::DeliveryOutcome::Delivered,
        DeliveryOutcome::Retry(_) => metrics::DeliveryOutcome::Failed,
        DeliveryOutcome::Dead(_) => metrics::DeliveryOutcome::Dead,
    };
    shared.metrics.delivery(destination, counted);
    match shared.writer.delivery(q.id, outcome).await {
        Ok(()) => retry_at,
        Err(e) => {
            tracing::error!(delivery = q.id, error = %e, "cannot record a delivery attempt; will try again");
            Some(now() + STORE_RETRY.as_millis() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: u64, alert_id: u64, next_ms: u64) -> (u64, Queued) {
        (
            id,
            Queued {
                id,
                alert_id,
                next_ms,
                attempts: 0,
            },
        )
    }

    #[test]
    fn an_alert_waiting_for_a_retry_holds_back_only_its_own_later_events() {
        let pending: BTreeMap<u64, Queued> = [q(1, 10, 500), q(2, 10, 0), q(3, 11, 0)].into();
        assert_eq!(next_due(&pending, 100), Ok(3));
        let waiting: BTreeMap<u64, Queued> = [q(1, 10, 500), q(2, 10, 0)].into();
        assert_eq!(next_due(&waiting, 100), Err(Some(500)));
        assert_eq!(next_due(&waiting, 500), Ok(1));
        assert_eq!(next_due(&BTreeMap::new(), 0), Err(None));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let config = crate::Config::parse(
            "[[destinations]]\nid = \"d\"\ntype = \"command\"\ncommand = [\"/bin/true\"]\n\
             retry_initial = \"1s\"\nretry_max = \"10s\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let d = &config.destinations[0];
        for _ in 0..100 {
            let first = backoff(d, 1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let third = backoff(d, 3);
            assert!(third >= Duration::from_secs(2) && third <= Duration::from_secs(4));
            let late = backoff(d, 40);
            assert!(late >= Duration::from_secs(5) && late <= Duration::from_secs(10));
        }
    }
}
