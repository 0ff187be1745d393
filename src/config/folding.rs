//! The keys that shape how inputs fold together: `aggregate_key` and `normalize` (what the
//! title window compares) and `storm` (the rate past which new alerts fold into one).

use std::time::Duration;

use crate::domain::Storm;

use super::ConfigError;
use super::key::Key;
use super::raw::RawStorm;

/// A storm's window lies in this range: long enough to measure a rate, short enough that a
/// storm alert resolves the same day.
const STORM_WITHIN_MIN: Duration = Duration::from_secs(1);
const STORM_WITHIN_MAX: Duration = Duration::from_secs(24 * 3600);
/// Most alerts a storm threshold may name: the writer keeps that many times per integration.
const STORM_ALERTS_MAX: usize = 10_000;

pub(super) struct Folding {
    pub aggregate_key: Option<String>,
    pub normalize: bool,
    pub storm: Option<Storm>,
}

/// `at` is the integration's key; `aggregate` its title window, which `aggregate_key` and
/// `normalize` refine (so they need it).
pub(super) fn folding(
    at: &Key,
    aggregate: Option<Duration>,
    aggregate_key: Option<String>,
    normalize: Option<bool>,
    storm: Option<RawStorm>,
) -> Result<Folding, ConfigError> {
    if aggregate.is_none() {
        if aggregate_key.is_some() {
            return Err(at.at("aggregate_key").err(
                "needs aggregate: the key is what the aggregate window compares (e.g. aggregate = \"1h\")",
            ));
        }
        if normalize == Some(true) {
            return Err(at.at("normalize").err(
                "needs aggregate: normalizing shapes what the aggregate window compares (e.g. aggregate = \"1h\")",
            ));
        }
    }
    if aggregate_key
        .as_deref()
        .is_some_and(|k| k.trim().is_empty())
    {
        return Err(at
            .at("aggregate_key")
            .err("must not be empty; leave it out to compare titles"));
    }
    let storm = storm
        .map(|s| {
            let at = at.at("storm");
            let alerts = at.at("alerts").positive(s.alerts, STORM_ALERTS_MAX)?;
            let within = at.at("within").duration(&s.within)?;
            if !(STORM_WITHIN_MIN..=STORM_WITHIN_MAX).contains(&within) {
                return Err(at.at("within").err(format!(
                    "\"{}\" is out of range; allowed: 1s to 1d",
                    s.within
                )));
            }
            Ok(Storm { alerts, within })
        })
        .transpose()?;
    Ok(Folding {
        aggregate_key,
        normalize: normalize.unwrap_or(false),
        storm,
    })
}
