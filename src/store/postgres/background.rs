//! What a PostgreSQL node does besides answering requests: it checks the database every
//! [`PING`] (`/readyz` and recovery) and reloads the silences in force (other nodes add and
//! end them), hands this node's delivery workers the deliveries that no live node holds (a node
//! that died mid-delivery leaves its claim to expire, [`super::reads`]), wakes the auto-resolve
//! timer so it sees deadlines other nodes added, and applies log retention under an advisory
//! lock so that one node at a time does it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::super::fold::Folding;
use super::super::{Error, Queued, silences, unix_ms};
use super::rows::json;
use super::{PgStore, db_error};
use crate::config::{Live, LogsConfig};
use crate::metrics::Metrics;

/// How often the database is checked.
const PING: Duration = Duration::from_secs(2);
/// Every this many pings: unheld deliveries are picked up and the outbox gauge set.
const SHARE_EVERY: u32 = 5;
/// Every this many pings: the resolver looks again and count retention runs.
const SWEEP_EVERY: u32 = 15;
/// Deliveries handed over per look.
const SHARE_LIMIT: i64 = 1000;

/// Advisory lock keys of the shared chores ("siren-pr", "siren-ct").
const PRUNE_LOCK: i64 = 0x7369_7265_6e2d_7072;
const COUNT_LOCK: i64 = 0x7369_7265_6e2d_6374;

pub(super) struct Background {
    pub store: PgStore,
    pub retention: LogsConfig,
    pub live: Option<Live>,
    pub queued: Option<mpsc::UnboundedSender<Vec<(String, Queued)>>>,
    pub metrics: Arc<Metrics>,
    pub deadline_moved: Arc<Notify>,
    /// Why the store cannot be used now (`/readyz`), or `None`.
    pub down: Arc<Mutex<Option<String>>>,
    pub stop: CancellationToken,
    /// The silences this node's writer handles mark inputs with.
    pub folding: Folding,
    /// The failure drill's switch: while it is on, writes are not healthy whatever the ping.
    pub fault: Arc<AtomicBool>,
    pub unwritable: super::writer::Unwritable,
    /// The outbox gauge's count, set here from the database.
    pub depth: Arc<AtomicU64>,
}

pub(super) async fn run(b: Background) {
    let mut tick: u32 = 0;
    loop {
        let healthy = match ping(&b.store).await {
            Ok(()) => {
                let was = b.down.lock().expect("health lock").take();
                if was.is_some() {
                    tracing::info!("database reachable again");
                }
                true
            }
            Err(e) => {
                let mut down = b.down.lock().expect("health lock");
                if down.is_none() {
                    tracing::error!(error = %e, "database unreachable");
                }
                *down = Some(format!("database unreachable: {e}"));
                false
            }
        };
        let failing = b.unwritable.lock().map(|u| u.is_some()).unwrap_or(true);
        b.metrics.set_store_writable(healthy && !failing);
        if healthy {
            probe(&b).await;
            match silences(&b.store).await {
                Ok(list) => b.folding.silences.set(list),
                Err(e) => tracing::warn!(error = %e, "cannot reload the silences"),
            }
        }
        if healthy
            && tick.is_multiple_of(SHARE_EVERY)
            && let Err(e) = share(&b).await
        {
            tracing::warn!(error = %e, "cannot look for unheld deliveries");
        }
        if healthy && tick.is_multiple_of(SWEEP_EVERY) {
            b.deadline_moved.notify_one();
            if let Err(e) = count_retention(&b).await {
                tracing::warn!(error = %e, "log retention by count failed");
            }
        }
        tick = tick.wrapping_add(1);
        tokio::select! {
            _ = b.stop.cancelled() => return,
            _ = tokio::time::sleep(PING) => {}
        }
    }
}

/// The silences not yet ended.
pub(super) async fn silences(store: &PgStore) -> Result<Vec<silences::Record>, Error> {
    let client = store.client().await?;
    let now = unix_ms(crate::clock::now()) as i64;
    let rows = client
        .query(
            "SELECT id, record FROM siren_silences WHERE ends_ms > $1 ORDER BY id",
            &[&now],
        )
        .await
        .map_err(|e| db_error(&e))?;
    rows.iter()
        .map(|r| json(r.get(1), || format!("silence {}", r.get::<_, i64>(0))))
        .collect()
}

/// Deletes the log entries `sql` deletes (it returns their `raw_id`), then the raw inputs no
/// entry points at any more.
async fn remove_logs(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), Error> {
    let raws: Vec<i64> = tx
        .query(sql, params)
        .await
        .map_err(|e| db_error(&e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !raws.is_empty() {
        tx.execute(
            "DELETE FROM siren_raws r WHERE r.id = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM siren_logs l WHERE l.raw_id = r.id)",
            &[&raws],
        )
        .await
        .map_err(|e| db_error(&e))?;
    }
    Ok(())
}

/// While commits fail, one small write every ping shows when the database takes them again
/// (`/readyz` then says ready, and the load comes back).
async fn probe(b: &Background) {
    let failing = b.unwritable.lock().map(|u| u.is_some()).unwrap_or(true);
    if !failing || b.fault.load(Ordering::SeqCst) {
        return;
    }
    let written = async {
        let client = b.store.client().await?;
        client
            .execute(
                "INSERT INTO siren_storms (integration, times) VALUES ('siren:probe', '{}') \
                 ON CONFLICT (integration) DO UPDATE SET times = '{}'",
                &[],
            )
            .await
            .map_err(|e| db_error(&e))
    };
    if written.await.is_ok() {
        tracing::warn!("database takes writes again");
        super::writer::writable(&b.unwritable, &b.metrics, None);
    }
}

async fn ping(store: &PgStore) -> Result<(), Error> {
    let client = store.client().await?;
    let q = client.simple_query("SELECT 1");
    match tokio::time::timeout(super::POOL_WAIT, q).await {
        Ok(r) => r.map(drop).map_err(|e| db_error(&e)),
        Err(_) => Err(Error::Postgres("no answer to a ping within 5 s".into())),
    }
}

/// Hands this node's workers the pending deliveries no node holds, and sets the outbox gauge.
/// Workers on several nodes may get the same delivery: the claim decides who attempts it.
async fn share(b: &Background) -> Result<(), Error> {
    let client = b.store.client().await?;
    let depth: i64 = client
        .query_one("SELECT count(*) FROM siren_deliveries WHERE NOT dead", &[])
        .await
        .map_err(|e| db_error(&e))?
        .get(0);
    b.depth.store(depth as u64, Ordering::SeqCst);
    b.metrics.set_outbox_depth(depth as u64);
    let Some(feed) = &b.queued else { return Ok(()) };
    let found = super::reads::unheld(&client, SHARE_LIMIT).await?;
    if !found.is_empty() {
        let _ = feed.send(found);
    }
    Ok(())
}

/// Drops each configured integration's oldest entries beyond `logs.max_entries`, one node at a
/// time. (On sled this happens in the commit itself; here within a sweep, about 30 s.)
async fn count_retention(b: &Background) -> Result<(), Error> {
    let Some(live) = &b.live else { return Ok(()) };
    let config = live.get();
    let mut client = b.store.client().await?;
    let tx = client.transaction().await.map_err(|e| db_error(&e))?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&COUNT_LOCK])
        .await
        .map_err(|e| db_error(&e))?
        .get(0);
    if !locked {
        return Ok(());
    }
    let keep = b.retention.max_entries as i64;
    for integration in &config.integrations {
        remove_logs(
            &tx,
            "DELETE FROM siren_logs WHERE integration = $1 AND id <= (SELECT id FROM siren_logs \
             WHERE integration = $1 ORDER BY id DESC OFFSET $2 LIMIT 1) RETURNING raw_id",
            &[&integration.id, &keep],
        )
        .await?;
    }
    tx.commit().await.map_err(|e| db_error(&e))
}

/// Drops log entries (and dead letters) older than `max_age` unless another node is doing it;
/// answers when the oldest remaining entry expires.
pub(super) async fn prune(
    store: &PgStore,
    now: SystemTime,
    max_age: Duration,
) -> Result<Option<SystemTime>, Error> {
    let cutoff = unix_ms(now).saturating_sub(max_age.as_millis() as u64) as i64;
    let mut client = store.client().await?;
    let tx = client.transaction().await.map_err(|e| db_error(&e))?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK])
        .await
        .map_err(|e| db_error(&e))?
        .get(0);
    if locked {
        remove_logs(
            &tx,
            "DELETE FROM siren_logs WHERE received_ms < $1 RETURNING raw_id",
            &[&cutoff],
        )
        .await?;
        // Dead letters follow the logs' age limit, and their timeline notes with them.
        tx.execute(
            "WITH d AS (DELETE FROM siren_deliveries WHERE dead AND dead_ms < $1 \
             RETURNING alert_id, id) \
             DELETE FROM siren_notes n USING d WHERE n.alert_id = d.alert_id AND n.id = d.id",
            &[&cutoff],
        )
        .await
        .map_err(|e| db_error(&e))?;
    }
    let oldest: Option<i64> = tx
        .query_one("SELECT min(received_ms) FROM siren_logs", &[])
        .await
        .map_err(|e| db_error(&e))?
        .get(0);
    tx.commit().await.map_err(|e| db_error(&e))?;
    Ok(oldest.map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64) + max_age))
}
