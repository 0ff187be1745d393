//! How inputs fold beyond their third-party id, inside the writer's transaction: the title
//! window's key (`aggregate_key`, `normalize`), storm folding, and silences.
//!
//! Storm folding (`storm = { alerts, within }`): every input that would create a new alert of
//! the integration is counted in a sliding window ([`past_window`], at most `alerts + 1` times
//! per integration; kept in memory on sled, in a row every node shares on PostgreSQL). Past `alerts` within `within`, the input folds into the integration's
//! storm alert instead: created by the first one, with one `create` event (one page), and
//! after that each new member adds to its dedup count and title ("Storm: 312 alerts from
//! zabbix in 1m") without notifying. The storm lasts while the rate stays past the threshold;
//! then new alerts are created again. The storm alert resolves itself when every member it
//! took has resolved (by the integration), or `within` after its last member (`auto`).
//!
//! The storm alert is filed under the third-party id [`STORM_ID`], and each member's
//! third-party id under the storm alert, so that its repeats and its resolve find the storm
//! (sled: `T` keys, `alerts.rs`; PostgreSQL: `siren_alert_keys`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::alerts::{AlertEvent, AlertRequest, Outcome, Record, ResolvedBy, Status};
use super::engine::{Engine, Key};
use super::rules::Rules;
use super::silences::Silences;
use super::{Error, NewLog};
use crate::domain::{Action, Storm};

/// The third-party id of an integration's storm alert.
pub const STORM_ID: &str = "siren:storm";
/// What a silenced entry's `error` says, followed by the silence's id.
pub const SILENCED_BY: &str = "silenced by silence ";

/// How an input folds beyond its third-party id, as its integration says.
#[derive(Debug, Clone, Default)]
pub struct Fold {
    /// What the title window compares (the rendered `aggregate_key`, normalized when asked);
    /// `None`: the title.
    pub key: Option<String>,
    pub storm: Option<Storm>,
    /// The silence the input matched, set by the store when it is committed.
    pub silence: Option<u64>,
}

/// A storm alert's members, in its record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StormMembers {
    /// Would-be new alerts folded in.
    pub members: u64,
    /// Of those, not yet resolved.
    pub open: u64,
}

/// What the writer keeps across groups for folding: the storm windows, and the silences in
/// force (shared with every [`WriterHandle`](super::WriterHandle), which marks inputs with
/// them as they are committed).
#[derive(Clone, Default)]
pub(crate) struct Folding {
    storms: Arc<Mutex<HashMap<String, VecDeque<u64>>>>,
    pub silences: Silences,
}

impl Folding {
    /// The folding state of the store in `tree`: its stored silences; empty storm windows.
    pub fn load(tree: &sled::Tree) -> Result<Folding, Error> {
        Ok(Folding {
            storms: Arc::default(),
            silences: Silences::load(tree)?,
        })
    }

    /// The folding state of a PostgreSQL node: the stored silences `list`. Its storm windows
    /// are in the database, shared by every node.
    pub fn with_silences(list: Vec<super::silences::Record>) -> Folding {
        let folding = Folding::default();
        folding.silences.set(list);
        folding
    }

    /// Marks each entry's alert request with the silence in force that matches it.
    pub fn mark(&self, logs: &mut [NewLog]) {
        let now = super::unix_ms(crate::clock::now());
        for log in logs {
            let Some(req) = &mut log.alert else { continue };
            req.fold.silence = self
                .silences
                .matching(&log.integration, &req.title, &log.data, now);
            // The log says which silence dropped the alert (and `siren replay` reads it).
            if let Some(id) = req.fold.silence {
                let note = format!("{SILENCED_BY}{id}");
                log.error = Some(match log.error.take() {
                    Some(e) => format!("{e}; {note}"),
                    None => note,
                });
            }
        }
    }

    /// Counts one would-be new alert of `integration` at `now`; true when that makes more
    /// than `storm.alerts` within `storm.within`.
    pub(super) fn past(&self, integration: &str, storm: Storm, now: u64) -> bool {
        let mut windows = self.storms.lock().unwrap_or_else(|p| p.into_inner());
        past_window(
            windows.entry(integration.to_string()).or_default(),
            storm,
            now,
        )
    }
}

/// The title of a storm alert with `members`.
fn storm_title(members: u64, integration: &str, storm: Storm) -> String {
    let within = humantime::format_duration(storm.within);
    let alerts = if members == 1 { "alert" } else { "alerts" };
    format!("Storm: {members} {alerts} from {integration} in {within}")
}

/// Counts one would-be new alert at `now` into a storm window (the times of the last ones,
/// oldest first, at most `storm.alerts + 1`); true when that makes more than `storm.alerts`
/// within `storm.within`. The same on both engines: sled keeps the windows in memory,
/// PostgreSQL in a row per integration that every node shares.
pub(super) fn past_window(times: &mut VecDeque<u64>, storm: Storm, now: u64) -> bool {
    let from = now.saturating_sub(storm.within.as_millis() as u64);
    while times.front().is_some_and(|&t| t <= from) {
        times.pop_front();
    }
    times.push_back(now);
    while times.len() > storm.alerts + 1 {
        times.pop_front();
    }
    times.len() > storm.alerts
}

impl<E: Engine> Rules<'_, E> {
    /// Folds `req`, which would create a new alert, into its integration's storm alert when the
    /// integration is past its storm rate; `None` when it is not (or has no storm setting).
    pub(super) fn storm_fold(
        &mut self,
        integration: &str,
        req: &AlertRequest,
        log_id: u64,
        now: u64,
    ) -> Result<Option<(Outcome, Option<u64>)>, Error> {
        let Some(storm) = req.fold.storm else {
            return Ok(None);
        };
        if req.action != Action::Create || req.fold.silence.is_some() {
            return Ok(None);
        }
        if !self.e.storm_past(integration, storm, now)? {
            return Ok(None);
        }
        let member = Key::ThirdParty(&req.thirdparty_id);
        let current = match self
            .e
            .newest(integration, Key::ThirdParty(STORM_ID), 1)?
            .first()
        {
            Some(&id) => self.e.record(id)?.filter(|r| r.status.still_there()),
            None => None,
        };
        let Some(old) = current else {
            let id = self.new_storm(integration, req, storm, log_id, now)?;
            self.e.index(integration, member, id)?;
            return Ok(Some((Outcome::Aggregated, Some(id))));
        };
        let mut r = old.clone();
        let members = r.storm.get_or_insert_with(StormMembers::default);
        members.members += 1;
        members.open += 1;
        r.title = storm_title(members.members, integration, storm);
        r.dedup_count += 1;
        r.updated_ms = now;
        // It resolves `within` after its last member.
        r.auto_resolve_ms = Some(now + storm.within.as_millis() as u64);
        self.e.index(integration, member, r.id)?;
        let id = r.id;
        // No event: the storm alert paged once, when it was created.
        self.e.update(&old, r)?;
        Ok(Some((Outcome::Aggregated, Some(id))))
    }

    /// Creates the storm alert, its first member `req` in it; it pages (a `create` event).
    fn new_storm(
        &mut self,
        integration: &str,
        req: &AlertRequest,
        storm: Storm,
        log_id: u64,
        now: u64,
    ) -> Result<u64, Error> {
        let id = self.e.generate_id()?;
        let deadline = now + storm.within.as_millis() as u64;
        let record = Record {
            id,
            integration: integration.to_string(),
            thirdparty_id: STORM_ID.to_string(),
            title: storm_title(1, integration, storm),
            urgency: req.urgency,
            status: Status::Open,
            dedup_count: 0,
            created_ms: now,
            updated_ms: now,
            resolved_ms: None,
            resolved_by: None,
            log_id,
            auto_resolve_ms: Some(deadline),
            storm: Some(StormMembers {
                members: 1,
                open: 1,
            }),
            description: None,
        };
        let within = humantime::format_duration(storm.within);
        let description = format!(
            "<p>More than {} new alerts from {integration} within {within}: new alerts fold into \
             this one while the rate lasts; each is in the integration's log. It resolves when \
             they all have, or {within} after the last one.</p><p>First: {}</p>",
            storm.alerts,
            crate::email::escape_html(&req.title)
        );
        self.e.index(integration, Key::ThirdParty(STORM_ID), id)?;
        self.event(&record, AlertEvent::Create);
        self.e.insert(record, &description)?;
        Ok(id)
    }

    /// A member of storm alert `old` resolved (`thirdparty_id` in `integration`): one fewer
    /// open member, and the storm alert resolves with the last. A member's acknowledge changes
    /// nothing (the storm alert stands for all of them).
    pub(super) fn storm_member(
        &mut self,
        old: Record,
        integration: &str,
        thirdparty_id: &str,
        resolve: bool,
        now: u64,
    ) -> Result<(Outcome, Option<u64>), Error> {
        let id = old.id;
        if !resolve || !old.status.still_there() {
            return Ok((Outcome::Ignored, Some(id)));
        }
        // Its key leaves the index, so that its resolve is counted once. (On sled, two resolves
        // of one member within one group commit can both count: the tree's key goes with the
        // batch.)
        self.e
            .unindex(integration, Key::ThirdParty(thirdparty_id), id)?;
        let mut r = old.clone();
        let members = r.storm.get_or_insert_with(StormMembers::default);
        members.open = members.open.saturating_sub(1);
        if members.open == 0 {
            self.set_status(r, Status::Resolved, Some(ResolvedBy::Integration), now)?;
            return Ok((Outcome::Resolved, Some(id)));
        }
        r.updated_ms = now;
        self.e.update(&old, r)?;
        Ok((Outcome::Resolved, Some(id)))
    }
}
