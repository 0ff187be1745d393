//! The group-commit writer: one task owns every write. It takes all pending requests,
//! applies them as one sled batch, calls the blocking `flush()` once, `fdatasync`s sled's data
//! file itself (sled's flush uses `sync_file_range`, which does not persist file metadata), and
//! only then answers each waiting caller. It never calls `flush_async` (sled issue 1308).

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{
    CHUNK, Error, LOG, LogEntry, NewLog, RAW, Store, chunk_key, chunk_prefix, index_key, rfc3339,
    unix_ms,
};
use crate::config::LogsConfig;

/// Requests handled in one group commit at most; bounds the latency of the first one.
const MAX_GROUP: usize = 256;
/// Queue depth before submitters wait: back-pressure instead of unbounded memory.
const QUEUE: usize = 1024;

/// Where a commit's outcome goes: the ids of its entries, or why nothing was written.
type Reply = oneshot::Sender<Result<Vec<u64>, Error>>;

enum Job {
    Commit {
        logs: Vec<NewLog>,
        reply: Reply,
    },
    Prune {
        now: SystemTime,
        reply: oneshot::Sender<Option<SystemTime>>,
    },
    /// Commit what was queued before this, flush, and end the thread.
    Shutdown,
}

/// Submits writes to the writer thread. Cheap to clone; the thread stops when every handle is gone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    fault: Arc<AtomicBool>,
}

impl WriterHandle {
    /// Writes the entries durably and returns their ids, in order.
    pub async fn commit(&self, logs: Vec<NewLog>) -> Result<Vec<u64>, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Commit { logs, reply })
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Drops log entries older than the retention age; returns when the next one expires.
    pub async fn prune(&self, now: SystemTime) -> Result<Option<SystemTime>, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Prune { now, reply })
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Makes every following commit fail (until turned off), as a full disk would. For tests
    /// and failure drills: the daemon must answer 451/503 and stay up.
    pub fn inject_failure(&self, on: bool) {
        self.fault.store(on, Ordering::SeqCst);
    }
}

/// The writer task. [`Writer::join`] ends it after everything queued so far is committed.
pub struct Writer {
    task: JoinHandle<()>,
    tx: mpsc::Sender<Job>,
}

impl Writer {
    pub fn spawn(store: Store, retention: LogsConfig) -> Result<(Writer, WriterHandle), Error> {
        let data_file = File::options()
            .read(true)
            .write(true)
            .open(store.path.join("db"))
            .map_err(|source| Error::Io {
                path: store.path.join("db"),
                source,
            })?;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for kv in store.tree.scan_prefix([super::INDEX]) {
            let (k, _) = kv?;
            if let Some(end) = k.iter().position(|&b| b == 0) {
                let name = String::from_utf8_lossy(&k[1..end]).into_owned();
                *counts.entry(name).or_default() += 1;
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let fault = Arc::new(AtomicBool::new(false));
        let state = State {
            store,
            data_file,
            retention,
            counts,
            fault: fault.clone(),
        };
        let task = tokio::spawn(state.run(rx));
        Ok((
            Writer {
                task,
                tx: tx.clone(),
            },
            WriterHandle { tx, fault },
        ))
    }

    /// Commits everything queued so far, flushes, and ends the writer; later submissions get
    /// [`Error::Stopped`].
    pub async fn join(self) {
        let _ = self.tx.send(Job::Shutdown).await;
        if self.task.await.is_err() {
            tracing::error!("store writer task failed");
        }
    }
}

struct State {
    store: Store,
    data_file: File,
    retention: LogsConfig,
    counts: HashMap<String, usize>,
    fault: Arc<AtomicBool>,
}

impl State {
    /// Collects whatever is queued into one group and commits it on the blocking pool, one
    /// group at a time. (On the blocking pool, tokio knows work is in flight: paused-time tests
    /// do not run the clock ahead during a commit.)
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut running = true;
        while running && let Some(first) = rx.recv().await {
            let mut commits = Vec::new();
            let mut prunes = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Commit { logs, reply } => commits.push((logs, reply)),
                    Job::Prune { now, reply } => prunes.push((now, reply)),
                    Job::Shutdown => {
                        running = false;
                        break;
                    }
                }
                if commits.len() < MAX_GROUP {
                    next = rx.try_recv().ok();
                }
            }
            let group = tokio::task::spawn_blocking(move || {
                if !commits.is_empty() {
                    self.commit_group(commits);
                }
                for (now, reply) in prunes {
                    let next = self.prune_by_age(now).unwrap_or_else(|e| {
                        tracing::error!(error = %e, "pruning old log entries failed");
                        None
                    });
                    let _ = reply.send(next);
                }
                self
            });
            self = match group.await {
                Ok(state) => state,
                Err(e) => {
                    tracing::error!(error = %e, "store writer failed; no more writes");
                    return;
                }
            };
        }
        let db = self.store.db.clone();
        let flushed = tokio::task::spawn_blocking(move || db.flush()).await;
        if !matches!(flushed, Ok(Ok(_))) {
            tracing::error!("final store flush failed");
        }
    }

    fn commit_group(&mut self, commits: Vec<(Vec<NewLog>, Reply)>) {
        let started = std::time::Instant::now();
        let mut batch = sled::Batch::default();
        let mut added: HashMap<String, usize> = HashMap::new();
        let result = (|| {
            let mut ids = Vec::with_capacity(commits.len());
            for (logs, _) in &commits {
                let mut these = Vec::with_capacity(logs.len());
                for log in logs {
                    let id = self.store.db.generate_id()?;
                    put_log(&mut batch, id, log)?;
                    *added.entry(log.integration.clone()).or_default() += 1;
                    these.push(id);
                }
                ids.push(these);
            }
            let removed = self.prune_by_count(&mut batch, &added)?;
            if self.fault.load(Ordering::SeqCst) {
                return Err(Error::Injected);
            }
            self.store.tree.apply_batch(batch)?;
            self.sync()?;
            Ok((ids, removed))
        })();
        match result {
            Ok((ids, removed)) => {
                for (integration, n) in added {
                    *self.counts.entry(integration).or_default() += n;
                }
                for (integration, n) in removed {
                    if let Some(c) = self.counts.get_mut(&integration) {
                        *c = c.saturating_sub(n);
                    }
                }
                tracing::trace!(requests = commits.len(), elapsed = ?started.elapsed(), "group commit");
                for ((_, reply), ids) in commits.into_iter().zip(ids) {
                    let _ = reply.send(Ok(ids));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = commits.len(), "group commit failed; nothing of it was written");
                let shared = Arc::new(e);
                for (_, reply) in commits {
                    let _ = reply.send(Err(Error::Commit(shared.clone())));
                }
            }
        }
    }

    /// Makes the applied batch durable: sled's own flush, then fdatasync of its data file.
    fn sync(&self) -> Result<(), Error> {
        self.store.db.flush()?;
        self.data_file.sync_data().map_err(|source| Error::Io {
            path: self.store.path.join("db"),
            source,
        })
    }

    /// Adds removals of the oldest entries of each integration over its count limit.
    fn prune_by_count(
        &self,
        batch: &mut sled::Batch,
        added: &HashMap<String, usize>,
    ) -> Result<HashMap<String, usize>, Error> {
        let mut removed = HashMap::new();
        for (integration, n) in added {
            let total = self.counts.get(integration).copied().unwrap_or(0) + n;
            let excess = total.saturating_sub(self.retention.max_entries);
            if excess == 0 {
                continue;
            }
            let mut done = 0;
            for item in self.store.index(integration).take(excess) {
                let (id, _) = item?;
                self.remove_log(batch, integration, id)?;
                done += 1;
            }
            removed.insert(integration.clone(), done);
        }
        Ok(removed)
    }

    fn prune_by_age(&mut self, now: SystemTime) -> Result<Option<SystemTime>, Error> {
        let cutoff = unix_ms(now).saturating_sub(self.retention.max_age.as_millis() as u64);
        let mut batch = sled::Batch::default();
        let mut removed: HashMap<String, usize> = HashMap::new();
        let mut oldest_kept: Option<u64> = None;
        for integration in self.counts.keys() {
            for item in self.store.index(integration) {
                let (id, received) = item?;
                if received >= cutoff {
                    oldest_kept = Some(oldest_kept.map_or(received, |o| o.min(received)));
                    break;
                }
                self.remove_log(&mut batch, integration, id)?;
                *removed.entry(integration.clone()).or_default() += 1;
            }
        }
        if !removed.is_empty() {
            self.store.tree.apply_batch(batch)?;
            self.sync()?;
            for (integration, n) in removed {
                if let Some(c) = self.counts.get_mut(&integration) {
                    *c = c.saturating_sub(n);
                }
            }
        }
        Ok(oldest_kept
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms) + self.retention.max_age))
    }

    fn remove_log(&self, batch: &mut sled::Batch, integration: &str, id: u64) -> Result<(), Error> {
        batch.remove(index_key(integration, id));
        for kind in [LOG, RAW] {
            for key in self.store.tree.scan_prefix(chunk_prefix(kind, id)).keys() {
                batch.remove(key?);
            }
        }
        Ok(())
    }
}

fn put_log(batch: &mut sled::Batch, id: u64, log: &NewLog) -> Result<(), Error> {
    let entry = LogEntry {
        id: id.to_string(),
        integration: log.integration.clone(),
        received_at: rfc3339(log.received_at),
        source: log.source,
        remote_addr: log.remote_addr.clone(),
        size: log.raw.len() as u64,
        data: log.data.clone(),
        outcome: log.outcome.clone(),
        alert_id: log.alert_id.clone(),
        error: log.error.clone(),
    };
    let json = serde_json::to_vec(&entry).map_err(|source| Error::Corrupt {
        key: format!("log {id}"),
        source,
    })?;
    put_chunks(batch, LOG, id, &json);
    put_chunks(batch, RAW, id, &log.raw);
    batch.insert(
        &index_key(&log.integration, id)[..],
        &unix_ms(log.received_at).to_be_bytes()[..],
    );
    Ok(())
}

fn put_chunks(batch: &mut sled::Batch, kind: u8, id: u64, bytes: &[u8]) {
    if bytes.is_empty() {
        batch.insert(&chunk_key(kind, id, 0)[..], &[][..]);
    }
    for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
        batch.insert(&chunk_key(kind, id, n as u32)[..], chunk);
    }
}
