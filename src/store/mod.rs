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

mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use writer::{Writer, WriterHandle};

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
    pub outcome: Option<String>,
    pub alert_id: Option<String>,
    pub error: Option<String>,
}

/// A log entry to write; the writer assigns its id.
#[derive(Debug, Clone)]
pub struct NewLog {
    pub integration: String,
    pub received_at: SystemTime,
    pub source: Source,
    pub remote_addr: String,
    pub data: serde_json::Value,
    pub outcome: Option<String>,
    pub alert_id: Option<String>,
    pub error: Option<String>,
    /// The input as received; shared when one input is logged for several integrations.
    pub raw: Arc<[u8]>,
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
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|source| Error::Open {
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
        std::fs::File::open(path)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(Self {
            db,
            tree,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Corrupt {
                key: format!("log {id}"),
                source,
            })
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
