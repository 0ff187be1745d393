//! The console's index, written by the writer in the same batch as what it indexes: each
//! alert's timeline (`K`), and the outcome and alert of a log entry in its `I` index value, so
//! that counts and filters by outcome need not read the entries. The writer calls
//! [`index_log`], [`unindex_log`], [`note`] and [`unnote`]; `views` reads.
//!
//! | key                         | value                                                      |
//! |-----------------------------|------------------------------------------------------------|
//! | `K` alert id, log id        | empty: the log entry created, aggregated, resolved or acknowledged the alert |
//! | `K` alert id, id            | a [`Note`]: a user's or auto-resolve's change, or an outbox delivery |
//! | `I` integration `\0` log id | received ms (u64 BE), outcome byte, alert id (u64 BE) when there is one |
//!
//! Entries written before this index have an 8-byte `I` value (the time only) and no `K` key;
//! readers fall back to the entry itself.

use serde::{Deserialize, Serialize};

use super::alerts::{AlertEvent, Outcome, ResolvedBy};
use super::{Error, chunk_prefix, index_key, u64_at};

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

fn timeline_key(alert: u64, id: u64) -> [u8; 17] {
    let mut k = [0; 17];
    k[..9].copy_from_slice(&timeline_prefix(alert));
    k[9..].copy_from_slice(&id.to_be_bytes());
    k
}

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

/// A log index value, as [`index_log`] writes it. Entries written before the outcome and the
/// alert were kept in it have only the time.
pub(super) struct IndexValue {
    pub received_ms: u64,
    /// `None` for old entries (read the entry) as well as for entries without an outcome.
    pub outcome: Option<Outcome>,
    /// Whether the value carries the outcome (entries written since it does).
    pub known: bool,
    pub alert: Option<u64>,
}

pub(super) fn decode_index(v: &[u8]) -> IndexValue {
    IndexValue {
        received_ms: u64_at(v),
        outcome: v.get(8).copied().and_then(byte_outcome),
        known: v.len() > 8,
        alert: (v.len() >= 17).then(|| u64_at(&v[9..17])),
    }
}

/// Writer side: indexes a new log entry (by integration, and on its alert's timeline).
pub(super) fn index_log(
    batch: &mut sled::Batch,
    integration: &str,
    id: u64,
    received_ms: u64,
    outcome: Option<Outcome>,
    alert: Option<u64>,
) {
    let mut v = Vec::with_capacity(17);
    v.extend_from_slice(&received_ms.to_be_bytes());
    v.push(outcome_byte(outcome));
    if let Some(a) = alert {
        v.extend_from_slice(&a.to_be_bytes());
        batch.insert(&timeline_key(a, id)[..], &[][..]);
    }
    batch.insert(index_key(integration, id), v);
}

/// Writer side: removes a log entry's timeline key (the caller removes the entry itself).
pub(super) fn unindex_log(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    integration: &str,
    id: u64,
) -> Result<(), Error> {
    if let Some(v) = tree.get(index_key(integration, id))?
        && let Some(alert) = decode_index(&v).alert
    {
        batch.remove(&timeline_key(alert, id)[..]);
    }
    Ok(())
}

/// Writer side: adds a note to an alert's timeline under `id` (a fresh id, or a delivery's).
pub(super) fn note(batch: &mut sled::Batch, alert: u64, id: u64, note: &Note) {
    // A note is a few dozen bytes of plain fields: serializing it cannot fail.
    let json = serde_json::to_vec(note).unwrap_or_default();
    batch.insert(&timeline_key(alert, id)[..], json);
}

/// Writer side: removes a note (a dead letter's, when it is pruned).
pub(super) fn unnote(batch: &mut sled::Batch, alert: u64, id: u64) {
    batch.remove(&timeline_key(alert, id)[..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_values_round_trip_and_old_ones_still_read() {
        let mut batch = sled::Batch::default();
        index_log(
            &mut batch,
            "ops",
            7,
            1234,
            Some(Outcome::Aggregated),
            Some(5),
        );
        let mut v = 1234u64.to_be_bytes().to_vec();
        v.push(2);
        v.extend_from_slice(&5u64.to_be_bytes());
        let d = decode_index(&v);
        assert_eq!(
            (d.received_ms, d.outcome, d.known, d.alert),
            (1234, Some(Outcome::Aggregated), true, Some(5))
        );
        let old = decode_index(&1234u64.to_be_bytes());
        assert_eq!((old.received_ms, old.known, old.alert), (1234, false, None));
        for b in 0..8 {
            assert_eq!(outcome_byte(byte_outcome(b)), b);
        }
    }
}
