//! One group commit on PostgreSQL: every request of the group applied by the shared rules
//! (`apply.rs`) in one transaction ([`PgTxn`]), committed with `synchronous_commit` on, and
//! retried whole when the server aborts it for a deadlock, a serialization failure or a unique
//! violation another node's commit caused. Nothing of a group is visible, or answered, before
//! its COMMIT returns. Runs on a blocking thread: the rules wait for each statement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres::error::SqlState;

use super::super::alerts::{Action, AlertRequest};
use super::super::apply::{Group, enqueue};
use super::super::fold::STORM_ID;
use super::super::jobs::{Answer, Request};
use super::super::rules::bounded_request;
use super::super::{Error, Queued, unix_ms};
use super::rows::fnv;
use super::txn::PgTxn;
use super::{PgStore, db_error, wait};
use crate::config::Config;
use crate::metrics::AlertChange;

/// Whole-group retries after a conflict with another node.
const RETRIES: u32 = 5;
/// Ids fetched at the start of a group beyond one per log entry (its alerts, notes, deliveries).
const SPARE_IDS: i64 = 8;

/// A committed group.
pub(super) struct Out {
    /// Each request's result, in order: its answer or its own error.
    pub results: Vec<Result<Answer, Error>>,
    pub queued: Vec<(String, Queued)>,
    pub changes: Vec<(String, AlertChange)>,
    pub earliest: Option<u64>,
}

/// A failed attempt: the store's error, and the database's whole when it came from there.
type Failed = (Error, Option<tokio_postgres::Error>);

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::UNIQUE_VIOLATION
    )
}

/// An error that is one request's answer, found before the request wrote anything: the rest of
/// the group goes on. Any other error fails the group (nothing of it is committed).
fn request_error(e: &Error) -> bool {
    matches!(
        e,
        Error::NoSuchAlert(_) | Error::NoSuchDeadLetter(_) | Error::Conflict { .. }
    )
}

/// Commits the group, retrying it whole when the server asks for that. Blocking.
pub(super) fn commit(
    store: &PgStore,
    requests: &[Request],
    config: Option<&Config>,
    fault: &AtomicBool,
) -> Result<Out, Error> {
    let mut attempt = 0;
    loop {
        match once(store, requests, config, fault) {
            Ok(out) => return Ok(out),
            Err((e, Some(pg))) if attempt < RETRIES && retryable(&pg) => {
                attempt += 1;
                tracing::debug!(attempt, error = %e, "group commit conflicted; retrying");
                let jitter = fastrand::u64(1..=10 * u64::from(attempt));
                std::thread::sleep(Duration::from_millis(jitter));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

fn once(
    store: &PgStore,
    requests: &[Request],
    config: Option<&Config>,
    fault: &AtomicBool,
) -> Result<Out, Failed> {
    let mut client = wait(store.client()).map_err(|e| (e, None))?;
    let tx = wait(client.transaction()).map_err(|e| (db_error(&e), Some(e)))?;
    let mut group = Group::new(PgTxn::new(&tx, &store.node), unix_ms(crate::clock::now()));
    let (keys, logs) = locks(requests);
    if !keys.is_empty() {
        group
            .txn
            .execute(
                "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k",
                &[&keys],
            )
            .map_err(|e| failed(e, &mut group.txn))?;
    }
    group
        .txn
        .fetch_ids(logs + SPARE_IDS)
        .map_err(|e| failed(e, &mut group.txn))?;
    if config.is_some_and(|c| !c.destinations.is_empty()) {
        group.txn.events = Some(Vec::new());
    }
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        let (changes, events) = (group.changes.len(), events_len(&group.txn));
        match group.apply(request) {
            Ok(answer) => results.push(Ok(answer)),
            Err(e) if request_error(&e) => {
                group.changes.truncate(changes);
                if let Some(ev) = &mut group.txn.events {
                    ev.truncate(events);
                }
                results.push(Err(e));
            }
            Err(e) => return Err(failed(e, &mut group.txn)),
        }
    }
    let now = group.now;
    let mut queued = std::mem::take(&mut group.retried);
    let finish = (|| {
        group.txn.flush()?;
        if let (Some(config), Some(events)) = (config, group.txn.events.take()) {
            queued.extend(enqueue(&mut group.txn, config, events, now)?);
        }
        if fault.load(Ordering::SeqCst) {
            return Err(Error::Injected);
        }
        Ok(())
    })();
    finish.map_err(|e| failed(e, &mut group.txn))?;
    let Group { changes, txn, .. } = group;
    let earliest = txn.earliest;
    drop(txn);
    wait(tx.commit()).map_err(|e| (db_error(&e), Some(e)))?;
    Ok(Out {
        results,
        queued,
        changes,
        earliest,
    })
}

/// The store's error and, when the database failed, its error whole.
fn failed(e: Error, txn: &mut PgTxn<'_, '_>) -> Failed {
    (e, txn.failed.take())
}

fn events_len(txn: &PgTxn<'_, '_>) -> usize {
    txn.events.as_ref().map_or(0, Vec::len)
}

/// The advisory lock key of a text under a kind: the same on every node.
fn lock_key(kind: &str, integration: &str, text: &str) -> i64 {
    fnv(&[kind.as_bytes(), integration.as_bytes(), text.as_bytes()])
}

/// Every lock the group's inputs need, in key order (two groups never wait for each other in a
/// circle), and how many log entries it writes.
fn locks(requests: &[Request]) -> (Vec<i64>, i64) {
    let mut keys = Vec::new();
    let mut logs = 0;
    for request in requests {
        let Request::Ingest(entries, _) = request else {
            continue;
        };
        logs += entries.len() as i64;
        for log in entries {
            if let Some(req) = &log.alert {
                locks_of(&log.integration, req, &mut keys);
            }
        }
    }
    keys.sort_unstable();
    keys.dedup();
    (keys, logs)
}

/// The locks one request needs: each third-party id it looks up or adds, its title window key,
/// and its integration's storm alert (which also guards the storm window).
fn locks_of(integration: &str, req: &AlertRequest, out: &mut Vec<i64>) {
    if req.action == Action::Other {
        return;
    }
    let req = bounded_request(req);
    out.push(lock_key("tp", integration, &req.thirdparty_id));
    if matches!(req.action, Action::Create | Action::Drop) {
        for key in &req.dedup_keys {
            out.push(lock_key("tp", integration, key));
        }
        if req.aggregate.is_some() {
            let key = req.fold.key.as_deref().unwrap_or(&req.title);
            out.push(lock_key("title", integration, key));
        }
        if req.fold.storm.is_some() {
            out.push(lock_key("tp", integration, STORM_ID));
        }
    }
}
