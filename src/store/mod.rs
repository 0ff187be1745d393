//! Stage 6: the only code that touches sled. Reads go straight to the tree; every write goes
//! through the single group-commit [`Writer`], which answers only once its batch is durable.
//!
//! Everything lives in one sled tree; a group commit reaches it only after its journal record
//! is durable.
//! Keys start with a one-byte kind; `logs.rs`, `alerts.rs` and `outbox.rs` each list theirs.
//! Values are cut into [`CHUNK`]-byte pieces so that no sled page ever crosses the size at which
//! sled moves it to a blob file it never syncs (see ARCHITECTURE.md, "Durability").
//!
//! The sled handles can be swapped: after a failed write sled refuses every later one (it keeps
//! the first I/O error for good), so the writer closes the store and opens it again once the
//! disk takes writes (see `writer.rs`). The writer also reopens it now and then on purpose, so
//! that sled writes its snapshot and the next start replays little (`reopen.rs`). Readers take
//! the handles in force for each read, and wait for a planned reopen to end.

mod alerts;
mod answer;
mod apply;
mod commit;
mod compact;
mod engine;
mod entry_data;
mod entry_value;
mod fold;
mod heal;
mod index;
mod jobs;
mod journal;
mod logs;
mod outbox;
mod packed;
mod postgres;
mod reopen;
mod retention;
mod rules;
mod sandbox;
mod seam;
mod silences;
#[cfg(test)]
mod tests;
mod timeline;
mod txn;
mod view;
mod views;
mod writer;
mod writes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;

pub use crate::domain::{Action, AlertEvent, ResolvedBy};
pub use alerts::{Alert, AlertRequest, Outcome, Status, Transition, UserChange};
pub use compact::{Compacted, compact};
pub use entry_data::EmailSource;
pub use fold::{Fold, SILENCED_BY, STORM_ID};
pub use logs::{LogEntry, LogSummary, NewLog, Source};
pub use outbox::{DeliveryState, DeliveryView, Payload, Queued};
pub use reopen::Bounds as ReopenBounds;
pub use sandbox::Sandbox;
pub use seam::Store;
pub use silences::{NewSilence, SILENCES_MAX, Silence, SilenceSpec};
pub use views::{
    AlertDelivery, AlertRow, AlertRows, AlertSearch, History, IntegrationStats, LogRow, LogRows,
    TimelineEntry,
};
pub use writer::{DeliveryOutcome, OutboxFeed, Receipt, Writer, WriterHandle};

/// Largest value sled holds for us. sled stores a page larger than a quarter of its 512 KiB
/// segment off-log; a leaf holds at most 17 items, so 17 x 4 KiB stays well below 128 KiB.
pub const CHUNK: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the store at {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store write failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record {key} is unreadable: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("cannot compress or decompress {what}: {source}")]
    Codec {
        what: String,
        source: std::io::Error,
    },
    #[error("group commit failed: {0}")]
    Commit(Arc<Error>),
    /// Writes are failing (a full disk, an I/O error); the writer retries by itself.
    #[error("the store cannot write: {0}")]
    Unavailable(Arc<str>),
    #[error("no alert {0}")]
    NoSuchAlert(u64),
    #[error("no dead letter {0}")]
    NoSuchDeadLetter(u64),
    #[error("alert {id} is {}; that change does not apply", serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())]
    Conflict { id: u64, status: Status },
    #[error("store write failed: fault injected")]
    Injected,
    #[error("the store writer has stopped")]
    Stopped,
    /// PostgreSQL refused, failed or could not be reached (`[store] backend = "postgres"`).
    #[error("database: {0}")]
    Postgres(String),
}

impl Error {
    /// True when the error is the store's (disk, I/O, sled), not one input's: the writer then
    /// stops trusting the open store and heals it.
    fn is_store_failure(&self) -> bool {
        match self {
            Error::Open { .. } | Error::Io { .. } | Error::Sled(_) | Error::Injected => true,
            Error::Commit(e) => e.is_store_failure(),
            Error::Corrupt { .. }
            | Error::Codec { .. }
            | Error::Unavailable(_)
            | Error::NoSuchAlert(_)
            | Error::NoSuchDeadLetter(_)
            | Error::Conflict { .. }
            | Error::Stopped
            | Error::Postgres(_) => false,
        }
    }
}

/// A page of a list, newest first, with the cursor of the next page.
#[derive(Debug, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// The open sled database and Siren's tree in it.
pub(crate) struct Handles {
    pub db: sled::Db,
    pub tree: sled::Tree,
    /// Held by the writer from answering a group's callers until sled holds the group (written
    /// one key at a time, [`writes::Writes::write_to`]); every read waits for it
    /// ([`SledStore::handles`]), and a read of a value kept in chunks holds it, so that the
    /// read never sees half a rewrite.
    pub gate: std::sync::RwLock<()>,
    /// What every id this store hands out is offset by ([`ID_OFFSET_KEY`]).
    pub id_offset: u64,
}

/// Where a store keeps the offset of its ids: above every id of the store it was compacted
/// from (a fresh sled's counter starts at 0; `compact.rs`). Absent: 0.
pub(super) const ID_OFFSET_KEY: &[u8] = b"~ids";

/// The sled store (one node): cheap to clone, reads from any thread. The pipeline sees it
/// through [`Store`].
#[derive(Clone)]
pub(crate) struct SledStore {
    open: Arc<ArcSwapOption<Handles>>,
    /// Set while the writer reopens the store on purpose: readers wait instead of failing.
    planned: Arc<reopen::Gate>,
    /// Times the store was opened again in this process (planned or healing).
    reopens: Arc<AtomicU64>,
    path: Arc<Path>,
    cache_bytes: Option<u64>,
}

impl SledStore {
    /// Opens (or creates) the store under `path` and makes its files' existence durable.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with_cache(path, None)
    }

    /// As [`SledStore::open`], with sled's page cache set to `cache_bytes` (sled's default: 1 GiB).
    pub fn open_with_cache(path: &Path, cache_bytes: Option<u64>) -> Result<Self, Error> {
        let handles = open_handles(path, cache_bytes)?;
        if let Some(left) = compact::left_over(path) {
            tracing::warn!(
                path = %left.display(),
                "an interrupted `siren compact` left a copy of the store here, taking disk; the next `siren compact` removes it, or remove it by hand"
            );
        }
        Ok(Self {
            open: Arc::new(ArcSwapOption::from_pointee(handles)),
            planned: Arc::default(),
            reopens: Arc::default(),
            path: path.into(),
            cache_bytes,
        })
    }

    /// The handles in force. While the writer reopens the store on purpose this waits for it
    /// (at most [`reopen::READER_WAIT`]); while it heals a failed store, it fails at once.
    /// Either way, it first waits for the group the writer is putting into sled, if any:
    /// that group's callers may already have been answered, and a read after an answer sees
    /// what it answered for.
    fn handles(&self) -> Result<Arc<Handles>, Error> {
        let handles = match self.open.load_full() {
            Some(h) => h,
            None => {
                self.planned.wait();
                self.open
                    .load_full()
                    .ok_or_else(|| Error::Unavailable("the store is being reopened".into()))?
            }
        };
        drop(handles.gate.read().unwrap_or_else(|e| e.into_inner()));
        Ok(handles)
    }

    fn tree(&self) -> Result<sled::Tree, Error> {
        Ok(self.handles()?.tree.clone())
    }

    /// Closes the store for reopening: readers get [`Error::Unavailable`] until
    /// [`SledStore::reopen`]. sled's files stay locked until every handle taken before is dropped.
    fn close(&self) {
        self.open.store(None);
    }

    /// Opens the store's files again (after [`SledStore::close`]).
    fn reopen(&self) -> Result<(), Error> {
        let handles = open_handles(&self.path, self.cache_bytes)?;
        self.open.store(Some(Arc::new(handles)));
        self.reopens.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Times the store was opened again since this process opened it.
    #[cfg(test)]
    pub(crate) fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }

    fn read_chunks(&self, kind: u8, id: u64) -> Result<Option<Vec<u8>>, Error> {
        let handles = self.handles()?;
        let _whole = handles.gate.read().unwrap_or_else(|e| e.into_inner());
        read_chunks(&handles.tree, kind, id)
    }
}

fn open_handles(path: &Path, cache_bytes: Option<u64>) -> Result<Handles, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(path).map_err(io)?;
    let mut config = sled::Config::new().path(path);
    if let Some(bytes) = cache_bytes {
        config = config.cache_capacity(bytes);
    }
    let db = config.open().map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    let tree = db.open_tree("siren")?;
    // What the journal holds beyond sled's last checkpoint; the flush below makes it sled's.
    journal::replay(path, &tree)?;
    // sled 0.34 opens a store with its id counter 2,000,000 above the last one it persisted,
    // and persists the new one when the first id is taken, without waiting for it (it waits
    // only for the one before). Nothing else made it durable until sled's next flush, so a
    // crash in the first half second after an open reopened at the same counter and handed
    // out the ids of entries and alerts already stored, overwriting them. Taking one id here
    // makes the flush below persist the counter.
    db.generate_id()?;
    db.flush()?;
    let id_offset = tree.get(ID_OFFSET_KEY)?.map_or(0, |v| u64_at(&v));
    for file in ["db", "conf"] {
        if let Ok(f) = std::fs::File::open(path.join(file)) {
            f.sync_all().map_err(io)?;
        }
    }
    // The store directory (and its entry in the parent, when it is new) must be durable
    // for the files in it to be found after a power cut.
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    for dir in std::iter::once(path).chain(parent) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(Handles {
        db,
        tree,
        gate: std::sync::RwLock::new(()),
        id_offset,
    })
}

/// A value of `kind` `id` that is in one chunk, read with one point read: a first chunk shorter
/// than a whole one is the last (most values are), and a scan would look the key up again for
/// each step. `None` when it is longer or not there; [`read_chunks`] then scans.
fn one_chunk(tree: &impl view::Read, kind: u8, id: u64) -> Result<Option<sled::IVec>, Error> {
    Ok(tree
        .get(chunk_key(kind, id, 0))?
        .filter(|first| first.len() < CHUNK))
}

fn read_chunks(tree: &impl view::Read, kind: u8, id: u64) -> Result<Option<Vec<u8>>, Error> {
    if let Some(value) = one_chunk(tree, kind, id)? {
        return Ok(Some(value.to_vec()));
    }
    let mut out = Vec::new();
    let mut found = false;
    for kv in tree.scan_prefix(chunk_prefix(kind, id)) {
        let (_, v) = kv?;
        out.extend_from_slice(&v);
        found = true;
    }
    Ok(found.then_some(out))
}

fn chunk_prefix(kind: u8, id: u64) -> [u8; 9] {
    let mut k = [0; 9];
    k[0] = kind;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn chunk_key(kind: u8, id: u64, n: u32) -> [u8; 13] {
    let mut k = [0; 13];
    k[..9].copy_from_slice(&chunk_prefix(kind, id));
    k[9..].copy_from_slice(&n.to_be_bytes());
    k
}

fn u64_at(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(a)
}

/// Filters of the alert list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub status: Option<Status>,
    pub integration: Option<String>,
    /// Only alerts created at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
}

impl SledStore {
    /// One alert.
    pub fn alert(&self, id: u64) -> Result<Option<Alert>, Error> {
        match alerts::read_record(&self.tree()?, id)? {
            None => Ok(None),
            Some(r) => {
                let description = self.description(&r)?;
                Ok(Some(r.into_alert(description)))
            }
        }
    }

    fn description(&self, record: &alerts::Record) -> Result<String, Error> {
        alerts::description(&self.tree()?, record)
    }

    /// Alerts, newest first, from the index that fits the filter, starting after `cursor`.
    pub fn alerts(
        &self,
        filter: &AlertFilter,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page<Alert>, Error> {
        let tree = self.tree()?;
        let integration = filter.integration.as_deref();
        let mut items = Vec::new();
        for id in alerts::newest_ids(&tree, integration, filter.status, cursor) {
            let id = id?;
            let Some(r) = alerts::read_record(&tree, id)? else {
                continue;
            };
            if filter.since_ms.is_some_and(|since| r.created_ms < since) {
                break; // ids grow with creation time: everything further is older
            }
            if items.len() == limit {
                let next = items.last().map(|a: &Alert| a.id.clone());
                return Ok(Page { items, next });
            }
            let description = self.description(&r)?;
            items.push(r.into_alert(description));
        }
        Ok(Page { items, next: None })
    }
}

/// RFC 3339 of milliseconds since the epoch.
pub fn rfc3339_ms(ms: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
