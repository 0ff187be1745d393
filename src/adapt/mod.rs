//! Stage 4: one file per integration type turns what it received into events: an action, a
//! third-party id, and the data templates see. Pure: no I/O.

pub mod alertmanager;
pub mod email;
pub mod webhook;

/// Why an adapter could not read a payload; the message names the problem for the sender.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct AdaptError(pub String);

use crate::domain::{Action, IntegrationType, Urgency};

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
}

/// The events of a JSON payload sent to an integration of `kind`: the one place that picks
/// the adapter by integration type. E-mail is adapted from parsed messages
/// ([`email::adapt`]), never from JSON.
pub fn payload(kind: IntegrationType, body: &serde_json::Value) -> Result<Vec<Event>, AdaptError> {
    match kind {
        IntegrationType::Webhook => webhook::adapt(body).map(|e| vec![e]),
        IntegrationType::Alertmanager => alertmanager::adapt(body),
        IntegrationType::Email => Err(AdaptError(
            "an email integration takes e-mail, not a JSON payload".into(),
        )),
    }
}

/// A third-party id for inputs that carry none: random, so they never fold together by id.
pub fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
