//! The file as serde reads it: one struct per table, unknown keys rejected, defaults for what
//! may be left out. Nothing here is checked; `validate` turns these into the typed [`Config`].
//!
//! [`Config`]: super::Config

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Deserialize;

use crate::domain::{AlertEvent, GroupBy, IntegrationType, Preset, RuleAction, Urgency};

use super::DestinationType;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub smtp: RawSmtp,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub logs: RawLogs,
    #[serde(default)]
    pub integrations: Vec<RawIntegration>,
    #[serde(default)]
    pub destinations: Vec<RawDestination>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSmtp {
    pub listen: Vec<String>,
    pub hostname: String,
    pub max_message_size: i64,
    pub max_recipients: i64,
    pub max_sessions: i64,
    pub max_line_length: i64,
    pub idle_timeout: String,
    pub session_timeout: String,
    pub drain_timeout: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub require_auth: bool,
    pub users: Vec<RawSmtpUser>,
    pub max_sessions_per_client: i64,
    pub max_connection_rate_per_client: i64,
    pub trusted_clients: Vec<String>,
    pub auth_errors_max: i64,
    pub auth_errors_wait: String,
    pub max_auth_error_rate_per_client: i64,
    pub rcpt_errors_max: i64,
    pub rcpt_errors_wait: String,
    pub junk_commands_max: i64,
    pub max_inflight_bytes: i64,
}

impl Default for RawSmtp {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:2525".into()],
            hostname: "siren.localhost".into(),
            max_message_size: 10 * 1024 * 1024,
            max_recipients: 100,
            max_sessions: 1024,
            max_line_length: 65536,
            idle_timeout: "5m".into(),
            session_timeout: "30m".into(),
            drain_timeout: "30s".into(),
            tls_cert: None,
            tls_key: None,
            require_auth: false,
            users: Vec::new(),
            max_sessions_per_client: 50,
            max_connection_rate_per_client: 0,
            trusted_clients: Vec::new(),
            auth_errors_max: 3,
            auth_errors_wait: "5s".into(),
            max_auth_error_rate_per_client: 10,
            rcpt_errors_max: 10,
            rcpt_errors_wait: "1s".into(),
            junk_commands_max: 100,
            max_inflight_bytes: 256 << 20,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtpUser {
    pub name: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHttp {
    pub listen: String,
    pub api_token: Option<String>,
    pub api_token_file: Option<PathBuf>,
    pub api_token_env: Option<String>,
    pub max_body_size: i64,
    pub public_url: Option<String>,
    pub max_alerts_per_request: i64,
    pub header_timeout: String,
    pub body_timeout: String,
    pub body_min_rate: i64,
    pub keepalive_timeout: String,
    pub max_connections: i64,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8025".into(),
            api_token: None,
            api_token_file: None,
            api_token_env: None,
            max_body_size: 1024 * 1024,
            public_url: None,
            max_alerts_per_request: 10_000,
            header_timeout: "30s".into(),
            body_timeout: "30s".into(),
            body_min_rate: 1024,
            keepalive_timeout: "60s".into(),
            max_connections: 4096,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub path: PathBuf,
    pub cache_size: i64,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data"),
            cache_size: 64 << 20,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLogs {
    pub max_entries: i64,
    pub max_age: String,
}

impl Default for RawLogs {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_age: "30d".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntegration {
    pub id: String,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: IntegrationType,
    #[serde(default)]
    pub addresses: Vec<String>,
    pub urgency: Option<Urgency>,
    #[serde(default)]
    pub destinations: Vec<String>,
    pub aggregate: Option<String>,
    pub auto_resolve: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    pub spam_header: Option<String>,
    pub spam_pass: Option<String>,
    pub group_by: Option<GroupBy>,
    pub preset: Option<Preset>,
    pub accept_auto_replies: Option<bool>,
    pub aggregate_key: Option<String>,
    pub normalize: Option<bool>,
    pub storm: Option<RawStorm>,
}

/// `storm = { alerts = 50, within = "1m" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorm {
    pub alerts: i64,
    pub within: String,
}

/// An e-mail rule, `[[integrations.rules]]`: regexes on fields, and what a match does.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub to: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub message: Option<String>,
    pub text: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The third-party id built from the matchers' named groups (`"$host/$service"`).
    pub id: Option<String>,
    pub action: RuleAction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: DestinationType,
    pub url: Option<String>,
    #[serde(default)]
    pub headers: HashMap<String, String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    pub command: Option<Vec<String>>,
    pub smarthost: Option<String>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    pub events: Option<Vec<AlertEvent>>,
    pub max_attempts: Option<i64>,
    pub retry_initial: Option<String>,
    pub retry_max: Option<String>,
    pub timeout: Option<String>,
}
