//! The console's one index, written by the writer in the same batch as what it indexes: each
//! alert's timeline. The writer calls [`link`] (from sled's `Txn::put_log`), [`note`] (from
//! `Rules::set_status` and `apply::enqueue`), [`relink`] (from `logs::Removal`) and [`unnote`]
//! (from retention); `views` reads it.
//!
//! | key                  | value                                                              |
//! |----------------------|--------------------------------------------------------------------|
//! | `K` alert id, log id | empty: that log entry aggregated into, resolved or acknowledged the alert; or a run (byte 1, then log ids, u64 big-endian): the entries of one group commit that did, this key's first among them, as count retention leaves them |
//! | `K` alert id, id     | a [`Note`] (JSON): a user's or auto resolve's change (a fresh id), or an outbox delivery (its id) |
//!
//! A group writes one key per alert for all its entries that touched the alert (a run),
//! rather than one per entry: twenty inputs folded into one alert write one key, and count
//! retention, which drops entries oldest first, rewrites or removes one run per group
//! (`logs::Removal`). Runs follow each other in id order (a group's ids are all above the
//! group's before), so the run holding an entry is the nearest run or link at or before it.
//! Stores from before runs hold one empty key per entry, read the same way.
//!
//! Alerts created before this index have no `K` keys; `views` still shows their creating entry.
//!
//! It also gives the byte after the received time in a log entry's `I` value (after the raw
//! id in older values): the entry's outcome ([`outcome_byte`]), so that the console's 24-hour
//! counts and outcome filters read only the index. Entries written before it have no such
//! byte.

use serde::{Deserialize, Serialize};

use super::alerts::{AlertEvent, Outcome, ResolvedBy};
use super::view::Read;
use super::writes::Writes;
use super::{Error, chunk_prefix, u64_at};

pub(super) const TIMELINE: u8 = b'K';

/// A timeline entry that is not a log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Note {
    /// A change by a user or by auto resolve (integrations' changes are their log entries).
    Change {
        event: AlertEvent,
        by: ResolvedBy,
        at_ms: u64,
    },
    /// An outbox delivery of the alert; its state is read from the outbox.
    Delivery {
        destination: String,
        event: AlertEvent,
    },
}

pub(super) fn timeline_prefix(alert: u64) -> [u8; 9] {
    chunk_prefix(TIMELINE, alert)
}

pub(super) fn timeline_key(alert: u64, id: u64) -> Vec<u8> {
    let mut k = timeline_prefix(alert).to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The outcome as the byte stored in the `I` value (0: none).
pub(super) fn outcome_byte(o: Option<Outcome>) -> u8 {
    match o {
        None => 0,
        Some(Outcome::Created) => 1,
        Some(Outcome::Aggregated) => 2,
        Some(Outcome::Resolved) => 3,
        Some(Outcome::Acknowledged) => 4,
        Some(Outcome::Ignored) => 5,
        Some(Outcome::Dropped) => 6,
        Some(Outcome::Rejected) => 7,
    }
}

/// The outcome of an `I` value's outcome byte.
pub(super) fn byte_outcome(b: u8) -> Option<Outcome> {
    Some(match b {
        1 => Outcome::Created,
        2 => Outcome::Aggregated,
        3 => Outcome::Resolved,
        4 => Outcome::Acknowledged,
        5 => Outcome::Ignored,
        6 => Outcome::Dropped,
        7 => Outcome::Rejected,
        _ => return None,
    })
}

/// A `K` value that stands for log entries: a run of them.
const RUN: u8 = 1;

/// Puts run `run` of an alert's timeline: the log entries `ids` of one group (`run`, the key's
/// id, first when it is still there). One entry alone is an empty value, as a link always was.
pub(super) fn link(writes: &mut Writes, alert: u64, run: u64, ids: &[u64]) {
    writes.insert(timeline_key(alert, run), run_value(run, ids));
}

fn run_value(run: u64, ids: &[u64]) -> Vec<u8> {
    if ids == [run] {
        return Vec::new();
    }
    let mut v = Vec::with_capacity(1 + 8 * ids.len());
    v.push(RUN);
    for id in ids {
        v.extend_from_slice(&id.to_be_bytes());
    }
    v
}

/// The log entries that timeline key `key` (its id) with value `value` stands for; `None` for
/// a note.
pub(super) fn linked(key: u64, value: &[u8]) -> Option<Vec<u64>> {
    match value {
        [] => Some(vec![key]),
        [RUN, ids @ ..] if ids.len() % 8 == 0 => Some(
            ids.chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ),
        _ => None,
    }
}

/// Writes run `run` with the entries `ids` that are left of it, or removes it when none are.
pub(super) fn relink(writes: &mut Writes, alert: u64, run: u64, ids: &[u64]) {
    if ids.is_empty() {
        writes.remove(timeline_key(alert, run));
    } else {
        link(writes, alert, run, ids);
    }
}

/// Timeline runs a batch of removals changed, by alert and run: the entries left in them.
pub(super) type Changed = std::collections::HashMap<(u64, u64), Vec<u64>>;

/// Takes entry `id` off the timeline of `alert` in `tree`, as the batch `writes` (whose
/// changed runs are `changed`) leaves it: out of the run that holds it, the nearest run at or
/// before it (notes in between are passed over). An entry in no run (the one that created the
/// alert) changes nothing.
pub(super) fn unlink(
    tree: &impl Read,
    changed: &mut Changed,
    writes: &mut Writes,
    alert: u64,
    id: u64,
) -> Result<(), Error> {
    // Entries leave oldest first, so the next one is usually in the run the last one left.
    let cached = changed
        .iter_mut()
        .find(|((a, run), ids)| *a == alert && *run <= id && ids.contains(&id));
    if let Some((&(_, run), ids)) = cached {
        ids.retain(|&e| e != id);
        relink(writes, alert, run, ids);
        return Ok(());
    }
    let scan = tree.scan_range(&timeline_key(alert, 0), &timeline_key(alert, id));
    for kv in scan.rev() {
        let (k, v) = kv?;
        let run = u64_at(&k[9..]);
        let ids = match changed.get(&(alert, run)) {
            Some(ids) => Some(ids.clone()),
            None => linked(run, &v),
        };
        let Some(mut ids) = ids else {
            continue; // a note
        };
        if ids.contains(&id) {
            ids.retain(|&e| e != id);
            relink(writes, alert, run, &ids);
            changed.insert((alert, run), ids);
        }
        break;
    }
    Ok(())
}

/// The log entries on `alert`'s timeline in `tree`, oldest first: its links and runs
/// expanded, notes left out.
#[cfg(test)]
pub(super) fn entries(tree: &sled::Tree, alert: u64) -> Vec<u64> {
    let mut ids: Vec<u64> = tree
        .scan_prefix(timeline_prefix(alert))
        .filter_map(|kv| {
            let (k, v) = kv.unwrap();
            linked(u64_at(&k[9..]), &v)
        })
        .flatten()
        .collect();
    ids.sort_unstable();
    ids
}

/// Adds a note to an alert's timeline under `id`.
pub(super) fn note(writes: &mut Writes, alert: u64, id: u64, note: &Note) {
    // A note is a few plain fields: serializing it cannot fail.
    let json = serde_json::to_vec(note).unwrap_or_default();
    writes.insert(timeline_key(alert, id), json);
}

/// Removes a note (a dead letter's, when retention removes the dead letter).
pub(super) fn unnote(writes: &mut Writes, alert: u64, id: u64) {
    writes.remove(timeline_key(alert, id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_read_back_and_keys_sort_by_alert_then_id() {
        let n = Note::Change {
            event: AlertEvent::Acknowledge,
            by: ResolvedBy::User,
            at_ms: 5,
        };
        let json = serde_json::to_vec(&n).unwrap();
        assert_eq!(serde_json::from_slice::<Note>(&json).unwrap(), n);
        assert!(timeline_key(1, u64::MAX) < timeline_key(2, 0));
        assert!(timeline_key(2, 1) < timeline_key(2, 2));
        assert!(timeline_key(2, 9).starts_with(&timeline_prefix(2)));
        for b in 0..8 {
            assert_eq!(outcome_byte(byte_outcome(b)), b);
        }
    }

    fn apply(tree: &sled::Tree, writes: Writes) {
        tree.apply_batch(writes.into_batch()).unwrap();
    }

    #[test]
    fn runs_stand_for_their_entries_and_lose_them_one_by_one() {
        let tree = sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree("t")
            .unwrap();
        // A link from before runs (entry 3), a group's run (10, 11, 13) with a note (12, a
        // delivery of that group) among its ids, a run of one (20), another alert's run.
        let mut w = Writes::default();
        w.insert(timeline_key(7, 3), Vec::new());
        link(&mut w, 7, 10, &[10, 11, 13]);
        let delivery = Note::Delivery {
            destination: "d".into(),
            event: AlertEvent::Aggregate,
        };
        note(&mut w, 7, 12, &delivery);
        link(&mut w, 7, 20, &[20]);
        link(&mut w, 8, 21, &[21, 22]);
        assert_eq!(
            w.ops()[3].1.as_deref(),
            Some(&[][..]),
            "one entry: an empty value"
        );
        apply(&tree, w);
        assert_eq!(entries(&tree, 7), [3, 10, 11, 13, 20]);
        assert_eq!(
            linked(12, &tree.get(timeline_key(7, 12)).unwrap().unwrap()),
            None
        );

        // Oldest first, in one batch: the link goes, the run loses its entries (the third found
        // past the note), the creating entry (5: no key) changes nothing.
        let mut changed = Changed::new();
        let mut w = Writes::default();
        for id in [3, 5, 10, 11] {
            unlink(&tree, &mut changed, &mut w, 7, id).unwrap();
        }
        apply(&tree, w);
        assert_eq!(entries(&tree, 7), [13, 20]);
        let mut changed = Changed::new();
        let mut w = Writes::default();
        unlink(&tree, &mut changed, &mut w, 7, 13).unwrap();
        unlink(&tree, &mut changed, &mut w, 7, 13).unwrap(); // twice: nothing more
        apply(&tree, w);
        assert_eq!(entries(&tree, 7), [20]);
        assert_eq!(
            tree.get(timeline_key(7, 10)).unwrap(),
            None,
            "an empty run goes"
        );
        assert!(
            tree.get(timeline_key(7, 12)).unwrap().is_some(),
            "notes stay"
        );
        assert_eq!(tree.scan_prefix(timeline_prefix(8)).count(), 1);
    }
}
