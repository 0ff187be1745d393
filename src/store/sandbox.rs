//! A store that nothing else sees, for `siren replay`: a temporary sled database, written by
//! the same transaction and aggregation code as the writer's (`Group::ingest`, `Txn`), at the
//! time each input arrived instead of now, and with no durability (nothing is synced; sled
//! deletes it when it is dropped). An input marked with a silence is silenced in it as in the
//! store; no silence list is consulted.

use std::time::SystemTime;

use super::alerts;
use super::apply::Group;
use super::engine::Engine;
use super::fold::Folding;
use super::jobs::Answer;
use super::txn::Txn;
use super::writer::Receipt;
use super::{Alert, Error, NewLog, unix_ms};

pub struct Sandbox {
    db: sled::Db,
    tree: sled::Tree,
    folding: Folding,
}

impl Sandbox {
    pub fn new() -> Result<Sandbox, Error> {
        let db = sled::Config::new().temporary(true).open()?;
        let tree = db.open_tree("siren")?;
        Ok(Sandbox {
            db,
            tree,
            folding: Folding::default(),
        })
    }

    /// Applies one input's entries as they would have been applied at `at`, after resolving
    /// (by `auto`) what was due by then; answers what each came to.
    pub fn ingest(&self, logs: &[NewLog], at: SystemTime) -> Result<Vec<Receipt>, Error> {
        let now = unix_ms(at);
        let mut txn = Txn::new(super::view::View::plain(&self.tree), &self.db);
        txn.folding = Some(self.folding.clone());
        let mut group = Group::new(txn, now);
        let due = group.txn.due(now, usize::MAX)?;
        group.resolve_due(&due, now)?;
        let receipts = match group.ingest(logs, &[])? {
            Answer::Ingest(receipts) => receipts,
            _ => Vec::new(),
        };
        group.txn.finish();
        self.tree.apply_batch(group.txn.batch.into_batch())?;
        Ok(receipts)
    }

    /// One alert, as it is now in the sandbox.
    pub fn alert(&self, id: u64) -> Result<Option<Alert>, Error> {
        let Some(r) = alerts::read_record(&self.tree, id)? else {
            return Ok(None);
        };
        let description = alerts::description(&self.tree, &r)?;
        Ok(Some(r.into_alert(description)))
    }
}
