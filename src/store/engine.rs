//! What one group commit needs of the engine under it, whichever it is: [`Engine`]. The rules
//! (`rules.rs`, `fold.rs`) and the writer's jobs (`apply.rs`, `silences.rs`) are written once
//! against it; sled's `Txn` (`txn.rs`: the tree and the group's pending batch) and
//! PostgreSQL's `PgTxn` (`postgres/txn.rs`: one database transaction) implement it. The rules
//! decide what changes; the engine reads, locks and writes.
//!
//! Reads see the group's own writes. On PostgreSQL every alert read locks its row until the
//! commit, so that the rules' read-then-write never races another node.

use super::alerts::{AlertEvent, Outcome, Record};
use super::outbox::DeliveryState;
use super::packed::Prepacked;
use super::silences;
use super::timeline::Note;
use super::writer::DeliveryOutcome;
use super::{Error, NewLog};
use crate::domain::Storm;

/// An index alerts are found by, within their integration.
#[derive(Debug, Clone, Copy)]
pub(super) enum Key<'a> {
    /// A third-party id: an alert's own, the further ids it was created with, and those of the
    /// inputs that folded into it.
    ThirdParty(&'a str),
    /// The title window's key (the title, or the rendered `aggregate_key`), kept only for
    /// integrations that aggregate by it.
    Title(&'a str),
}

/// One group commit's view of the store, as its engine gives it.
pub(super) trait Engine {
    /// A fresh id (log entries, alerts, timeline notes, deliveries, silences share one space).
    fn generate_id(&mut self) -> Result<u64, Error>;

    /// One alert as this group sees it.
    fn record(&mut self, id: u64) -> Result<Option<Record>, Error>;
    /// An alert's description (on sled, a short one is in its record).
    fn description(&mut self, record: &Record) -> Result<String, Error>;
    /// Ids of the alerts under `key`, newest first, at most `limit`.
    fn newest(&mut self, integration: &str, key: Key<'_>, limit: usize) -> Result<Vec<u64>, Error>;
    /// Files alert `id` under `key`.
    fn index(&mut self, integration: &str, key: Key<'_>, id: u64) -> Result<(), Error>;
    /// Takes alert `id` from under `key`.
    fn unindex(&mut self, integration: &str, key: Key<'_>, id: u64) -> Result<(), Error>;
    /// A new alert, with its auto-resolve deadline when it is still there.
    fn insert(&mut self, record: Record, description: &str) -> Result<(), Error>;
    /// A changed alert (`old` as it was): its status, and its deadline when it moved or the
    /// alert resolved.
    fn update(&mut self, old: &Record, new: Record) -> Result<(), Error>;
    /// Alerts whose auto-resolve deadline is at or before `now`, oldest deadline first (on
    /// PostgreSQL, those no other node is resolving).
    fn due(&mut self, now: u64, limit: usize) -> Result<Vec<u64>, Error>;
    /// The next auto-resolve deadline after `resolved` due alerts were resolved in this group,
    /// counting the deadlines the group added.
    fn next_deadline(&mut self, now: u64, resolved: usize) -> Result<Option<u64>, Error>;
    /// Counts one would-be new alert of `integration` at `now` in its storm window; true when
    /// that makes more than `storm.alerts` within `storm.within` (`fold.rs`).
    fn storm_past(&mut self, integration: &str, storm: Storm, now: u64) -> Result<bool, Error>;

    /// An alert change for the outbox: kept when destinations are configured.
    fn event(&mut self, record: &Record, event: AlertEvent);
    /// A note on an alert's timeline, under `id` (`timeline.rs`).
    fn note(&mut self, alert: u64, id: u64, note: &Note) -> Result<(), Error>;

    /// One input's raw bytes under `raw` (its first entry's id), shared by `entries` entries;
    /// `packed`: its first entry's values as its submitter packed them, if it did (sled's).
    fn put_raw(
        &mut self,
        raw: u64,
        bytes: &[u8],
        entries: u64,
        packed: Option<&Prepacked>,
    ) -> Result<(), Error>;
    /// One log entry, its raw input stored under `raw`; on the timeline of `alert`.
    fn put_log(
        &mut self,
        id: u64,
        raw: u64,
        log: &NewLog,
        packed: Option<&Prepacked>,
        outcome: Option<Outcome>,
        alert: Option<u64>,
    ) -> Result<(), Error>;

    /// A new pending delivery and its payload.
    fn add_delivery(&mut self, id: u64, state: &DeliveryState, payload: &[u8])
    -> Result<(), Error>;
    /// How an attempt ended: the delivery leaves the outbox, waits, or is dead-lettered.
    fn delivery_outcome(&mut self, id: u64, outcome: &DeliveryOutcome) -> Result<(), Error>;
    /// Takes dead letter `id` back to the outbox as `state` would have it after `now`
    /// ([`DeliveryState::retried`]); `None` when there is no such dead letter.
    fn requeue_dead(&mut self, id: u64, now: u64) -> Result<Option<DeliveryState>, Error>;

    /// A stored silence.
    fn silence(&mut self, id: u64) -> Result<Option<silences::Record>, Error>;
    /// Stores a silence (new, or ended).
    fn put_silence(&mut self, record: &silences::Record) -> Result<(), Error>;
}
