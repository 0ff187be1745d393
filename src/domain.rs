//! The vocabulary every stage shares: urgency, action, alert events, integration types, an
//! integration as configured and its e-mail rules. Plain data at the bottom of the crate: this
//! module names no other module of Siren, so `config`, `route`, `adapt`, `template` and `store`
//! can all use it and imports point one way.

use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    Low,
    Medium,
    High,
    Critical,
}

/// What an input asks of the alerts of its integration (spec step 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Resolve,
    Acknowledge,
    /// Create the alert with status `dropped` (a rule dropped it).
    Drop,
    /// Log it and change nothing.
    Other,
}

/// A change to an alert that destinations can be told about (`destinations[].events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEvent {
    Create,
    Acknowledge,
    Resolve,
    Aggregate,
}

/// Who resolved an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolvedBy {
    Integration,
    Auto,
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationType {
    Email,
    Webhook,
    Alertmanager,
    Grafana,
}

impl IntegrationType {
    /// Every type, in the order the documentation lists them.
    pub const ALL: [IntegrationType; 4] = [
        IntegrationType::Email,
        IntegrationType::Webhook,
        IntegrationType::Alertmanager,
        IntegrationType::Grafana,
    ];

    /// The name used in the configuration, templates and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationType::Email => "email",
            IntegrationType::Webhook => "webhook",
            IntegrationType::Alertmanager => "alertmanager",
            IntegrationType::Grafana => "grafana",
        }
    }

    /// Whether inputs arrive over HTTP (`POST /webhooks/{id}`) rather than SMTP.
    pub fn is_http(self) -> bool {
        self != IntegrationType::Email
    }
}

/// How an `alertmanager` integration turns a notification into alerts (`group_by`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One alert per element of `alerts`, keyed by its fingerprint.
    #[default]
    Alert,
    /// One alert per notification, keyed by `groupKey` (as PagerTree does).
    Group,
}

/// An `email` integration's spam check: a message whose `header` is present and whose value
/// `pass` does not match is spam, logged as `ignored` without an alert.
#[derive(Debug, Clone)]
pub struct SpamCheck {
    pub header: String,
    pub pass: Regex,
}

impl PartialEq for SpamCheck {
    fn eq(&self, other: &Self) -> bool {
        self.header == other.header && self.pass.as_str() == other.pass.as_str()
    }
}

/// An integration: what it claims (addresses, a webhook URL) and how its alerts are built.
/// `config` validates and builds it; the stages read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    pub id: String,
    pub name: String,
    pub kind: IntegrationType,
    /// Normalized (lower-case) claims: `local@domain` or `*@domain`.
    pub addresses: Vec<String>,
    pub urgency: Urgency,
    pub destinations: Vec<String>,
    pub aggregate: Option<Duration>,
    pub auto_resolve: Option<Duration>,
    pub title: String,
    pub description: String,
    pub token: Option<Secret>,
    /// `email` only: tried in order, the first match decides the action (`adapt::email`). The
    /// integration's own rules come first, then its preset's.
    pub rules: Vec<Rule>,
    /// `email` only: the sender preset whose rules follow the own ones in `rules`.
    pub preset: Option<Preset>,
    /// How many of `rules` are the integration's own (the rest are the preset's).
    pub own_rules: usize,
    /// `email` only: take auto-replies and delivery reports as alerts instead of ignoring
    /// them (`adapt::guard`).
    pub accept_auto_replies: bool,
    /// `email` only: `spam_header` and `spam_pass`.
    pub spam: Option<SpamCheck>,
    /// `alertmanager` only.
    pub group_by: GroupBy,
    /// With `aggregate`: the template whose rendering the title window compares instead of
    /// the title.
    pub aggregate_key: Option<String>,
    /// With `aggregate`: mask numbers, ids, addresses and times in the key first (`normalize`).
    pub normalize: bool,
    /// Past this rate, new alerts fold into one storm alert.
    pub storm: Option<Storm>,
}

/// `storm = { alerts = 50, within = "1m" }`: more than `alerts` new alerts within `within`
/// is a storm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storm {
    pub alerts: usize,
    pub within: Duration,
}

impl Integration {
    /// An integration of `kind` with only its id set: no claims, tokens, windows, rules, and
    /// empty templates. What `config` fills in, and what unit tests build on without a file.
    pub fn new(id: &str, kind: IntegrationType) -> Self {
        Integration {
            id: id.into(),
            name: id.into(),
            kind,
            addresses: Vec::new(),
            urgency: Urgency::Medium,
            destinations: Vec::new(),
            aggregate: None,
            auto_resolve: None,
            title: String::new(),
            description: String::new(),
            token: None,
            rules: Vec::new(),
            spam: None,
            group_by: GroupBy::Alert,
            preset: None,
            own_rules: 0,
            accept_auto_replies: false,
            aggregate_key: None,
            normalize: false,
            storm: None,
        }
    }
}

/// A sender whose default mail format Siren knows (`preset`): it brings the rules and
/// templates for that format, defined in `config/presets/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Nagios,
    Icinga2,
    Zabbix,
    Monit,
    Alertmanager,
    Grafana,
    Cron,
    Smartd,
    Apcupsd,
}

impl Preset {
    /// Every preset, in the order the documentation lists them.
    pub const ALL: [Preset; 9] = [
        Preset::Nagios,
        Preset::Icinga2,
        Preset::Zabbix,
        Preset::Monit,
        Preset::Alertmanager,
        Preset::Grafana,
        Preset::Cron,
        Preset::Smartd,
        Preset::Apcupsd,
    ];

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Nagios => "nagios",
            Preset::Icinga2 => "icinga2",
            Preset::Zabbix => "zabbix",
            Preset::Monit => "monit",
            Preset::Alertmanager => "alertmanager",
            Preset::Grafana => "grafana",
            Preset::Cron => "cron",
            Preset::Smartd => "smartd",
            Preset::Apcupsd => "apcupsd",
        }
    }
}

/// What a matching e-mail rule does with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Create,
    Resolve,
    Acknowledge,
    /// Create the alert with status `dropped`.
    Drop,
    /// Log the message (outcome `ignored`) and change no alert.
    Ignore,
}

impl From<RuleAction> for Action {
    fn from(a: RuleAction) -> Action {
        match a {
            RuleAction::Create => Action::Create,
            RuleAction::Resolve => Action::Resolve,
            RuleAction::Acknowledge => Action::Acknowledge,
            RuleAction::Drop => Action::Drop,
            RuleAction::Ignore => Action::Other,
        }
    }
}

/// The part of the e-mail data a matcher reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    To,
    From,
    Subject,
    Message,
    Text,
    /// A header by name, ignoring case. A message without the header does not match.
    Header(String),
}

/// The name of the group whose match becomes the third-party id.
pub const ID_GROUP: &str = "id";

/// One regular expression on one field.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub field: Field,
    pub regex: Regex,
}

/// Two matchers are the same when they read the same field with the same pattern (a reload
/// compares configurations by value).
impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && self.regex.as_str() == other.regex.as_str()
    }
}

/// A compiled e-mail rule: every matcher must match; then `action` applies. The third-party
/// id is `id` expanded over the matchers' named groups when the rule has one; else the `id`
/// group, which at most one matcher has (both checked at load).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub matchers: Vec<Matcher>,
    pub action: RuleAction,
    pub id: Option<IdTemplate>,
}

/// A rule's `id` key (`"$host/$service"`): text and the names of groups whose matches replace
/// them, so that a third-party id can join several groups, or add text no input carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTemplate {
    /// As written in the configuration.
    pub source: String,
    pub parts: Vec<IdPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdPart {
    Text(String),
    /// The match of the named group (empty when it did not take part).
    Group(String),
}

/// A configured secret (an API or integration token, a webhook signing secret, a password):
/// used as a `&str`, never printed. Its `Debug` says `<redacted>`, so a configuration logged or
/// shown with `{:?}` gives none away.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Secret {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
