//! Spec step 6 on PostgreSQL: the same aggregation rules as the sled [`super::super::txn`],
//! applied inside one group's transaction. They are race-free across nodes because the group
//! first takes, in key order, an advisory lock per (integration, third-party id) and per
//! (integration, title) it touches, and the partial unique index on still-there alerts refuses
//! a second one for the same third-party id even if a lock were missed.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::Row;

use super::super::alerts::{
    Action, AlertEvent, AlertRequest, Outcome, Record, ResolvedBy, Status, Transition, UserChange,
};
use super::super::txn::bounded;
use crate::metrics::AlertChange;

/// As in the sled store: third-party ids and titles are bounded (they are index keys).
const MAX_ID_BYTES: usize = 512;
const MAX_TITLE_BYTES: usize = 2048;
/// How many alerts per third-party id, newest first, resolve/acknowledge look through.
const THIRDPARTY_LOOKBACK: i64 = 32;

/// The columns of an alert, in the order [`record`] reads them.
pub(super) const COLUMNS: &str = "id, integration, thirdparty_id, title, urgency, status, \
    dedup_count, created_ms, updated_ms, resolved_ms, resolved_by, log_id, auto_resolve_ms, \
    description";

/// [`COLUMNS`] of the table named `alias` in a join.
fn columns_of(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A failure inside a group: the database's (maybe worth a retry) or the store's own.
#[derive(Debug)]
pub(super) enum Fail {
    Pg(tokio_postgres::Error),
    Store(super::Error),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<super::Error> for Fail {
    fn from(e: super::Error) -> Self {
        Fail::Store(e)
    }
}

pub(super) type R<T> = Result<T, Fail>;

/// An enum as the text serde gives it (`"open"`, `"auto"`).
pub(super) fn text<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

pub(super) fn parse<T: DeserializeOwned>(s: &str, what: &str) -> Result<T, super::Error> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|source| {
        super::Error::Corrupt {
            key: what.to_string(),
            source,
        }
    })
}

/// An alert row (selected with [`COLUMNS`]) and its description.
pub(super) fn record(row: &Row) -> Result<(Record, String), super::Error> {
    let id: i64 = row.get(0);
    let what = format!("alert {id}");
    let resolved_by: Option<String> = row.get(10);
    let record = Record {
        id: id as u64,
        integration: row.get(1),
        thirdparty_id: row.get(2),
        title: row.get(3),
        urgency: parse(row.get(4), &what)?,
        status: parse(row.get(5), &what)?,
        dedup_count: row.get::<_, i64>(6) as u64,
        created_ms: row.get::<_, i64>(7) as u64,
        updated_ms: row.get::<_, i64>(8) as u64,
        resolved_ms: row.get::<_, Option<i64>>(9).map(|v| v as u64),
        resolved_by: resolved_by.map(|s| parse(&s, &what)).transpose()?,
        log_id: row.get::<_, i64>(11) as u64,
        auto_resolve_ms: row.get::<_, Option<i64>>(12).map(|v| v as u64),
        storm: None,
    };
    Ok((record, row.get(13)))
}

/// The advisory lock key of a text under a kind ("tp", "title"): FNV-1a, the same on every node.
pub(super) fn lock_key(kind: &str, integration: &str, text: &str) -> i64 {
    let bytes = [
        kind.as_bytes(),
        b"\0",
        integration.as_bytes(),
        b"\0",
        text.as_bytes(),
    ];
    let h = bytes
        .iter()
        .flat_map(|b| b.iter())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    h as i64
}

/// A request with its third-party id, further ids and title bounded as they are stored.
pub(super) fn bounded_request(req: &AlertRequest) -> AlertRequest {
    AlertRequest {
        thirdparty_id: bounded(&req.thirdparty_id, MAX_ID_BYTES),
        dedup_keys: req
            .dedup_keys
            .iter()
            .map(|k| bounded(k, MAX_ID_BYTES))
            .collect(),
        title: bounded(&req.title, MAX_TITLE_BYTES),
        ..req.clone()
    }
}

/// The locks one request needs, before the group touches anything.
pub(super) fn locks_of(integration: &str, req: &AlertRequest, out: &mut Vec<i64>) {
    if req.action == Action::Other {
        return;
    }
    let req = bounded_request(req);
    out.push(lock_key("tp", integration, &req.thirdparty_id));
    if matches!(req.action, Action::Create | Action::Drop) {
        // A create looks up and adds each further id as it does its own.
        for key in &req.dedup_keys {
            out.push(lock_key("tp", integration, key));
        }
        if req.aggregate.is_some() {
            out.push(lock_key("title", integration, &req.title));
        }
    }
}

/// One group's transaction, as the alert rules see it.
pub(super) struct Txn<'t, 'c> {
    pub tx: &'t deadpool_postgres::Transaction<'c>,
    /// With destinations configured: each alert change, with the alert right after it.
    pub events: Option<Vec<(Record, String, AlertEvent)>>,
    /// The earliest auto-resolve deadline this group added.
    pub earliest: Option<u64>,
    pub changes: Vec<(String, AlertChange)>,
}

impl Txn<'_, '_> {
    fn event(&mut self, r: &Record, description: &str, event: AlertEvent) {
        if let Some(events) = &mut self.events {
            events.push((r.clone(), description.to_string(), event));
        }
    }

    /// One alert, locked for this transaction.
    pub async fn locked(&self, id: u64) -> R<Option<(Record, String)>> {
        let sql = format!("SELECT {COLUMNS} FROM siren_alerts WHERE id = $1 FOR UPDATE");
        match self.tx.query_opt(&sql, &[&(id as i64)]).await? {
            Some(row) => Ok(Some(record(&row)?)),
            None => Ok(None),
        }
    }

    /// Applies one input's request; returns what happened and to which alert.
    pub async fn apply(
        &mut self,
        integration: &str,
        req: &AlertRequest,
        log_id: u64,
        now: u64,
    ) -> R<(Outcome, Option<u64>)> {
        let req = &bounded_request(req);
        match req.action {
            Action::Other => Ok((Outcome::Ignored, None)),
            Action::Create | Action::Drop => self.create(integration, req, log_id, now).await,
            Action::Resolve => {
                self.by_thirdparty(integration, &req.thirdparty_id, now, UserChange::Resolve)
                    .await
            }
            Action::Acknowledge => {
                self.by_thirdparty(
                    integration,
                    &req.thirdparty_id,
                    now,
                    UserChange::Acknowledge,
                )
                .await
            }
        }
    }

    /// Alerts that answer to a third-party id, newest first, locked.
    async fn by_key(&self, integration: &str, tp: &str, limit: i64) -> R<Vec<(Record, String)>> {
        let cols = columns_of("a");
        let sql = format!(
            "SELECT {cols} FROM siren_alert_keys k JOIN siren_alerts a ON a.id = k.alert_id \
             WHERE k.integration = $1 AND k.thirdparty_id = $2 \
             ORDER BY k.alert_id DESC LIMIT $3 FOR UPDATE OF a"
        );
        let rows = self.tx.query(&sql, &[&integration, &tp, &limit]).await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    async fn add_key(&self, integration: &str, tp: &str, id: u64) -> R<()> {
        self.tx
            .execute(
                "INSERT INTO siren_alert_keys (integration, thirdparty_id, alert_id) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&integration, &tp, &(id as i64)],
            )
            .await?;
        Ok(())
    }

    async fn create(
        &mut self,
        integration: &str,
        req: &AlertRequest,
        log_id: u64,
        now: u64,
    ) -> R<(Outcome, Option<u64>)> {
        // Aggregation by third-party id: the newest alert with it, if still there.
        if let Some((r, d)) = self.by_key(integration, &req.thirdparty_id, 1).await?.pop()
            && r.status.still_there()
        {
            return self.aggregate(r, d, now).await;
        }
        // Then by the input's further ids (a thread's Message-IDs, a webhook's `dedup_keys`).
        for key in &req.dedup_keys {
            if let Some((r, d)) = self.by_key(integration, key, 1).await?.pop()
                && r.status.still_there()
            {
                self.add_key(integration, &req.thirdparty_id, r.id).await?;
                return self.aggregate(r, d, now).await;
            }
        }
        // Auto aggregate: a still-there alert with exactly this title, created within the window.
        if let Some(window) = req.aggregate {
            let from = now.saturating_sub(window.as_millis() as u64) as i64;
            let sql = format!(
                "SELECT {COLUMNS} FROM siren_alerts WHERE integration = $1 AND title = $2 \
                 AND status <> 'resolved' AND created_ms >= $3 ORDER BY id DESC LIMIT 1 FOR UPDATE"
            );
            if let Some(row) = self
                .tx
                .query_opt(&sql, &[&integration, &req.title, &from])
                .await?
            {
                let (r, d) = record(&row)?;
                // Later inputs with this third-party id find the alert they folded into.
                self.add_key(integration, &req.thirdparty_id, r.id).await?;
                return self.aggregate(r, d, now).await;
            }
        }
        self.insert(integration, req, log_id, now).await
    }

    /// A new alert, unless one with this third-party id is still there (then it folds in).
    async fn insert(
        &mut self,
        integration: &str,
        req: &AlertRequest,
        log_id: u64,
        now: u64,
    ) -> R<(Outcome, Option<u64>)> {
        let status = if req.action == Action::Drop {
            Status::Dropped
        } else {
            Status::Open
        };
        let auto_resolve_ms = req.auto_resolve.map(|d| now + d.as_millis() as u64);
        let inserted = self
            .tx
            .query_opt(
                "INSERT INTO siren_alerts (id, integration, thirdparty_id, title, description, \
                 urgency, status, dedup_count, created_ms, updated_ms, log_id, auto_resolve_ms) \
                 VALUES (nextval('siren_ids'), $1, $2, $3, $4, $5, $6, 0, $7, $7, $8, $9) \
                 ON CONFLICT (integration, thirdparty_id) WHERE status <> 'resolved' DO NOTHING \
                 RETURNING id",
                &[
                    &integration,
                    &req.thirdparty_id,
                    &req.title,
                    &req.description,
                    &text(&req.urgency),
                    &text(&status),
                    &(now as i64),
                    &(log_id as i64),
                    &auto_resolve_ms.map(|v| v as i64),
                ],
            )
            .await?;
        let Some(row) = inserted else {
            // A still-there alert with this third-party id that the key lookup did not find
            // (it answers to its own id first): fold into it.
            let sql = format!(
                "SELECT {COLUMNS} FROM siren_alerts WHERE integration = $1 \
                 AND thirdparty_id = $2 AND status <> 'resolved' FOR UPDATE"
            );
            let row = self
                .tx
                .query_one(&sql, &[&integration, &req.thirdparty_id])
                .await?;
            let (r, d) = record(&row)?;
            return self.aggregate(r, d, now).await;
        };
        let id = row.get::<_, i64>(0) as u64;
        self.add_key(integration, &req.thirdparty_id, id).await?;
        for key in &req.dedup_keys {
            self.add_key(integration, key, id).await?;
        }
        if let Some(ms) = auto_resolve_ms
            && status.still_there()
        {
            self.earliest = Some(self.earliest.map_or(ms, |e| e.min(ms)));
        }
        let record = Record {
            id,
            integration: integration.to_string(),
            thirdparty_id: req.thirdparty_id.clone(),
            title: req.title.clone(),
            urgency: req.urgency,
            status,
            dedup_count: 0,
            created_ms: now,
            updated_ms: now,
            resolved_ms: None,
            resolved_by: None,
            log_id,
            auto_resolve_ms,
            storm: None,
        };
        if status == Status::Dropped {
            return Ok((Outcome::Dropped, Some(id)));
        }
        self.event(&record, &req.description, AlertEvent::Create);
        Ok((Outcome::Created, Some(id)))
    }

    async fn aggregate(&mut self, old: Record, d: String, now: u64) -> R<(Outcome, Option<u64>)> {
        let mut r = old;
        r.dedup_count += 1;
        r.updated_ms = now;
        self.put(&r).await?;
        self.event(&r, &d, AlertEvent::Aggregate);
        Ok((Outcome::Aggregated, Some(r.id)))
    }

    /// Changes the newest alert with the third-party id that `change` applies to.
    async fn by_thirdparty(
        &mut self,
        integration: &str,
        tp: &str,
        now: u64,
        change: UserChange,
    ) -> R<(Outcome, Option<u64>)> {
        for (old, d) in self.by_key(integration, tp, THIRDPARTY_LOOKBACK).await? {
            if let Transition::To(status) = change.from(old.status) {
                let id = old.id;
                self.set_status(old, &d, status, Some(ResolvedBy::Integration), now)
                    .await?;
                let outcome = match change {
                    UserChange::Acknowledge => Outcome::Acknowledged,
                    UserChange::Resolve => Outcome::Resolved,
                };
                return Ok((outcome, Some(id)));
            }
        }
        Ok((Outcome::Ignored, None))
    }

    pub async fn set_status(
        &mut self,
        old: Record,
        description: &str,
        status: Status,
        by: Option<ResolvedBy>,
        now: u64,
    ) -> R<Record> {
        let mut r = old;
        r.status = status;
        r.updated_ms = now;
        if status == Status::Resolved {
            r.resolved_ms = Some(now);
            r.resolved_by = by;
        }
        self.put(&r).await?;
        match status {
            Status::Resolved => self.event(&r, description, AlertEvent::Resolve),
            Status::Acknowledged => self.event(&r, description, AlertEvent::Acknowledge),
            Status::Queued | Status::Open | Status::Dropped => {}
        }
        Ok(r)
    }

    /// Writes the fields a change can touch.
    async fn put(&self, r: &Record) -> R<()> {
        self.tx
            .execute(
                "UPDATE siren_alerts SET status = $2, dedup_count = $3, updated_ms = $4, \
                 resolved_ms = $5, resolved_by = $6 WHERE id = $1",
                &[
                    &(r.id as i64),
                    &text(&r.status),
                    &(r.dedup_count as i64),
                    &(r.updated_ms as i64),
                    &r.resolved_ms.map(|v| v as i64),
                    &r.resolved_by.as_ref().map(text),
                ],
            )
            .await?;
        Ok(())
    }
}
