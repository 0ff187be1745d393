//! One group commit's view of the PostgreSQL store ([`PgTxn`]): one database transaction, as
//! the rules (`rules.rs`) and the writer's jobs see it through [`Engine`]. The group runs on a
//! blocking thread and waits for each statement ([`wait`]), so that the rules are the same
//! synchronous code on both engines.
//!
//! Race-free across nodes: the group takes its advisory locks first (`group.rs`), and every
//! alert it reads stays locked (`FOR UPDATE`) until its commit. Log entries and raw inputs are
//! inserted together at the end of the group, in one statement each ([`PgTxn::flush`]).

use std::collections::{HashMap, VecDeque};

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::super::alerts::{AlertEvent, Outcome, Record};
use super::super::engine::{Engine, Key};
use super::super::fold::past_window;
use super::super::outbox::{self, DeliveryState};
use super::super::packed::Prepacked;
use super::super::timeline::Note;
use super::super::writer::DeliveryOutcome;
use super::super::{Error, NewLog, silences, unix_ms};
use super::rows::{COLUMNS, fnv, json, key_parts, log_documents, record, text, to_json};
use super::{db_error, wait};
use crate::domain::Storm;

/// Ids fetched from the sequence at once when the group runs out.
const ID_BATCH: i64 = 32;

type Tx<'c> = deadpool_postgres::Transaction<'c>;

/// The group's log entries and raw inputs, inserted at its end.
#[derive(Default)]
struct LogRows {
    id: Vec<i64>,
    integration: Vec<String>,
    received: Vec<i64>,
    outcome: Vec<Option<String>>,
    alert: Vec<Option<i64>>,
    raw: Vec<i64>,
    summary: Vec<String>,
    data: Vec<String>,
    raw_ids: Vec<i64>,
    raws: Vec<Vec<u8>>,
}

pub(super) struct PgTxn<'t, 'c> {
    tx: &'t Tx<'c>,
    /// This node's name in delivery claims.
    node: &'t str,
    /// Ids fetched ahead from the sequence, lowest first.
    ids: VecDeque<u64>,
    /// Alerts this transaction read (so locked) or wrote, as they are now.
    records: HashMap<u64, Record>,
    descriptions: HashMap<u64, String>,
    /// With destinations configured: each alert change, with the alert right after it.
    pub events: Option<Vec<(Record, AlertEvent)>>,
    /// The earliest auto-resolve deadline this group added.
    pub earliest: Option<u64>,
    logs: LogRows,
    /// The first database error, whole: its SQL state says whether the group is worth retrying.
    pub failed: Option<tokio_postgres::Error>,
}

impl<'t, 'c> PgTxn<'t, 'c> {
    pub fn new(tx: &'t Tx<'c>, node: &'t str) -> Self {
        PgTxn {
            tx,
            node,
            ids: VecDeque::new(),
            records: HashMap::new(),
            descriptions: HashMap::new(),
            events: None,
            earliest: None,
            logs: LogRows::default(),
            failed: None,
        }
    }

    fn fail(&mut self, e: tokio_postgres::Error) -> Error {
        let err = db_error(&e);
        self.failed.get_or_insert(e);
        err
    }

    /// Runs one statement (prepared once per connection) and waits for its rows.
    pub fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error> {
        let tx = self.tx;
        let rows = wait(async move {
            let statement = tx.prepare_cached(sql).await?;
            tx.query(&statement, params).await
        });
        rows.map_err(|e| self.fail(e))
    }

    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        let tx = self.tx;
        let n = wait(async move {
            let statement = tx.prepare_cached(sql).await?;
            tx.execute(&statement, params).await
        });
        n.map_err(|e| self.fail(e))
    }

    /// Fetches `n` more ids from the sequence.
    pub fn fetch_ids(&mut self, n: i64) -> Result<(), Error> {
        let rows = self.query(
            "SELECT nextval('siren_ids') FROM generate_series(1::bigint, $1::bigint)",
            &[&n],
        )?;
        self.ids
            .extend(rows.iter().map(|r| r.get::<_, i64>(0) as u64));
        Ok(())
    }

    fn moved(&mut self, ms: Option<u64>) {
        if let Some(ms) = ms {
            self.earliest = Some(self.earliest.map_or(ms, |e| e.min(ms)));
        }
    }

    /// Inserts the group's log entries and raw inputs.
    pub fn flush(&mut self) -> Result<(), Error> {
        let l = std::mem::take(&mut self.logs);
        if !l.raw_ids.is_empty() {
            self.execute(
                "INSERT INTO siren_raws (id, raw) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                &[&l.raw_ids, &l.raws],
            )?;
        }
        if !l.id.is_empty() {
            self.execute(
                "INSERT INTO siren_logs (id, integration, received_ms, outcome, alert_id, raw_id, \
                 summary, data) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], \
                 $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[])",
                &[
                    &l.id,
                    &l.integration,
                    &l.received,
                    &l.outcome,
                    &l.alert,
                    &l.raw,
                    &l.summary,
                    &l.data,
                ],
            )?;
        }
        Ok(())
    }
}

impl Engine for PgTxn<'_, '_> {
    fn generate_id(&mut self) -> Result<u64, Error> {
        if self.ids.is_empty() {
            self.fetch_ids(ID_BATCH)?;
        }
        self.ids
            .pop_front()
            .ok_or_else(|| Error::Postgres("the id sequence gave no id".into()))
    }

    fn record(&mut self, id: u64) -> Result<Option<Record>, Error> {
        if let Some(r) = self.records.get(&id) {
            return Ok(Some(r.clone()));
        }
        let sql = format!("SELECT {COLUMNS} FROM siren_alerts WHERE id = $1 FOR UPDATE");
        let Some(row) = self.query(&sql, &[&(id as i64)])?.pop() else {
            return Ok(None);
        };
        let r = record(&row)?;
        self.records.insert(id, r.clone());
        Ok(Some(r))
    }

    fn description(&mut self, record: &Record) -> Result<String, Error> {
        let id = record.id;
        if let Some(d) = self.descriptions.get(&id) {
            return Ok(d.clone());
        }
        let rows = self.query(
            "SELECT description FROM siren_alerts WHERE id = $1",
            &[&(id as i64)],
        )?;
        Ok(rows.first().map(|r| r.get(0)).unwrap_or_default())
    }

    fn newest(&mut self, integration: &str, key: Key<'_>, limit: usize) -> Result<Vec<u64>, Error> {
        let (kind, text) = key_parts(key);
        let hash = fnv(&[text.as_bytes()]);
        let rows = self.query(
            "SELECT alert_id FROM siren_alert_keys WHERE kind = $1 AND integration = $2 \
             AND key_hash = $3 AND key = $4 ORDER BY alert_id DESC LIMIT $5",
            &[&kind, &integration, &hash, &text, &(limit as i64)],
        )?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    fn index(&mut self, integration: &str, key: Key<'_>, id: u64) -> Result<(), Error> {
        let (kind, text) = key_parts(key);
        let hash = fnv(&[text.as_bytes()]);
        self.execute(
            "INSERT INTO siren_alert_keys (kind, integration, key_hash, key, alert_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&kind, &integration, &hash, &text, &(id as i64)],
        )?;
        Ok(())
    }

    fn unindex(&mut self, integration: &str, key: Key<'_>, id: u64) -> Result<(), Error> {
        let (kind, text) = key_parts(key);
        let hash = fnv(&[text.as_bytes()]);
        self.execute(
            "DELETE FROM siren_alert_keys WHERE kind = $1 AND integration = $2 \
             AND key_hash = $3 AND key = $4 AND alert_id = $5",
            &[&kind, &integration, &hash, &text, &(id as i64)],
        )?;
        Ok(())
    }

    fn insert(&mut self, r: Record, description: &str) -> Result<(), Error> {
        self.execute(
            "INSERT INTO siren_alerts (id, integration, thirdparty_id, title, description, \
             urgency, status, dedup_count, created_ms, updated_ms, resolved_ms, resolved_by, \
             log_id, auto_resolve_ms, storm_members, storm_open) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &[
                &(r.id as i64),
                &r.integration,
                &r.thirdparty_id,
                &r.title,
                &description,
                &text(&r.urgency),
                &text(&r.status),
                &(r.dedup_count as i64),
                &(r.created_ms as i64),
                &(r.updated_ms as i64),
                &r.resolved_ms.map(|v| v as i64),
                &r.resolved_by.as_ref().map(text),
                &(r.log_id as i64),
                &r.auto_resolve_ms.map(|v| v as i64),
                &r.storm.map(|s| s.members as i64),
                &r.storm.map(|s| s.open as i64),
            ],
        )?;
        if r.status.still_there() {
            self.moved(r.auto_resolve_ms);
        }
        self.descriptions.insert(r.id, description.to_string());
        self.records.insert(r.id, r);
        Ok(())
    }

    fn update(&mut self, old: &Record, r: Record) -> Result<(), Error> {
        self.execute(
            "UPDATE siren_alerts SET title = $2, status = $3, dedup_count = $4, updated_ms = $5, \
             resolved_ms = $6, resolved_by = $7, auto_resolve_ms = $8, storm_members = $9, \
             storm_open = $10 WHERE id = $1",
            &[
                &(r.id as i64),
                &r.title,
                &text(&r.status),
                &(r.dedup_count as i64),
                &(r.updated_ms as i64),
                &r.resolved_ms.map(|v| v as i64),
                &r.resolved_by.as_ref().map(text),
                &r.auto_resolve_ms.map(|v| v as i64),
                &r.storm.map(|s| s.members as i64),
                &r.storm.map(|s| s.open as i64),
            ],
        )?;
        if r.status.still_there() && r.auto_resolve_ms != old.auto_resolve_ms {
            self.moved(r.auto_resolve_ms);
        }
        self.records.insert(r.id, r);
        Ok(())
    }

    fn due(&mut self, now: u64, limit: usize) -> Result<Vec<u64>, Error> {
        // Those another node is resolving right now are its own: skipped, not waited for.
        let rows = self.query(
            "SELECT id FROM siren_alerts WHERE status <> 'resolved' AND auto_resolve_ms <= $1 \
             ORDER BY auto_resolve_ms LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&(now as i64), &(limit as i64)],
        )?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    fn next_deadline(&mut self, now: u64, _resolved: usize) -> Result<Option<u64>, Error> {
        let rows = self.query(
            "SELECT min(auto_resolve_ms) FROM siren_alerts \
             WHERE status <> 'resolved' AND auto_resolve_ms IS NOT NULL",
            &[],
        )?;
        let next: Option<i64> = rows.first().and_then(|r| r.get(0));
        // A due alert another node holds locked is that node's: look again in a second.
        let next = next.map(|n| (n as u64).max(now + 1000));
        Ok(match self.earliest {
            Some(e) => Some(next.map_or(e, |n| n.min(e))),
            None => next,
        })
    }

    fn storm_past(&mut self, integration: &str, storm: Storm, now: u64) -> Result<bool, Error> {
        let rows = self.query(
            "SELECT times FROM siren_storms WHERE integration = $1 FOR UPDATE",
            &[&integration],
        )?;
        let mut times: VecDeque<u64> = rows
            .first()
            .map(|r| r.get::<_, Vec<i64>>(0))
            .unwrap_or_default()
            .into_iter()
            .map(|t| t as u64)
            .collect();
        let past = past_window(&mut times, storm, now);
        let times: Vec<i64> = times.into_iter().map(|t| t as i64).collect();
        self.execute(
            "INSERT INTO siren_storms (integration, times) VALUES ($1, $2) \
             ON CONFLICT (integration) DO UPDATE SET times = EXCLUDED.times",
            &[&integration, &times],
        )?;
        Ok(past)
    }

    fn event(&mut self, record: &Record, event: AlertEvent) {
        if let Some(events) = &mut self.events {
            events.push((record.clone(), event));
        }
    }

    fn note(&mut self, alert: u64, id: u64, note: &Note) -> Result<(), Error> {
        let json = to_json(note, || format!("timeline note {alert}/{id}"))?;
        let kind = match note {
            Note::Change { .. } => b'c' as i8,
            Note::Delivery { .. } => b'd' as i8,
        };
        self.execute(
            "INSERT INTO siren_notes (alert_id, id, kind, note) VALUES ($1, $2, $3, $4)",
            &[&(alert as i64), &(id as i64), &kind, &json],
        )?;
        Ok(())
    }

    fn put_raw(
        &mut self,
        raw: u64,
        bytes: &[u8],
        _entries: u64,
        _packed: Option<&Prepacked>,
    ) -> Result<(), Error> {
        // Its entries point at it; retention removes it with the last of them.
        self.logs.raw_ids.push(raw as i64);
        self.logs.raws.push(bytes.to_vec());
        Ok(())
    }

    fn put_log(
        &mut self,
        id: u64,
        raw: u64,
        log: &NewLog,
        _packed: Option<&Prepacked>,
        outcome: Option<Outcome>,
        alert: Option<u64>,
    ) -> Result<(), Error> {
        let (summary, data) = log_documents(log, id, outcome, alert)?;
        let l = &mut self.logs;
        l.id.push(id as i64);
        l.integration.push(log.integration.clone());
        l.received.push(unix_ms(log.received_at) as i64);
        l.outcome.push(outcome.as_ref().map(text));
        l.alert.push(alert.map(|a| a as i64));
        l.raw.push(raw as i64);
        l.summary.push(summary);
        l.data.push(data);
        Ok(())
    }

    fn add_delivery(
        &mut self,
        id: u64,
        state: &DeliveryState,
        payload: &[u8],
    ) -> Result<(), Error> {
        let encoded = to_json(state, || format!("delivery {id}"))?;
        self.execute(
            "INSERT INTO siren_deliveries (id, destination, alert_id, state, payload) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &(id as i64),
                &state.destination,
                &(state.alert_id as i64),
                &encoded,
                &payload,
            ],
        )?;
        Ok(())
    }

    /// A retry or a dead letter is recorded only by the node whose claim it was (another node
    /// may have taken an expired claim meanwhile); the claim is released either way.
    fn delivery_outcome(&mut self, id: u64, outcome: &DeliveryOutcome) -> Result<(), Error> {
        let id = id as i64;
        match outcome {
            DeliveryOutcome::Delivered => {
                self.execute("DELETE FROM siren_deliveries WHERE id = $1", &[&id])?;
            }
            DeliveryOutcome::Retry(state) | DeliveryOutcome::Dead(state) => {
                let json = to_json(state, || format!("delivery {id}"))?;
                let dead = matches!(outcome, DeliveryOutcome::Dead(_));
                let node = self.node;
                self.execute(
                    "UPDATE siren_deliveries SET state = $2, dead = $3, dead_ms = $4, \
                     claimed_by = NULL, claim_until = NULL \
                     WHERE id = $1 AND NOT dead AND claimed_by = $5",
                    &[&id, &json, &dead, &state.dead_ms.map(|v| v as i64), &node],
                )?;
            }
        }
        Ok(())
    }

    fn requeue_dead(&mut self, id: u64, now: u64) -> Result<Option<DeliveryState>, Error> {
        let rows = self.query(
            "SELECT state FROM siren_deliveries WHERE id = $1 AND dead FOR UPDATE",
            &[&(id as i64)],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let state: DeliveryState = json(row.get(0), || format!("delivery {id}"))?;
        let state = state.retried(now);
        let encoded = String::from_utf8_lossy(&outbox::encode(&state, id)?).into_owned();
        self.execute(
            "UPDATE siren_deliveries SET state = $2, dead = false, dead_ms = NULL, \
             claimed_by = NULL, claim_until = NULL WHERE id = $1",
            &[&(id as i64), &encoded],
        )?;
        Ok(Some(state))
    }

    fn silence(&mut self, id: u64) -> Result<Option<silences::Record>, Error> {
        let rows = self.query(
            "SELECT record FROM siren_silences WHERE id = $1 FOR UPDATE",
            &[&(id as i64)],
        )?;
        match rows.first() {
            Some(row) => json(row.get(0), || format!("silence {id}")).map(Some),
            None => Ok(None),
        }
    }

    fn put_silence(&mut self, r: &silences::Record) -> Result<(), Error> {
        let json = to_json(r, || format!("silence {}", r.id()))?;
        self.execute(
            "INSERT INTO siren_silences (id, ends_ms, record) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET ends_ms = EXCLUDED.ends_ms, record = EXCLUDED.record",
            &[&(r.id() as i64), &(r.ends_ms() as i64), &json],
        )?;
        Ok(())
    }
}
