//! The log index: each integration's log entries in id order, with when each was received and
//! its outcome, so that lists, the console's counts and both kinds of retention read the index
//! alone.
//!
//! | key                             | value                                                   |
//! |---------------------------------|---------------------------------------------------------|
//! | `I` integration `\0` log id     | one entry: received ms (u64 BE), outcome byte (`timeline`); or a run (byte [`RUN`], then per entry its id, received ms, both u64 BE, and outcome byte): the integration's entries of one group commit, this key's id no later than the first |
//!
//! A group writes one key per integration for all its entries (a run), rather than one per
//! entry: sled 0.34 costs about 3 µs per insert or remove at the end of a growing prefix
//! (leaves split at one end and merge at the other), and count retention, which drops entries
//! oldest first, rewrites or removes one run per group instead of one key per entry. Runs
//! follow each other in id order (a group's ids are all above the group's before), so a range
//! of keys is a range of entries. Older stores hold one key per entry (values of 8 bytes, 16
//! with the raw id, 9 or 17 with the outcome byte), read the same way; a received time in
//! milliseconds never starts with byte [`RUN`].

use std::collections::HashMap;

use super::alerts::Outcome;
use super::timeline::{byte_outcome, outcome_byte};
use super::view::Read;
use super::writes::Writes;
use super::{Error, u64_at};

pub(super) const INDEX: u8 = b'I';

/// The first byte of a run's value.
const RUN: u8 = 0xff;
/// One entry in a run: id, received ms, outcome byte.
const RUN_ENTRY: usize = 17;

/// The prefix of one integration's `I` keys.
pub(super) fn index_prefix(integration: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(integration.len() + 10);
    k.push(INDEX);
    k.extend_from_slice(integration.as_bytes());
    k.push(0);
    k
}

pub(super) fn index_key(integration: &str, id: u64) -> Vec<u8> {
    let mut k = index_prefix(integration);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// One log entry as the index holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Indexed {
    pub id: u64,
    pub received_ms: u64,
    pub outcome: Option<Outcome>,
    /// Whether the index knows the outcome (entries from before the console's index do not:
    /// theirs is in the entry).
    pub known: bool,
    /// The key it is under: its own id, or its run's.
    pub key: u64,
}

/// The entries one `I` key (its id, `key`) stands for, oldest first.
pub(super) fn entries(key: u64, value: &[u8]) -> Vec<Indexed> {
    match value {
        [RUN, run @ ..] => run
            .chunks_exact(RUN_ENTRY)
            .map(|e| Indexed {
                id: u64_at(e),
                received_ms: u64_at(&e[8..]),
                outcome: byte_outcome(e[16]),
                known: true,
                key,
            })
            .collect(),
        _ => vec![Indexed {
            id: key,
            received_ms: u64_at(value),
            // Older values: received ms, the raw id, then (since the console) the outcome.
            outcome: value
                .get(if value.len() == 9 { 8 } else { 16 })
                .copied()
                .and_then(byte_outcome),
            known: value.len() == 9 || value.len() > 16,
            key,
        }],
    }
}

/// The value of key `key` holding `run` (oldest first): one entry under its own id alone is
/// 9 bytes, as every entry's was before runs.
fn run_value(key: u64, run: &[Indexed]) -> Vec<u8> {
    if let [one] = run
        && one.id == key
    {
        let mut v = Vec::with_capacity(9);
        v.extend_from_slice(&one.received_ms.to_be_bytes());
        v.push(outcome_byte(one.outcome));
        return v;
    }
    let mut v = Vec::with_capacity(1 + RUN_ENTRY * run.len());
    v.push(RUN);
    for e in run {
        v.extend_from_slice(&e.id.to_be_bytes());
        v.extend_from_slice(&e.received_ms.to_be_bytes());
        v.push(outcome_byte(e.outcome));
    }
    v
}

/// An integration's entries of one group, oldest first, as they are put: written as one run
/// when the group is complete ([`Runs::write`]).
#[derive(Default)]
pub(super) struct Runs {
    by_integration: Vec<(String, Vec<Indexed>)>,
}

impl Runs {
    pub fn add(&mut self, integration: &str, id: u64, received_ms: u64, outcome: Option<Outcome>) {
        let entry = Indexed {
            id,
            received_ms,
            outcome,
            known: true,
            key: id,
        };
        match self
            .by_integration
            .iter_mut()
            .find(|(i, _)| i == integration)
        {
            Some((_, run)) => run.push(entry),
            None => self
                .by_integration
                .push((integration.to_string(), vec![entry])),
        }
    }

    /// Takes back the last entry added for `integration` (a rolled-back request's).
    pub fn undo(&mut self, integration: &str) {
        if let Some(at) = self
            .by_integration
            .iter()
            .position(|(i, _)| i == integration)
        {
            let run = &mut self.by_integration[at].1;
            run.pop();
            if run.is_empty() {
                self.by_integration.swap_remove(at);
            }
        }
    }

    /// Puts each integration's run, keyed by its first entry.
    pub fn write(self, writes: &mut Writes) {
        for (integration, run) in self.by_integration {
            let key = run[0].id;
            writes.insert(index_key(&integration, key), run_value(key, &run));
        }
    }
}

/// One integration's indexed entries in `tree`, oldest first (or newest, reversed).
pub(super) fn index<R: Read>(
    tree: &R,
    integration: &str,
) -> impl DoubleEndedIterator<Item = Result<Indexed, Error>> + use<R> {
    let plen = index_prefix(integration).len();
    tree.scan_prefix(index_prefix(integration))
        .flat_map(move |kv| expand(plen, kv, Some))
}

/// The entries of one scanned `I` key (`plen`: its prefix's length), oldest first, each as
/// `pick` keeps it.
fn expand(
    plen: usize,
    kv: sled::Result<(sled::IVec, sled::IVec)>,
    pick: impl Fn(Indexed) -> Option<Indexed>,
) -> Vec<Result<Indexed, Error>> {
    match kv {
        Ok((k, v)) => entries(u64_at(&k[plen..]), &v)
            .into_iter()
            .filter_map(pick)
            .map(Ok)
            .collect(),
        Err(e) => vec![Err(Error::from(e))],
    }
}

/// One integration's entries with ids below `before` (all when `None`), newest first.
pub(super) fn newest_first(
    tree: &sled::Tree,
    integration: &str,
    before: Option<u64>,
) -> impl Iterator<Item = Result<Indexed, Error>> {
    let prefix = index_prefix(integration);
    let plen = prefix.len();
    // A run under a key below `before` may hold entries from `before` on: its key is included,
    // its entries filtered.
    let end = match before {
        Some(c) => index_key(integration, c),
        None => {
            let mut e = prefix.clone();
            e.push(0xff);
            e
        }
    };
    let before = before.unwrap_or(u64::MAX);
    tree.range(prefix..=end).rev().flat_map(move |kv| {
        let mut run = expand(plen, kv, |e| (e.id < before).then_some(e));
        run.reverse();
        run
    })
}

/// The number of log entries per integration (the count retention starts from).
pub(super) fn counts(tree: &sled::Tree) -> Result<HashMap<String, usize>, Error> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for kv in tree.scan_prefix([INDEX]) {
        let (k, v) = kv?;
        if let Some(end) = k.iter().position(|&b| b == 0) {
            let name = String::from_utf8_lossy(&k[1..end]).into_owned();
            let n = match &v[..] {
                [RUN, run @ ..] => run.len() / RUN_ENTRY,
                _ => 1,
            };
            *counts.entry(name).or_default() += n;
        }
    }
    Ok(counts)
}

/// Takes entries out of the index within one batch: a key of its own is removed, a run
/// rewritten without them (or removed with its last). Runs this batch changed are kept, so
/// that the entries after the first in a run cost no read.
#[derive(Default)]
pub(super) struct Unindex {
    changed: HashMap<(String, u64), Vec<Indexed>>,
}

impl Unindex {
    pub fn remove(
        &mut self,
        tree: &impl Read,
        writes: &mut Writes,
        integration: &str,
        entry: &Indexed,
    ) -> Result<(), Error> {
        let key = index_key(integration, entry.key);
        let slot = (integration.to_string(), entry.key);
        let run = match self.changed.get_mut(&slot) {
            Some(run) => run,
            None => {
                let run = match tree.get(&key)? {
                    Some(v) => entries(entry.key, &v),
                    None => Vec::new(),
                };
                self.changed.entry(slot).or_insert(run)
            }
        };
        run.retain(|e| e.id != entry.id);
        if run.is_empty() {
            writes.remove(key);
        } else {
            writes.insert(key, run_value(entry.key, run));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> sled::Tree {
        sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree("t")
            .unwrap()
    }

    fn apply(tree: &sled::Tree, writes: Writes) {
        tree.apply_batch(writes.into_batch()).unwrap();
    }

    fn ids(it: impl Iterator<Item = Result<Indexed, Error>>) -> Vec<u64> {
        it.map(|e| e.unwrap().id).collect()
    }

    #[test]
    fn a_group_writes_one_key_per_integration_and_entries_read_back_in_order() {
        let tree = tree();
        // Entries from before runs: 8 bytes (received ms), 17 (with the raw id and outcome).
        tree.insert(index_key("a", 2), &5u64.to_be_bytes()[..])
            .unwrap();
        let mut old = 6u64.to_be_bytes().to_vec();
        old.extend_from_slice(&2u64.to_be_bytes());
        old.push(outcome_byte(Some(Outcome::Resolved)));
        tree.insert(index_key("a", 3), old).unwrap();

        let mut runs = Runs::default();
        runs.add("a", 10, 100, Some(Outcome::Created));
        runs.add("b", 11, 101, Some(Outcome::Created));
        runs.add("a", 12, 102, Some(Outcome::Aggregated));
        runs.add("a", 13, 103, Some(Outcome::Aggregated));
        runs.undo("a"); // 13 rolled back
        runs.add("c", 14, 104, None);
        runs.undo("c"); // c's only entry rolled back: no key
        let mut w = Writes::default();
        runs.write(&mut w);
        assert_eq!(w.len(), 2, "one key per integration");
        apply(&tree, w);
        let mut w = Writes::default();
        let mut runs = Runs::default();
        runs.add("a", 20, 200, Some(Outcome::Ignored));
        runs.write(&mut w);
        assert_eq!(
            w.ops()[0].1.as_deref().map(<[u8]>::len),
            Some(9),
            "alone: 9 bytes"
        );
        apply(&tree, w);

        let all: Vec<Indexed> = index(&tree, "a").map(Result::unwrap).collect();
        assert_eq!(
            all.iter().map(|e| e.id).collect::<Vec<_>>(),
            [2, 3, 10, 12, 20]
        );
        assert_eq!(
            all.iter()
                .map(|e| (e.received_ms, e.outcome, e.known))
                .collect::<Vec<_>>(),
            [
                (5, None, false),
                (6, Some(Outcome::Resolved), true),
                (100, Some(Outcome::Created), true),
                (102, Some(Outcome::Aggregated), true),
                (200, Some(Outcome::Ignored), true),
            ]
        );
        assert_eq!(ids(index(&tree, "a").rev()), [20, 12, 10, 3, 2]);
        assert_eq!(ids(index(&tree, "b")), [11]);
        assert_eq!(ids(newest_first(&tree, "a", None)), [20, 12, 10, 3, 2]);
        // A cursor inside a run: that run's older entries, then the rest.
        assert_eq!(ids(newest_first(&tree, "a", Some(12))), [10, 3, 2]);
        assert_eq!(ids(newest_first(&tree, "a", Some(10))), [3, 2]);
        assert_eq!(ids(newest_first(&tree, "a", Some(21))), [20, 12, 10, 3, 2]);
        let counts = counts(&tree).unwrap();
        assert_eq!((counts["a"], counts["b"]), (5, 1));
    }

    #[test]
    fn entries_leave_their_runs_oldest_first_and_an_empty_run_goes() {
        let tree = tree();
        let mut runs = Runs::default();
        for id in [10, 11, 12] {
            runs.add("a", id, id * 10, Some(Outcome::Created));
        }
        let mut w = Writes::default();
        runs.write(&mut w);
        apply(&tree, w);

        let mut unindex = Unindex::default();
        let mut w = Writes::default();
        let oldest: Vec<Indexed> = index(&tree, "a").take(2).map(Result::unwrap).collect();
        for e in &oldest {
            unindex.remove(&tree, &mut w, "a", e).unwrap();
        }
        w.squash();
        assert_eq!(w.len(), 1, "the run rewritten once");
        apply(&tree, w);
        assert_eq!(ids(index(&tree, "a")), [12]);
        assert_eq!(counts(&tree).unwrap()["a"], 1);

        let mut unindex = Unindex::default();
        let mut w = Writes::default();
        let last = index(&tree, "a").next().unwrap().unwrap();
        assert_eq!(last.key, 10, "still under its run's key");
        unindex.remove(&tree, &mut w, "a", &last).unwrap();
        apply(&tree, w);
        assert_eq!(tree.scan_prefix(index_prefix("a")).count(), 0);
    }

    /// `I` values of every layout give their received time, and their outcome when they hold
    /// one.
    #[test]
    fn index_values_of_every_layout_decode() {
        let ms = 1_796_286_299_291u64.to_be_bytes();
        let with = |rest: &[u8]| [&ms[..], rest].concat();
        let aggregated = outcome_byte(Some(Outcome::Aggregated));
        let raw = 7u64.to_be_bytes();
        for (value, outcome, known) in [
            (with(&[aggregated]), Some(Outcome::Aggregated), true),
            (with(&[0]), None, true),
            (
                with(&[&raw[..], &[aggregated]].concat()),
                Some(Outcome::Aggregated),
                true,
            ),
            (with(&raw), None, false),
            (with(&[]), None, false),
        ] {
            let decoded = entries(3, &value)[0];
            assert_eq!(decoded.received_ms, 1_796_286_299_291);
            assert_eq!(
                (decoded.outcome, decoded.known),
                (outcome, known),
                "{value:?}"
            );
        }
    }
}
