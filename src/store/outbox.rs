//! The durable outbox (spec step 8): one delivery per alert event and destination, written by
//! the writer in the same group commit as the alert change it reports.
//!
//! | key                       | value                                               |
//! |---------------------------|-----------------------------------------------------|
//! | `O` delivery id           | [`DeliveryState`] of a pending delivery (JSON)      |
//! | `Z` delivery id           | [`DeliveryState`] of a dead-lettered delivery       |
//! | `P` delivery id, chunk    | the payload: the event and the alert as it was then |
//!
//! Delivery ids come from sled's id generator, so key order is commit order: a destination
//! that works through its deliveries in id order keeps each alert's events in order. The
//! payload never changes; the small state record is rewritten after each failed attempt. A
//! delivery that succeeds leaves the store in one commit; a dead one keeps its payload.

use serde::{Deserialize, Serialize};

use super::alerts::Alert;
use super::{Error, Page, Store, chunk_prefix, rfc3339_ms, u64_at};
use crate::domain::AlertEvent;

pub(super) const PENDING: u8 = b'O';
pub(super) const DEAD: u8 = b'Z';
pub(super) const PAYLOAD: u8 = b'P';

/// The last error kept with a delivery is cut to this many bytes.
const MAX_ERROR_BYTES: usize = 1024;

/// Where a delivery is, apart from its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryState {
    pub destination: String,
    pub event: AlertEvent,
    pub alert_id: u64,
    pub created_ms: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (ms since the epoch).
    pub next_ms: u64,
    pub last_error: Option<String>,
    /// When it was dead-lettered.
    pub dead_ms: Option<u64>,
}

impl DeliveryState {
    /// Records a failed attempt: `next_ms` for the next one, or dead at `dead_ms`.
    pub fn failed(&mut self, error: &str, next_ms: u64, dead_ms: Option<u64>) {
        self.attempts += 1;
        self.next_ms = next_ms;
        self.dead_ms = dead_ms;
        let mut cut = error.len().min(MAX_ERROR_BYTES);
        while !error.is_char_boundary(cut) {
            cut -= 1;
        }
        self.last_error = Some(error[..cut].to_string());
    }
}

/// What a destination is sent: the event and the alert as it was right after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub event: AlertEvent,
    pub alert: Alert,
}

/// A pending delivery as the delivery workers track it: enough to order and schedule it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub id: u64,
    pub alert_id: u64,
    pub next_ms: u64,
    pub attempts: u32,
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub id: String,
    pub destination: String,
    pub event: AlertEvent,
    pub alert_id: String,
    pub state: &'static str,
    pub attempts: u32,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub dead_at: Option<String>,
    pub last_error: Option<String>,
}

pub(super) fn state_key(kind: u8, id: u64) -> [u8; 9] {
    chunk_prefix(kind, id)
}

pub(super) fn encode(state: &DeliveryState, id: u64) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(state).map_err(|source| Error::Corrupt {
        key: format!("delivery {id}"),
        source,
    })
}

pub(super) fn decode(bytes: &[u8], id: u64) -> Result<DeliveryState, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt {
        key: format!("delivery {id}"),
        source,
    })
}

impl Store {
    /// Every pending delivery, oldest first, by destination (read once at start).
    pub fn pending_deliveries(&self) -> Result<Vec<(String, Queued)>, Error> {
        let mut out = Vec::new();
        for kv in self.tree()?.scan_prefix([PENDING]) {
            let (k, v) = kv?;
            let id = u64_at(&k[1..]);
            let s = decode(&v, id)?;
            out.push((
                s.destination,
                Queued {
                    id,
                    alert_id: s.alert_id,
                    next_ms: s.next_ms,
                    attempts: s.attempts,
                },
            ));
        }
        Ok(out)
    }

    /// A pending delivery's state and payload; `None` once it is done or dead.
    pub fn pending_delivery(&self, id: u64) -> Result<Option<(DeliveryState, Payload)>, Error> {
        let Some(v) = self.tree()?.get(state_key(PENDING, id))? else {
            return Ok(None);
        };
        let state = decode(&v, id)?;
        let bytes = self.read_chunks(PAYLOAD, id)?.unwrap_or_default();
        let payload = serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt {
            key: format!("delivery payload {id}"),
            source,
        })?;
        Ok(Some((state, payload)))
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
        let kind = if dead { DEAD } else { PENDING };
        let start = state_key(kind, cursor.map_or(0, |c| c.saturating_add(1)));
        let mut items = Vec::new();
        for kv in self.tree()?.range(start..state_key(kind, u64::MAX)) {
            let (k, v) = kv?;
            let id = u64_at(&k[1..]);
            let s = decode(&v, id)?;
            if destination.is_some_and(|d| d != s.destination) {
                continue;
            }
            if items.len() == limit {
                let next = items.last().map(|d: &DeliveryView| d.id.clone());
                return Ok(Page { items, next });
            }
            items.push(DeliveryView {
                id: id.to_string(),
                destination: s.destination,
                event: s.event,
                alert_id: s.alert_id.to_string(),
                state: if dead { "dead" } else { "pending" },
                attempts: s.attempts,
                created_at: rfc3339_ms(s.created_ms),
                next_attempt_at: (!dead).then(|| rfc3339_ms(s.next_ms)),
                dead_at: s.dead_ms.map(rfc3339_ms),
                last_error: s.last_error,
            });
        }
        Ok(Page { items, next: None })
    }
}
