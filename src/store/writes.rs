//! A group commit's writes ([`Writes`]): what the rules and jobs put and remove, in order,
//! squashed to each key's last write once the group is complete, then recorded in the journal
//! and written to sled key by key in an order that leaves readers no dangling reference.

use std::collections::HashSet;

use super::Error;

/// A group's writes in order. Until the group is complete they can be cut back to a
/// savepoint (`txn::Savepoint`; a sled `Batch` cannot); then they are squashed, recorded in
/// the journal and written to sled ([`Writes::write_to`]), or applied as one `Batch`.
#[derive(Default)]
pub(super) struct Writes {
    ops: Vec<(sled::IVec, Option<sled::IVec>)>,
}

impl Writes {
    pub fn insert(&mut self, key: impl Into<sled::IVec>, value: impl Into<sled::IVec>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl Into<sled::IVec>) {
        self.ops.push((key.into(), None));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The writes in order (what the journal records).
    pub fn ops(&self) -> &[(sled::IVec, Option<sled::IVec>)] {
        &self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Cuts the writes back to their first `len` (a savepoint's).
    pub fn truncate(&mut self, len: usize) {
        self.ops.truncate(len);
    }

    /// Keeps only each key's last write (as a batch would), in the order of those writes:
    /// a group that folds twenty inputs into one alert records and writes it once. Called
    /// when the group is complete ([`super::journal::stamp`]).
    pub fn squash(&mut self) {
        // From the newest write back, the first seen of each key is its last.
        let mut seen = HashSet::new();
        let mut kept: Vec<_> = self
            .ops
            .drain(..)
            .rev()
            .filter(|(key, _)| seen.insert(key.clone()))
            .collect();
        kept.reverse();
        self.ops = kept;
    }

    /// Writes the group, squashed, to the tree key by key, not as one sled `Batch`: sled's
    /// `apply_batch` seals and writes its log buffer twice per batch (`pin_log`), two
    /// `pwrite`s and two waiting `sync_file_range`s per group that the journal makes needless,
    /// since the journal already holds the group whole (ARCHITECTURE.md, "Durability
    /// details": after a crash sled holds a prefix of these writes, and the journal's stamp,
    /// written last, names the last group in full). Readers see no dangling reference
    /// meanwhile: records are written before the indexes that lead to them and removed after,
    /// and a read of a chunked value waits for the group: the caller holds `Handles::gate` for
    /// writing.
    pub fn write_to(&self, handles: &super::Handles) -> Result<(), Error> {
        // Each key is written once, so its phase follows from its one write.
        debug_assert!(
            self.ops
                .iter()
                .map(|(k, _)| &k[..])
                .collect::<HashSet<_>>()
                .len()
                == self.ops.len(),
            "write_to takes squashed writes"
        );
        for phase in [Phase::Put, Phase::Index, Phase::Drop, Phase::Stamp] {
            for (key, value) in &self.ops {
                if phase_of(key, value.is_some()) != phase {
                    continue;
                }
                match value {
                    Some(v) => handles.tree.insert(key, v.clone())?,
                    None => handles.tree.remove(key)?,
                };
            }
        }
        Ok(())
    }

    pub fn into_batch(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (key, value) in self.ops {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        batch
    }
}

/// When [`Writes::write_to`] writes a key: records in, then the indexes (and the queues that
/// name records: `K`, `X`, `O`, `Z`), then records out, and the journal's stamp last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Put,
    Index,
    Drop,
    Stamp,
}

fn phase_of(key: &[u8], insert: bool) -> Phase {
    match key.first() {
        _ if key == super::journal::SEQ_KEY => Phase::Stamp,
        Some(b'I' | b'T' | b'H' | b'N' | b'S' | b'Q' | b'X' | b'K' | b'O' | b'Z') => Phase::Index,
        _ if insert => Phase::Put,
        _ => Phase::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_squashed_and_reaches_sled_records_first_indexes_next_removals_then_its_stamp() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("siren").unwrap();
        tree.insert(b"Lold", &b"entry"[..]).unwrap();
        tree.insert(b"Sold", &b""[..]).unwrap();
        let handles = super::super::Handles {
            db: db.clone(),
            tree: tree.clone(),
            gate: std::sync::RwLock::new(()),
            id_offset: 0,
        };
        let mut w = Writes::default();
        w.remove(&b"Sold"[..]);
        w.insert(&b"Snew"[..], &b""[..]);
        w.insert(&b"Anew"[..], &b"record"[..]);
        w.remove(&b"Lold"[..]);
        w.insert(&b"Dtmp"[..], &b"x"[..]);
        w.remove(&b"Dtmp"[..]); // last write wins: never written
        w.insert(&b"Lnew"[..], &b"1"[..]);
        w.insert(&b"Lnew"[..], &b"2"[..]);
        super::super::journal::stamp(&mut w, 9);
        // Squashed: each key's last write, in the order of those writes.
        let keys: Vec<&[u8]> = w.ops().iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(
            keys,
            [
                &b"Sold"[..],
                b"Snew",
                b"Anew",
                b"Lold",
                b"Dtmp",
                b"Lnew",
                super::super::journal::SEQ_KEY
            ]
        );
        assert_eq!(w.ops()[5].1.as_deref(), Some(&b"2"[..]));
        // The six writes in the order sled took them (collected on a thread of their own,
        // so that fewer than six fail the test rather than hang it).
        let events = tree.watch_prefix(vec![]);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let order: Vec<(Vec<u8>, bool)> = events
                .take(6)
                .map(|e| match e {
                    sled::Event::Insert { key, .. } => (key.to_vec(), true),
                    sled::Event::Remove { key } => (key.to_vec(), false),
                })
                .collect();
            let _ = tx.send(order);
        });
        w.write_to(&handles).unwrap();
        let order = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("six writes");
        let seen = |k: &[u8]| order.iter().position(|(key, _)| key == k).unwrap();
        // Records in before the index that leads to them; the index out before its record.
        assert!(seen(b"Anew") < seen(b"Snew") && seen(b"Lnew") < seen(b"Snew"));
        assert!(seen(b"Sold") < seen(b"Lold"));
        assert_eq!(order.last().unwrap().0, super::super::journal::SEQ_KEY);
        assert!(!order.iter().any(|(k, _)| k == b"Dtmp"));
        assert_eq!(tree.get(b"Lnew").unwrap().unwrap(), &b"2"[..]);
        assert_eq!(tree.get(b"Lold").unwrap(), None);
        assert_eq!(tree.get(b"Sold").unwrap(), None);
        assert_eq!(tree.get(b"Dtmp").unwrap(), None);
    }
}
