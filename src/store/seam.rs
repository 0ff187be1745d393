//! The store seam: [`Store`] is what the pipeline reads through, whichever engine is behind it:
//! sled ([`SledStore`], one node) or PostgreSQL ([`PgStore`], several nodes on one database).
//! The writer picks its engine from the store it is given ([`super::Writer::spawn`]), so the
//! pipeline's calls are the same for both.

use std::path::Path;

use super::outbox::{DeliveryState, DeliveryView, Payload, Queued};
use super::postgres::PgStore;
use super::{
    Alert, AlertFilter, AlertRows, AlertSearch, Error, History, IntegrationStats, LogEntry,
    LogRows, LogSummary, Outcome, Page, Silence, SledStore,
};
use crate::config::StoreConfig;

/// The opened store: cheap to clone, reads from any thread (blocking: call them from the
/// blocking pool).
#[derive(Clone)]
pub struct Store(pub(super) Backend);

#[derive(Clone)]
pub(super) enum Backend {
    Sled(SledStore),
    Postgres(PgStore),
}

/// One read, sent to whichever engine the store has.
macro_rules! either {
    ($self:ident, $s:ident => $e:expr) => {
        match &$self.0 {
            Backend::Sled($s) => $e,
            Backend::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// Opens (or creates) a sled store under `path` and makes its files' existence durable.
    pub fn open(path: &Path) -> Result<Self, Error> {
        SledStore::open(path).map(|s| Store(Backend::Sled(s)))
    }

    /// As [`Store::open`], with sled's page cache set to `cache_bytes` (sled's default: 1 GiB).
    pub fn open_with_cache(path: &Path, cache_bytes: Option<u64>) -> Result<Self, Error> {
        SledStore::open_with_cache(path, cache_bytes).map(|s| Store(Backend::Sled(s)))
    }

    /// Opens the store `[store]` configures: sled under `path` with its `cache_size`, or the
    /// PostgreSQL database (connected, its schema created or migrated). Blocking.
    pub fn open_configured(config: &StoreConfig) -> Result<Self, Error> {
        match &config.postgres {
            None => Self::open_with_cache(&config.path, Some(config.cache_size)),
            Some(pg) => PgStore::open(pg).map(|s| Store(Backend::Postgres(s))),
        }
    }

    /// The store `[store]` configures if it exists (`None`: no sled store at `path`), for
    /// reading only (`siren replay`). Blocking.
    pub fn open_existing(config: &StoreConfig) -> Result<Option<Self>, Error> {
        if config.postgres.is_none() && !config.path.join("db").exists() {
            return Ok(None);
        }
        Self::open_configured(config).map(Some)
    }

    /// What a reader of this store reads and what that means for the daemon, for the user.
    pub fn reading(&self) -> String {
        match &self.0 {
            Backend::Sled(s) => format!(
                "the store at {} directly (read only; the daemon cannot start meanwhile)",
                s.path.display()
            ),
            Backend::Postgres(_) => {
                "the PostgreSQL store directly (read only; its nodes keep running)".into()
            }
        }
    }

    /// Log entries of one integration, newest first, starting after `cursor`: summaries only.
    pub fn logs(
        &self,
        integration: &str,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page<LogSummary>, Error> {
        either!(self, s => s.logs(integration, limit, cursor))
    }

    /// One log entry, with its data (an e-mail's rebuilt from its raw message).
    pub fn log(&self, id: u64) -> Result<Option<LogEntry>, Error> {
        either!(self, s => s.log(id))
    }

    /// The raw input of a log entry, as received.
    pub fn raw(&self, id: u64) -> Result<Option<Vec<u8>>, Error> {
        either!(self, s => s.raw(id))
    }

    /// One alert.
    pub fn alert(&self, id: u64) -> Result<Option<Alert>, Error> {
        either!(self, s => s.alert(id))
    }

    /// Alerts, newest first, that fit the filter, starting after `cursor`.
    pub fn alerts(
        &self,
        filter: &AlertFilter,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page<Alert>, Error> {
        either!(self, s => s.alerts(filter, limit, cursor))
    }

    /// Every pending delivery this node may attempt, oldest first (read once at start).
    pub fn pending_deliveries(&self) -> Result<Vec<(String, Queued)>, Error> {
        either!(self, s => s.pending_deliveries())
    }

    /// A pending delivery's state and payload, just before an attempt; `None` once it is done
    /// or dead (and, on PostgreSQL, while another node holds it).
    pub fn pending_delivery(&self, id: u64) -> Result<Option<(DeliveryState, Payload)>, Error> {
        either!(self, s => s.pending_delivery(id))
    }

    /// Pending (`dead == false`) or dead-lettered deliveries, oldest first, after `cursor`,
    /// optionally of one destination.
    pub fn deliveries(
        &self,
        dead: bool,
        destination: Option<&str>,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page<DeliveryView>, Error> {
        either!(self, s => s.deliveries(dead, destination, limit, cursor))
    }
}

impl Store {
    /// Silences, newest first, starting after `cursor`.
    pub fn silences(&self, limit: usize, cursor: Option<u64>) -> Result<Page<Silence>, Error> {
        either!(self, s => s.silences(limit, cursor))
    }

    /// The console's alert list (see `views.rs`).
    pub fn alert_rows(
        &self,
        search: &AlertSearch,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<AlertRows, Error> {
        either!(self, s => s.alert_rows(search, limit, cursor))
    }

    /// An alert's timeline and deliveries.
    pub fn history(&self, alert: u64, creating_log: u64) -> Result<History, Error> {
        either!(self, s => s.history(alert, creating_log))
    }

    /// One integration's log entries as rows.
    pub fn log_rows(
        &self,
        integration: &str,
        outcome: Option<Outcome>,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<LogRows, Error> {
        either!(self, s => s.log_rows(integration, outcome, limit, cursor))
    }

    /// An integration's inputs since `since_ms`.
    pub fn integration_stats(
        &self,
        integration: &str,
        since_ms: u64,
    ) -> Result<IntegrationStats, Error> {
        either!(self, s => s.integration_stats(integration, since_ms))
    }
}

#[cfg(test)]
impl Store {
    /// The sled tree, for the store's own unit tests (which open sled stores).
    pub(super) fn tree(&self) -> Result<sled::Tree, Error> {
        match &self.0 {
            Backend::Sled(s) => s.tree(),
            Backend::Postgres(_) => unreachable!("the unit tests open sled stores"),
        }
    }
}
