//! Reads on PostgreSQL, the same answers as the sled store's: logs, alerts, the outbox,
//! silences (the console's are in `views.rs`). Each blocks its thread on the PostgreSQL runtime
//! (the callers are on the blocking pool, or a delivery worker about to make an attempt). [`PgStore::pending_delivery`] is also the claim:
//! the node that gets a delivery's state holds it for [`CLAIM`], and no other node attempts it
//! meanwhile.

use super::super::alerts::{Alert, Status};
use super::super::outbox::{DeliveryState, DeliveryView, Payload, Queued};
use super::super::silences::{self, Silence};
use super::super::{AlertFilter, Error, LogEntry, LogSummary, Page, rfc3339_ms, unix_ms};
use super::rows::{COLUMNS, entry, json, record_at, summary, text};
use super::{PgStore, block, db_error};

/// How long a claim on a delivery lasts: a node that died mid-attempt leaves it to another
/// node after this.
const CLAIM: &str = "60 seconds";

fn corrupt(what: String) -> impl FnOnce(serde_json::Error) -> Error {
    move |source| Error::Corrupt { key: what, source }
}

/// A cursor as the API gives it (an id); everything is below it (newest first lists).
fn below(cursor: Option<u64>) -> i64 {
    cursor.map_or(i64::MAX, |c| c.min(i64::MAX as u64) as i64)
}

fn state(json: &str, id: i64) -> Result<DeliveryState, Error> {
    serde_json::from_str(json).map_err(corrupt(format!("delivery {id}")))
}

/// Pending deliveries no live node holds (never claimed, or the claim expired), oldest first.
pub(super) async fn unheld(
    client: &deadpool_postgres::Object,
    limit: i64,
) -> Result<Vec<(String, Queued)>, Error> {
    let rows = client
        .query(
            "SELECT id, state FROM siren_deliveries WHERE NOT dead \
             AND (claim_until IS NULL OR claim_until < now()) ORDER BY id LIMIT $1",
            &[&limit],
        )
        .await
        .map_err(|e| db_error(&e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.get(0);
        let s = state(row.get(1), id)?;
        out.push((
            s.destination,
            Queued {
                id: id as u64,
                alert_id: s.alert_id,
                next_ms: s.next_ms,
                attempts: s.attempts,
            },
        ));
    }
    Ok(out)
}

impl PgStore {
    pub fn logs(
        &self,
        integration: &str,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page<LogSummary>, Error> {
        let (s, integration) = (self.clone(), integration.to_string());
        block(async move {
            let client = s.client().await?;
            let rows = client
                .query(
                    "SELECT id, summary FROM siren_logs WHERE integration = $1 AND id < $2 \
                     ORDER BY id DESC LIMIT $3",
                    &[&integration, &below(cursor), &(limit as i64 + 1)],
                )
                .await
                .map_err(|e| db_error(&e))?;
            let more = rows.len() > limit;
            let mut items = Vec::with_capacity(limit);
            for row in rows.iter().take(limit) {
                items.push(summary(row.get(0), row.get(1))?);
            }
            let next = more
                .then(|| items.last().map(|e: &LogSummary| e.id.clone()))
                .flatten();
            Ok(Page { items, next })
        })
    }

    pub fn log(&self, id: u64) -> Result<Option<LogEntry>, Error> {
        let s = self.clone();
        block(async move {
            let client = s.client().await?;
            let row = client
                .query_opt(
                    "SELECT l.id, l.summary, l.data, r.raw FROM siren_logs l \
                     LEFT JOIN siren_raws r ON r.id = l.raw_id WHERE l.id = $1",
                    &[&(id as i64)],
                )
                .await
                .map_err(|e| db_error(&e))?;
            row.map(|r| {
                let raw: Option<Vec<u8>> = r.get(3);
                entry(r.get(0), r.get(1), r.get(2), &raw.unwrap_or_default())
            })
            .transpose()
        })
    }

    pub fn raw(&self, id: u64) -> Result<Option<Vec<u8>>, Error> {
        let s = self.clone();
        block(async move {
            let client = s.client().await?;
            let row = client
                .query_opt(
                    "SELECT r.raw FROM siren_logs l LEFT JOIN siren_raws r ON r.id = l.raw_id \
                     WHERE l.id = $1",
                    &[&(id as i64)],
                )
                .await
                .map_err(|e| db_error(&e))?;
            Ok(row.map(|r| r.get::<_, Option<Vec<u8>>>(0).unwrap_or_default()))
        })
    }

    pub fn alert(&self, id: u64) -> Result<Option<Alert>, Error> {
        let s = self.clone();
        block(async move {
            let client = s.client().await?;
            let sql = format!("SELECT description, {COLUMNS} FROM siren_alerts WHERE id = $1");
            let row = client
                .query_opt(&sql, &[&(id as i64)])
                .await
                .map_err(|e| db_error(&e))?;
            row.map(|row| Ok(record_at(&row, 1)?.into_alert(row.get(0))))
                .transpose()
        })
    }

    pub fn alerts(
        &self,
        filter: &AlertFilter,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page<Alert>, Error> {
        let s = self.clone();
        let status: Option<String> = filter.status.map(|st: Status| text(&st));
        let integration = filter.integration.clone();
        let since = filter.since_ms.map_or(0, |v| v as i64);
        block(async move {
            let client = s.client().await?;
            // Planned with the actual values (unnamed statement): a NULL filter folds away.
            let sql = format!(
                "SELECT description, {COLUMNS} FROM siren_alerts \
                 WHERE ($1::text IS NULL OR status = $1) \
                 AND ($2::text IS NULL OR integration = $2) AND id < $3 AND created_ms >= $4 \
                 ORDER BY id DESC LIMIT $5"
            );
            let rows = client
                .query(
                    &sql,
                    &[
                        &status,
                        &integration,
                        &below(cursor),
                        &since,
                        &(limit as i64 + 1),
                    ],
                )
                .await
                .map_err(|e| db_error(&e))?;
            let more = rows.len() > limit;
            let mut items = Vec::with_capacity(limit);
            for row in rows.iter().take(limit) {
                items.push(record_at(row, 1)?.into_alert(row.get(0)));
            }
            let next = more
                .then(|| items.last().map(|a: &Alert| a.id.clone()))
                .flatten();
            Ok(Page { items, next })
        })
    }

    /// The pending deliveries no node holds, oldest first (read at start).
    pub fn pending_deliveries(&self) -> Result<Vec<(String, Queued)>, Error> {
        let s = self.clone();
        block(async move {
            let client = s.client().await?;
            unheld(&client, 100_000).await
        })
    }

    /// Claims a pending delivery for this node and returns its state and payload; `None` when
    /// it is done, dead, held by another node, or behind an earlier delivery of the same alert
    /// to the same destination that is still pending (events arrive in order across nodes).
    pub fn pending_delivery(&self, id: u64) -> Result<Option<(DeliveryState, Payload)>, Error> {
        let s = self.clone();
        block(async move {
            let client = s.client().await?;
            let sql = format!(
                "UPDATE siren_deliveries d SET claimed_by = $2, \
                 claim_until = now() + interval '{CLAIM}' \
                 WHERE d.id = $1 AND NOT d.dead \
                 AND (d.claim_until IS NULL OR d.claim_until < now() OR d.claimed_by = $2) \
                 AND NOT EXISTS (SELECT 1 FROM siren_deliveries e WHERE NOT e.dead \
                     AND e.destination = d.destination AND e.alert_id = d.alert_id \
                     AND e.id < d.id) \
                 RETURNING d.state, d.payload"
            );
            let row = client
                .query_opt(&sql, &[&(id as i64), &&*s.node])
                .await
                .map_err(|e| db_error(&e))?;
            let Some(row) = row else { return Ok(None) };
            let state = state(row.get(0), id as i64)?;
            let payload: Payload = serde_json::from_slice(row.get(1))
                .map_err(corrupt(format!("delivery payload {id}")))?;
            Ok(Some((state, payload)))
        })
    }

    pub fn deliveries(
        &self,
        dead: bool,
        destination: Option<&str>,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page<DeliveryView>, Error> {
        let s = self.clone();
        let destination = destination.map(str::to_string);
        let after = cursor.map_or(0, |c| c.min(i64::MAX as u64) as i64);
        block(async move {
            let client = s.client().await?;
            let rows = client
                .query(
                    "SELECT id, state FROM siren_deliveries WHERE dead = $1 AND id > $2 \
                     AND ($3::text IS NULL OR destination = $3) ORDER BY id LIMIT $4",
                    &[&dead, &after, &destination, &(limit as i64 + 1)],
                )
                .await
                .map_err(|e| db_error(&e))?;
            let more = rows.len() > limit;
            let mut items = Vec::with_capacity(limit);
            for row in rows.iter().take(limit) {
                let id: i64 = row.get(0);
                let s = state(row.get(1), id)?;
                items.push(DeliveryView {
                    id: id.to_string(),
                    destination: s.destination,
                    event: s.event,
                    alert_id: s.alert_id.to_string(),
                    state: if dead { "dead" } else { "pending" },
                    attempts: s.attempts,
                    created_at: rfc3339_ms(s.created_ms),
                    next_attempt_at: (!dead).then(|| rfc3339_ms(s.next_ms)),
                    dead_at: s.dead_ms.map(rfc3339_ms),
                    last_error: s.last_error,
                });
            }
            let next = more
                .then(|| items.last().map(|d: &DeliveryView| d.id.clone()))
                .flatten();
            Ok(Page { items, next })
        })
    }

    /// Silences, newest first, starting after `cursor`.
    pub fn silences(&self, limit: usize, cursor: Option<u64>) -> Result<Page<Silence>, Error> {
        let s = self.clone();
        block(async move {
            let client = s.client().await?;
            let rows = client
                .query(
                    "SELECT id, record FROM siren_silences WHERE id < $1 ORDER BY id DESC LIMIT $2",
                    &[&below(cursor), &(limit as i64 + 1)],
                )
                .await
                .map_err(|e| db_error(&e))?;
            let now = unix_ms(crate::clock::now());
            let more = rows.len() > limit;
            let mut items = Vec::with_capacity(limit);
            for row in rows.iter().take(limit) {
                let id: i64 = row.get(0);
                let r: silences::Record = json(row.get(1), || format!("silence {id}"))?;
                items.push(r.view(now));
            }
            let next = more
                .then(|| items.last().map(|s: &Silence| s.id.clone()))
                .flatten();
            Ok(Page { items, next })
        })
    }
}
