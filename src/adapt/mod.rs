//! Stage 4: one file per integration type turns what it received into events: an action, a
//! third-party id, and the data templates see. Pure: no I/O.

pub mod alertmanager;
pub mod email;
pub mod form;
pub mod grafana;
pub mod guard;
#[cfg(test)]
mod preset_tests;
pub mod webhook;

use crate::domain::{Action, Integration, IntegrationType, Urgency};

/// Why an adapter could not read a payload; the message names the problem for the sender.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct AdaptError(pub String);

/// At most this many extra ids (`dedup_keys`) per event: each is an index lookup and key.
pub const DEDUP_KEYS_MAX: usize = 32;

/// One alert-level event an input carries (an Alertmanager payload carries several).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub action: Action,
    pub thirdparty_id: String,
    /// What templates see as `data`.
    pub data: serde_json::Value,
    /// The input's own urgency, when it names one; else the integration's.
    pub urgency: Option<Urgency>,
    /// E-mail only: the index of the integration's rule that decided the action.
    pub rule: Option<usize>,
    /// Further ids that aggregate into the same alert (a webhook's `dedup_keys`, the
    /// Message-IDs of an e-mail's thread): a `create` folds into a live alert known by any of
    /// them, and a new alert is known by all of them. At most [`DEDUP_KEYS_MAX`].
    pub dedup_keys: Vec<String>,
    /// Why the input changes no alert although it could have (spam), for the log.
    pub reason: Option<String>,
}

impl Event {
    /// An event with only its action, id and data; no urgency, rule, extra ids or reason.
    pub fn new(action: Action, thirdparty_id: String, data: serde_json::Value) -> Event {
        Event {
            action,
            thirdparty_id,
            data,
            urgency: None,
            rule: None,
            dedup_keys: Vec::new(),
            reason: None,
        }
    }
}

/// The events of a payload sent over HTTP to `integration`: the one place that picks the
/// adapter by integration type. E-mail is adapted from parsed messages ([`email::adapt`]),
/// never from a payload.
/// `query` is the request's query string: for `webhook`, its parameters fill in what the body
/// does not set ([`form::with_query`]).
pub fn payload(
    integration: &Integration,
    body: &serde_json::Value,
    query: Option<&str>,
) -> Result<Vec<Event>, AdaptError> {
    match integration.kind {
        IntegrationType::Webhook => {
            webhook::adapt(&form::with_query(body.clone(), query)).map(|e| vec![e])
        }
        IntegrationType::Alertmanager => alertmanager::adapt(body, integration.group_by),
        IntegrationType::Grafana => grafana::adapt(body),
        IntegrationType::Email => Err(AdaptError(
            "an email integration takes e-mail, not a JSON payload".into(),
        )),
    }
}

/// The urgency a `severity` label names, ignoring case: PagerTree's four values and the ones
/// Prometheus rules customarily use (`docs/integrations.md` has the table).
pub fn severity(severity: &str) -> Option<Urgency> {
    match severity.trim().to_ascii_lowercase().as_str() {
        "critical" | "page" => Some(Urgency::Critical),
        "high" | "error" => Some(Urgency::High),
        "medium" | "warning" | "warn" => Some(Urgency::Medium),
        "low" | "info" | "none" => Some(Urgency::Low),
        _ => None,
    }
}

/// `ids` without blanks, duplicates or `except`, in order, at most [`DEDUP_KEYS_MAX`].
pub fn dedup_keys<'a>(ids: impl IntoIterator<Item = &'a str>, except: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        let id = id.trim();
        if !id.is_empty() && id != except && !out.iter().any(|k| k == id) {
            out.push(id.to_string());
            if out.len() == DEDUP_KEYS_MAX {
                break;
            }
        }
    }
    out
}

/// A third-party id for inputs that carry none: random, so they never fold together by id.
pub fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keys_drop_blanks_duplicates_and_the_id_and_are_bounded() {
        assert_eq!(
            dedup_keys(["a", " b ", "", "a", "id", "c"], "id"),
            ["a", "b", "c"]
        );
        let many: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let keys = dedup_keys(many.iter().map(String::as_str), "");
        assert_eq!(keys.len(), DEDUP_KEYS_MAX);
        assert_eq!(keys[0], "0");
    }
}
