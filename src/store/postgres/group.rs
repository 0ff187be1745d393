//! One group commit on PostgreSQL: every job of the group in one transaction (committed with
//! `synchronous_commit` on), retried whole when the server aborts it for a deadlock or a
//! serialization failure. Nothing of a group is visible, or answered, before its COMMIT returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres::error::SqlState;

use super::super::alerts::{AlertEvent, Outcome, Record, ResolvedBy, Transition, UserChange};
use super::super::apply::wanted_destinations;
use super::super::outbox::{self, DeliveryState, Payload, Queued};
use super::super::writer::{DeliveryOutcome, Receipt};
use super::super::{Alert, Error, NewLog, unix_ms};
use super::PgStore;
use super::alerts::{COLUMNS, Fail, R, Txn, locks_of, record};
use crate::config::Config;
use crate::metrics::{Actor, AlertChange};

/// Alerts auto-resolved in one group at most; the rest follow in the next.
const AUTO_RESOLVE_BATCH: i64 = 1000;
/// Whole-group retries after a deadlock or serialization failure.
const RETRIES: u32 = 5;

/// A job's data, apart from where its answer goes: the sled writer's requests.
pub(super) use super::super::jobs::Request as Work;

/// What a job came to, once its group committed.
pub(super) enum Answer {
    Ingest(Vec<Receipt>),
    Change(Box<Result<Alert, Error>>),
    AutoResolve(Option<u64>),
    Delivery,
}

/// A committed group.
pub(super) struct Out {
    pub answers: Vec<Answer>,
    pub queued: Vec<(String, Queued)>,
    pub changes: Vec<(String, AlertChange)>,
    pub earliest: Option<u64>,
}

fn retryable(e: &Fail) -> bool {
    let Fail::Pg(e) = e else { return false };
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::UNIQUE_VIOLATION
    )
}

/// Commits the group, retrying it whole when the server asks for that.
pub(super) async fn commit(
    store: &PgStore,
    works: &[Work],
    config: Option<Arc<Config>>,
    fault: &AtomicBool,
) -> Result<Out, Error> {
    let mut attempt = 0;
    loop {
        match once(store, works, config.as_deref(), fault).await {
            Ok(out) => return Ok(out),
            Err(e) if attempt < RETRIES && retryable(&e) => {
                attempt += 1;
                tracing::debug!(attempt, error = ?e, "group commit conflicted; retrying");
                let jitter = fastrand::u64(1..=10 * u64::from(attempt));
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            Err(Fail::Pg(e)) => return Err(super::db_error(e)),
            Err(Fail::Store(e)) => return Err(e),
        }
    }
}

async fn once(
    store: &PgStore,
    works: &[Work],
    config: Option<&Config>,
    fault: &AtomicBool,
) -> R<Out> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // Every lock the group needs, in key order: two groups never wait for each other in a circle.
    let mut keys = Vec::new();
    let mut logs = 0;
    for w in works {
        if let Work::Ingest(l) = w {
            logs += l.len() as i64;
            for log in l {
                if let Some(req) = &log.alert {
                    locks_of(&log.integration, req, &mut keys);
                }
            }
        }
    }
    keys.sort_unstable();
    keys.dedup();
    if !keys.is_empty() {
        tx.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k",
            &[&keys],
        )
        .await?;
    }
    let ids: Vec<i64> = tx
        .query(
            "SELECT nextval('siren_ids') FROM generate_series(1::bigint, $1::bigint)",
            &[&logs],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut txn = Txn {
        tx: &tx,
        events: config
            .filter(|c| !c.destinations.is_empty())
            .map(|_| Vec::new()),
        earliest: None,
        changes: Vec::new(),
    };
    let now = unix_ms(crate::clock::now());
    let mut rows = LogRows::default();
    let mut ids = ids.into_iter();
    let mut answers = Vec::with_capacity(works.len());
    for w in works {
        answers.push(match w {
            Work::Ingest(l) => ingest(&mut txn, l, &mut ids, now, &mut rows).await?,
            Work::Change { id, change, now } => Answer::Change(Box::new(
                user_change(&mut txn, *id, *change, unix_ms(*now)).await?,
            )),
            Work::AutoResolve { now } => auto_resolve(&mut txn, unix_ms(*now)).await?,
            Work::Delivery { id, outcome } => delivery(&txn, store, *id, outcome).await?,
            Work::Silence(_) | Work::Retry(..) => {
                return Err(Fail::Store(Error::Postgres("not yet on PostgreSQL".into())));
            }
        });
    }
    rows.insert(&tx).await?;
    let mut queued = Vec::new();
    if let (Some(config), Some(events)) = (config, txn.events.take()) {
        queued = enqueue(&txn, config, events, now).await?;
    }
    let (changes, earliest) = (std::mem::take(&mut txn.changes), txn.earliest);
    if fault.load(Ordering::SeqCst) {
        return Err(Fail::Store(Error::Injected));
    }
    tx.commit().await?;
    Ok(Out {
        answers,
        queued,
        changes,
        earliest,
    })
}

/// The group's log entries, inserted in one statement.
#[derive(Default)]
struct LogRows {
    id: Vec<i64>,
    integration: Vec<String>,
    received: Vec<i64>,
    entry: Vec<String>,
    raw: Vec<Arc<[u8]>>,
}

impl LogRows {
    async fn insert(self, tx: &deadpool_postgres::Transaction<'_>) -> R<()> {
        if self.id.is_empty() {
            return Ok(());
        }
        let raw: Vec<&[u8]> = self.raw.iter().map(|r| &r[..]).collect();
        tx.execute(
            "INSERT INTO siren_logs (id, integration, received_ms, entry, raw) \
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bytea[])",
            &[
                &self.id,
                &self.integration,
                &self.received,
                &self.entry,
                &raw,
            ],
        )
        .await?;
        Ok(())
    }
}

async fn ingest(
    txn: &mut Txn<'_, '_>,
    logs: &[NewLog],
    ids: &mut impl Iterator<Item = i64>,
    now: u64,
    rows: &mut LogRows,
) -> R<Answer> {
    let mut receipts = Vec::with_capacity(logs.len());
    for log in logs {
        let log_id = ids.next().expect("one id per log entry") as u64;
        let (outcome, alert_id) = match &log.alert {
            Some(req) => {
                let (o, a) = txn.apply(&log.integration, req, log_id, now).await?;
                if let Some(change) = ingest_change(o) {
                    txn.changes.push((log.integration.clone(), change));
                }
                (Some(o), a)
            }
            None => (log.outcome, None),
        };
        let json = super::logs::stored(log, log_id, outcome, alert_id)?;
        rows.id.push(log_id as i64);
        rows.integration.push(log.integration.clone());
        rows.received.push(unix_ms(log.received_at) as i64);
        rows.entry.push(json);
        rows.raw.push(log.raw.clone());
        receipts.push(Receipt {
            log_id,
            outcome,
            alert_id,
        });
    }
    Ok(Answer::Ingest(receipts))
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

/// A user's acknowledge or resolve of one alert, as [`UserChange::from`] allows it.
async fn user_change(
    txn: &mut Txn<'_, '_>,
    id: u64,
    change: UserChange,
    now: u64,
) -> R<Result<Alert, Error>> {
    let Some((r, d)) = txn.locked(id).await? else {
        return Ok(Err(Error::NoSuchAlert(id)));
    };
    let r = match change.from(r.status) {
        Transition::Refused => {
            return Ok(Err(Error::Conflict {
                id,
                status: r.status,
            }));
        }
        Transition::Already => r,
        Transition::To(status) => {
            let counted = match change {
                UserChange::Acknowledge => AlertChange::Acknowledged(Actor::User),
                UserChange::Resolve => AlertChange::Resolved(Actor::User),
            };
            txn.changes.push((r.integration.clone(), counted));
            txn.set_status(r, &d, status, Some(ResolvedBy::User), now)
                .await?
        }
    };
    Ok(Ok(r.into_alert(d)))
}

/// Resolves (by `auto`) the alerts whose deadline passed that no other node is resolving now
/// (`SKIP LOCKED`); answers the next deadline.
async fn auto_resolve(txn: &mut Txn<'_, '_>, now: u64) -> R<Answer> {
    let sql = format!(
        "SELECT {COLUMNS} FROM siren_alerts WHERE status <> 'resolved' \
         AND auto_resolve_ms <= $1 ORDER BY auto_resolve_ms LIMIT $2 FOR UPDATE SKIP LOCKED"
    );
    let rows = txn
        .tx
        .query(&sql, &[&(now as i64), &AUTO_RESOLVE_BATCH])
        .await?;
    for row in &rows {
        let (r, d) = record(row)?;
        if let Transition::To(status) = UserChange::Resolve.from(r.status) {
            txn.changes
                .push((r.integration.clone(), AlertChange::Resolved(Actor::Auto)));
            txn.set_status(r, &d, status, Some(ResolvedBy::Auto), now)
                .await?;
        }
    }
    let next: Option<i64> = txn
        .tx
        .query_one(
            "SELECT min(auto_resolve_ms) FROM siren_alerts \
             WHERE status <> 'resolved' AND auto_resolve_ms IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    // A due alert another node holds locked is that node's: look again in a second, not now.
    let next = next.map(|n| (n as u64).max(now + 1000));
    let next = match txn.earliest {
        Some(e) => Some(next.map_or(e, |n| n.min(e))),
        None => next,
    };
    Ok(Answer::AutoResolve(next))
}

/// Records how a delivery attempt ended. A retry or a dead letter is recorded only by the node
/// whose claim it was; the claim is released either way.
async fn delivery(
    txn: &Txn<'_, '_>,
    store: &PgStore,
    id: u64,
    outcome: &DeliveryOutcome,
) -> R<Answer> {
    let id = id as i64;
    match outcome {
        DeliveryOutcome::Delivered => {
            txn.tx
                .execute("DELETE FROM siren_deliveries WHERE id = $1", &[&id])
                .await?;
        }
        DeliveryOutcome::Retry(state) | DeliveryOutcome::Dead(state) => {
            let json = outbox::encode(state, id as u64)?;
            let json = String::from_utf8_lossy(&json).into_owned();
            let dead = matches!(outcome, DeliveryOutcome::Dead(_));
            txn.tx
                .execute(
                    "UPDATE siren_deliveries SET state = $2, dead = $3, dead_ms = $4, \
                     claimed_by = NULL, claim_until = NULL \
                     WHERE id = $1 AND NOT dead AND claimed_by = $5",
                    &[
                        &id,
                        &json,
                        &dead,
                        &state.dead_ms.map(|v| v as i64),
                        &&*store.node,
                    ],
                )
                .await?;
        }
    }
    Ok(Answer::Delivery)
}

/// Adds one delivery per alert change and destination that wants it, in this transaction.
async fn enqueue(
    txn: &Txn<'_, '_>,
    config: &Config,
    events: Vec<(Record, String, AlertEvent)>,
    now: u64,
) -> R<Vec<(String, Queued)>> {
    let mut queued = Vec::new();
    for (record, description, event) in events {
        let wanted = wanted_destinations(config, &record.integration, event);
        if wanted.is_empty() {
            continue;
        }
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
            let encoded = String::from_utf8_lossy(&outbox::encode(&state, alert_id)?).into_owned();
            let row = txn
                .tx
                .query_one(
                    "INSERT INTO siren_deliveries (id, destination, alert_id, state, payload) \
                     VALUES (nextval('siren_ids'), $1, $2, $3, $4) RETURNING id",
                    &[&destination, &(alert_id as i64), &encoded, &json],
                )
                .await?;
            let id = row.get::<_, i64>(0) as u64;
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
