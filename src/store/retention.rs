//! Log retention, applied by the writer: by count inside every group commit (the oldest
//! entries of an integration beyond `logs.max_entries` leave in the same batch), and by age in
//! a `Prune` job of its own (entries older than `logs.max_age`, and dead letters as old).
//! The per-integration counts follow the tree: they change when a batch is applied, whether or
//! not its sync then succeeds, and are counted again from the tree when the store is reopened.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::index;
use super::logs::{self, Removal};
use super::outbox::{self, DeliveryState};
use super::timeline;
use super::view::{Overlay, Read, View};
use super::writer::State;
use super::writes::Writes;
use super::{Error, u64_at, unix_ms};

impl State {
    /// Adds removals of the oldest entries of each integration over its count limit. They are
    /// read through `view` (the tree, with the group before laid over it); a group that makes
    /// more entries than that holds past the limit drops its own oldest too, read with the
    /// group's own writes laid over the view, so an integration never holds more than
    /// `logs.max_entries` after a group.
    pub(super) fn prune_by_count(
        &self,
        view: &View<'_>,
        batch: &mut Writes,
        added: &HashMap<String, usize>,
    ) -> Result<HashMap<String, usize>, Error> {
        let mut removed = HashMap::new();
        let mut short = Vec::new();
        let mut removal = Removal::new(view);
        for (integration, n) in added {
            let total = self.counts.get(integration).copied().unwrap_or(0) + n;
            let excess = total.saturating_sub(self.retention.max_entries);
            if excess == 0 {
                continue;
            }
            let done = drop_oldest(&mut removal, view, batch, integration, excess)?;
            removed.insert(integration.clone(), done);
            if done < excess {
                short.push((integration, excess - done));
            }
        }
        if !short.is_empty() {
            let own = Overlay::over(view.overlay, batch);
            let view = View {
                tree: view.tree,
                overlay: Some(&own),
            };
            let mut removal = Removal::new(&view);
            for (integration, excess) in short {
                let done = drop_oldest(&mut removal, &view, batch, integration, excess)?;
                *removed.entry(integration.clone()).or_default() += done;
            }
        }
        Ok(removed)
    }

    /// Removes the entries and dead letters older than `logs.max_age` in one batch of their
    /// own, made durable before it returns; returns when the oldest kept entry expires.
    pub(super) fn prune_by_age(&mut self, now: SystemTime) -> Result<Option<SystemTime>, Error> {
        let handles = self.store.handles()?;
        let tree = &handles.tree;
        let cutoff = unix_ms(now).saturating_sub(self.retention.max_age.as_millis() as u64);
        let mut batch = Writes::default();
        let mut removal = Removal::new(tree);
        let mut removed: HashMap<String, usize> = HashMap::new();
        let mut oldest_kept: Option<u64> = None;
        for integration in self.counts.keys() {
            for entry in index::index(tree, integration) {
                let entry = entry?;
                if entry.received_ms >= cutoff {
                    let ms = entry.received_ms;
                    oldest_kept = Some(oldest_kept.map_or(ms, |o| o.min(ms)));
                    break;
                }
                removal.remove(&mut batch, integration, entry)?;
                *removed.entry(integration.clone()).or_default() += 1;
            }
        }
        // Dead letters follow the logs' age limit (checked whenever the logs are).
        for kv in tree.scan_prefix([outbox::DEAD]) {
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
                logs::remove_chunks(tree, &mut batch, outbox::PAYLOAD, id)?;
            }
        }
        if !batch.is_empty() {
            if self.fault.load(Ordering::SeqCst) {
                return Err(Error::Injected);
            }
            let seq = self.next_seq;
            super::journal::stamp(&mut batch, seq);
            let record = super::journal::encode(&batch);
            tree.apply_batch(batch.into_batch())?;
            self.next_seq += 1;
            // In the tree now: the counts follow, whatever the sync says.
            self.count_applied(HashMap::new(), removed);
            let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
            journal.append(seq, &record)?;
            journal.retire_if_full(&handles.db, &self.data_file);
        }
        Ok(oldest_kept
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms) + self.retention.max_age))
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

/// Adds removals of the `n` oldest entries of `integration` that `tree` holds (fewer when it
/// holds fewer); returns how many.
fn drop_oldest<R: Read>(
    removal: &mut Removal<R>,
    tree: &R,
    batch: &mut Writes,
    integration: &str,
    n: usize,
) -> Result<usize, Error> {
    let mut done = 0;
    for entry in index::index(tree, integration).take(n) {
        removal.remove(batch, integration, entry?)?;
        done += 1;
    }
    Ok(done)
}
