//! Log retention, applied by the writer: by count inside every group commit (the oldest
//! entries of an integration beyond `logs.max_entries` leave in the same batch), and by age in
//! a `Prune` job of its own (entries older than `logs.max_age`, and dead letters as old).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::outbox::{self, DeliveryState};
use super::timeline;
use super::writer::{State, sync_files};
use super::{Error, LOG, RAW, index_key, u64_at, unix_ms};

impl State {
    /// Makes the applied batch durable: sled's own flush, then fdatasync of its data file.
    fn sync(&self) -> Result<(), Error> {
        sync_files(&self.store.db, &self.data_file, &self.store.path.join("db"))
    }

    /// Adds removals of the oldest entries of each integration over its count limit.
    pub(super) fn prune_by_count(
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

    pub(super) fn prune_by_age(&mut self, now: SystemTime) -> Result<Option<SystemTime>, Error> {
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
        // Dead letters follow the logs' age limit (checked whenever the logs are).
        let mut dead = 0;
        for kv in self.store.tree.scan_prefix([outbox::DEAD]) {
            let (k, v) = kv?;
            let id = u64_at(&k[1..]);
            let state: DeliveryState =
                serde_json::from_slice(&v).map_err(|source| Error::Corrupt {
                    key: format!("delivery {id}"),
                    source,
                })?;
            if state.dead_ms.unwrap_or(0) < cutoff {
                batch.remove(k);
                timeline::unnote(&mut batch, state.alert_id, id);
                self.remove_chunks(&mut batch, outbox::PAYLOAD, id)?;
                dead += 1;
            }
        }
        if !removed.is_empty() || dead > 0 {
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
        timeline::unindex_log(&self.store.tree, batch, integration, id)?;
        batch.remove(index_key(integration, id));
        for kind in [LOG, RAW] {
            self.remove_chunks(batch, kind, id)?;
        }
        Ok(())
    }

    /// Retention counts follow the tree once a group is in it.
    pub(super) fn count_applied(
        &mut self,
        added: HashMap<String, usize>,
        removed: HashMap<String, usize>,
    ) {
        for (integration, n) in added {
            *self.counts.entry(integration).or_default() += n;
        }
        for (integration, n) in removed {
            if let Some(c) = self.counts.get_mut(&integration) {
                *c = c.saturating_sub(n);
            }
        }
    }
}
