//! The console's one index, written by the writer in the same batch as what it indexes: each
//! alert's timeline. The writer calls [`index_log`] (from sled's `Txn::put_log`), [`note`] (from
//! `Rules::set_status` and `apply::enqueue`), [`unindex_log`] and [`unnote`] (from retention); `views`
//! reads it.
//!
//! | key                  | value                                                              |
//! |----------------------|--------------------------------------------------------------------|
//! | `K` alert id, log id | empty: that log entry created, aggregated into, resolved or acknowledged the alert |
//! | `K` alert id, id     | a [`Note`] (JSON): a user's or auto resolve's change (a fresh id), or an outbox delivery (its id) |
//!
//! Alerts created before this index have no `K` keys; `views` still shows their creating entry.
//!
//! It also gives the byte after the received time in a log entry's `I` value (after the raw
//! id in older values): the entry's outcome ([`outcome_byte`]), so that the console's 24-hour
//! counts and outcome filters read only the index. Entries written before it have no such
//! byte.

use serde::{Deserialize, Serialize};

use super::alerts::{AlertEvent, Outcome, ResolvedBy};
use super::chunk_prefix;
use super::writes::Writes;

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

fn timeline_key(alert: u64, id: u64) -> Vec<u8> {
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

/// Puts log entry `id` on the timeline of the alert it touched.
pub(super) fn index_log(writes: &mut Writes, alert: Option<u64>, id: u64) {
    if let Some(alert) = alert {
        writes.insert(timeline_key(alert, id), Vec::new());
    }
}

/// Takes log entry `id` off the timeline of the alert it touched (`logs::Removal` removes the
/// entry itself).
pub(super) fn unindex_log(writes: &mut Writes, alert: Option<u64>, id: u64) {
    if let Some(alert) = alert {
        writes.remove(timeline_key(alert, id));
    }
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
}
