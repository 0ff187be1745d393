//! Stage 6: the only code that touches sled. Reads go straight to the tree; every write goes
//! through the single group-commit [`Writer`], which answers only once its batch is durable.
//!
//! Everything lives in one sled tree so that one group commit is one atomic `apply_batch`.
//! Keys start with a one-byte kind:
//!
//! | key                                       | value                                  |
//! |-------------------------------------------|----------------------------------------|
//! | `L` log id (u64 BE) chunk (u32 BE)        | a chunk of the log entry's JSON        |
//! | `R` log id (u64 BE) chunk (u32 BE)        | a chunk of the raw input               |
//! | `I` integration id `\0` log id (u64 BE)   | received time, ms since epoch (u64 BE) |
//!
//! Values are cut into [`CHUNK`]-byte pieces so that no sled page ever crosses the size at which
//! sled moves it to a blob file it never syncs (see ARCHITECTURE.md, "Durability").

mod alerts;
mod apply;
mod outbox;
mod retention;
mod timeline;
mod txn;
mod views;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use crate::domain::{Action, AlertEvent, ResolvedBy};
pub use alerts::{Alert, AlertRequest, Outcome, Status, Transition, UserChange};
pub use outbox::{DeliveryState, DeliveryView, Payload, Queued};
pub use views::{
    AlertDelivery, AlertRow, AlertRows, AlertSearch, History, IntegrationStats, LogRow, LogRows,
    TimelineEntry,
};
pub use writer::{DeliveryOutcome, OutboxFeed, Receipt, Writer, WriterHandle};

/// Largest value sled holds for us. sled stores a page larger than a quarter of its 512 KiB
/// segment off-log; a leaf holds at most 17 items, so 17 x 4 KiB stays well below 128 KiB.
pub const CHUNK: usize = 4096;

const LOG: u8 = b'L';
const RAW: u8 = b'R';
const INDEX: u8 = b'I';

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
    #[error("group commit failed: {0}")]
    Commit(Arc<Error>),
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
}

/// Where an input came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Smtp,
    Http,
}

/// One integration log entry (spec "Log JSON"), as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: String,
    pub integration: String,
    pub received_at: String,
    pub source: Source,
    pub remote_addr: String,
    pub size: u64,
    pub data: serde_json::Value,
    pub outcome: Option<Outcome>,
    pub alert_id: Option<String>,
    pub error: Option<String>,
}

/// What an e-mail log entry's `data` is rebuilt from when it is read, instead of being stored:
/// the raw message (stored anyway), parsed again with the envelope it arrived with, then the
/// routing's part. Parsing is a pure function of these, so the rebuilt data is what the
/// pipeline saw; storing the message once instead of three times (raw, `message`, `text`)
/// halves what each e-mail writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailSource {
    /// The envelope as the message was parsed with (every recipient).
    pub envelope: crate::email::Envelope,
    /// The recipients routed to this entry's integration.
    pub rcpt_to: Vec<String>,
    pub tag: Option<String>,
    /// The index of the e-mail rule that matched.
    pub rule: Option<usize>,
}

impl EmailSource {
    /// The e-mail data of the entry whose raw message is `raw`.
    pub fn rebuild(&self, raw: &[u8]) -> serde_json::Value {
        let mut data = crate::email::parse(raw, self.envelope.clone());
        data.tag = self.tag.clone();
        data.envelope.rcpt_to = self.rcpt_to.clone();
        data.rule = self.rule;
        serde_json::to_value(&data).unwrap_or_default()
    }
}

/// A log entry as stored: `data` is left out when `email` can rebuild it.
#[derive(Serialize)]
struct StoredLog<'a> {
    id: String,
    integration: &'a str,
    received_at: String,
    source: Source,
    remote_addr: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Value>,
    outcome: Option<Outcome>,
    alert_id: Option<String>,
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a EmailSource>,
}

/// [`StoredLog`] as read back (entries written before `email` existed have `data`).
#[derive(Deserialize)]
struct ReadLog {
    id: String,
    integration: String,
    received_at: String,
    source: Source,
    remote_addr: String,
    size: u64,
    #[serde(default)]
    data: serde_json::Value,
    outcome: Option<Outcome>,
    alert_id: Option<String>,
    error: Option<String>,
    email: Option<EmailSource>,
}

/// A log entry to write; the writer assigns its id.
#[derive(Debug, Clone)]
pub struct NewLog {
    pub integration: String,
    pub received_at: SystemTime,
    pub source: Source,
    pub remote_addr: String,
    pub data: serde_json::Value,
    /// The alert change the input asks for; the writer decides the outcome.
    pub alert: Option<AlertRequest>,
    /// The outcome when there is no alert request (e.g. `rejected`).
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    /// The input as received; shared when one input is logged for several integrations.
    pub raw: Arc<[u8]>,
    /// For e-mail: what rebuilds `data` from `raw`, which is then not stored.
    pub email: Option<EmailSource>,
}

/// A page of a list, newest first, with the cursor of the next page.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// The opened store: cheap to clone, reads from any thread.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store under `path` and makes its files' existence durable.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with_cache(path, None)
    }

    /// As [`Store::open`], with sled's page cache set to `cache_bytes` (sled's default: 1 GiB).
    pub fn open_with_cache(path: &Path, cache_bytes: Option<u64>) -> Result<Self, Error> {
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
        db.flush()?;
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
        Ok(Self {
            db,
            tree,
            path: path.to_owned(),
        })
    }

    /// Log entries of one integration, newest first, starting after `cursor`.
    pub fn logs(
        &self,
        integration: &str,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page<LogEntry>, Error> {
        let prefix = index_prefix(integration);
        let end = match cursor {
            Some(c) => index_key(integration, c),
            None => {
                let mut e = prefix.clone();
                e.push(0xff);
                e
            }
        };
        let mut items = Vec::new();
        let mut last = None;
        for kv in self.tree.range(prefix.clone()..end).rev() {
            let (k, _) = kv?;
            let id = u64_at(&k[prefix.len()..]);
            if items.len() == limit {
                return Ok(Page {
                    items,
                    next: last.map(|l: u64| l.to_string()),
                });
            }
            if let Some(entry) = self.log(id)? {
                items.push(entry);
                last = Some(id);
            }
        }
        Ok(Page { items, next: None })
    }

    /// One log entry.
    pub fn log(&self, id: u64) -> Result<Option<LogEntry>, Error> {
        let Some(bytes) = self.read_chunks(LOG, id)? else {
            return Ok(None);
        };
        let stored: ReadLog = serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt {
            key: format!("log {id}"),
            source,
        })?;
        let data = match &stored.email {
            Some(email) => email.rebuild(&self.raw(id)?.unwrap_or_default()),
            None => stored.data,
        };
        Ok(Some(LogEntry {
            id: stored.id,
            integration: stored.integration,
            received_at: stored.received_at,
            source: stored.source,
            remote_addr: stored.remote_addr,
            size: stored.size,
            data,
            outcome: stored.outcome,
            alert_id: stored.alert_id,
            error: stored.error,
        }))
    }

    /// The raw input of a log entry, as received.
    pub fn raw(&self, id: u64) -> Result<Option<Vec<u8>>, Error> {
        self.read_chunks(RAW, id)
    }

    fn read_chunks(&self, kind: u8, id: u64) -> Result<Option<Vec<u8>>, Error> {
        let mut out = Vec::new();
        let mut found = false;
        for kv in self.tree.scan_prefix(chunk_prefix(kind, id)) {
            let (_, v) = kv?;
            out.extend_from_slice(&v);
            found = true;
        }
        Ok(found.then_some(out))
    }

    /// Ids of one integration's log entries, oldest first, with their received time.
    fn index(
        &self,
        integration: &str,
    ) -> impl DoubleEndedIterator<Item = Result<(u64, u64), Error>> + use<> {
        let plen = index_prefix(integration).len();
        self.tree
            .scan_prefix(index_prefix(integration))
            .map(move |kv| {
                let (k, v) = kv?;
                Ok((u64_at(&k[plen..]), u64_at(&v)))
            })
    }
}

fn index_prefix(integration: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(integration.len() + 2);
    k.push(INDEX);
    k.extend_from_slice(integration.as_bytes());
    k.push(0);
    k
}

fn index_key(integration: &str, id: u64) -> Vec<u8> {
    let mut k = index_prefix(integration);
    k.extend_from_slice(&id.to_be_bytes());
    k
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

impl Store {
    /// One alert.
    pub fn alert(&self, id: u64) -> Result<Option<Alert>, Error> {
        match alerts::read_record(&self.tree, id)? {
            None => Ok(None),
            Some(r) => {
                let description = self.description(r.id)?;
                Ok(Some(r.into_alert(description)))
            }
        }
    }

    fn description(&self, id: u64) -> Result<String, Error> {
        let bytes = self
            .read_chunks(alerts::DESCRIPTION, id)?
            .unwrap_or_default();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Alerts, newest first, from the index that fits the filter, starting after `cursor`.
    pub fn alerts(
        &self,
        filter: &AlertFilter,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page<Alert>, Error> {
        let prefix = match (&filter.integration, filter.status) {
            (Some(i), Some(s)) => alerts::both_prefix(i, s),
            (Some(i), None) => alerts::integration_prefix(i),
            (None, Some(s)) => alerts::status_prefix(s),
            (None, None) => vec![alerts::ALERT],
        };
        let mut end = prefix.clone();
        match cursor {
            Some(c) => end.extend_from_slice(&c.to_be_bytes()),
            None => end.push(0xff),
        }
        let mut items = Vec::new();
        for k in self.tree.range(prefix.clone()..end).keys().rev() {
            let k = k?;
            let id = u64_at(&k[prefix.len()..]);
            let Some(r) = alerts::read_record(&self.tree, id)? else {
                continue;
            };
            if filter.since_ms.is_some_and(|since| r.created_ms < since) {
                break; // ids grow with creation time: everything further is older
            }
            if items.len() == limit {
                let next = items.last().map(|a: &Alert| a.id.clone());
                return Ok(Page { items, next });
            }
            let description = self.description(id)?;
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
