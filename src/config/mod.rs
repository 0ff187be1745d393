//! Configuration: the only place that reads TOML. Raw serde structs ([`raw`], unknown keys
//! rejected) are validated once ([`validate`]) into an immutable [`Config`]; every error names
//! the file, the key and what is allowed ([`key`]). Nothing here falls back silently to a
//! default when a value is present but wrong. [`Live`] is the configuration in force.

mod destinations;
mod explain;
mod folding;
mod integrations;
mod key;
mod live;
pub mod presets;
mod raw;
mod rule_id;
mod smtp;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::Deserialize;

pub use crate::domain::Secret;
use crate::domain::{AlertEvent, Integration};
use crate::route::Router;
use crate::template::Templates;

pub use explain::explain;
pub use live::Live;

/// A configuration file that could not be used. Its message names the key and the rule.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// The validated configuration the daemon runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub smtp: SmtpConfig,
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub logs: LogsConfig,
    pub integrations: Vec<Integration>,
    pub destinations: Vec<Destination>,
    /// Every integration's title and description templates, compiled.
    pub templates: Arc<Templates>,
    /// The address claims of the e-mail integrations.
    pub router: Arc<Router>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates configuration text; `path` names the file in errors and anchors `*_file` keys.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            // serde names Rust types ("expected i64"); say what to write instead.
            message: e
                .to_string()
                .trim_end()
                .replace("expected i64", "expected an integer"),
        })?;
        validate::config(&key::Key::root(path), raw)
    }
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub listen: Vec<SocketAddr>,
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_sessions: usize,
    pub max_line_length: usize,
    pub idle_timeout: Duration,
    pub session_timeout: Duration,
    pub drain_timeout: Duration,
    /// STARTTLS, when `tls_cert` and `tls_key` are set: the loaded certificate and key.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The certificate chain `tls` was built from (empty without TLS): what tells a reload
    /// that the certificate changed, since a rustls configuration cannot be compared.
    pub tls_chain: Vec<CertificateDer<'static>>,
    /// Who may AUTH (PLAIN or LOGIN, offered only after STARTTLS). Empty: AUTH is off.
    pub users: Vec<SmtpUser>,
    /// MAIL needs a successful AUTH first (`530 5.7.0` otherwise).
    pub require_auth: bool,
    pub limits: SmtpLimits,
}

/// What one SMTP client may cost: its share of the sessions, its error budgets, and the memory
/// all messages in flight may hold together.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpLimits {
    /// Concurrent sessions from one client address (`421 4.7.0` past it).
    pub max_sessions_per_client: usize,
    /// New connections from one client address per minute; 0: no limit.
    pub max_connection_rate_per_client: usize,
    /// Addresses exempt from the two limits above (relays such as a local Postfix).
    pub trusted_clients: Vec<ipnet::IpNet>,
    /// Failed AUTH attempts in one session before `421 4.7.0`.
    pub auth_errors_max: usize,
    /// How long each failed AUTH attempt waits before its reply.
    pub auth_errors_wait: Duration,
    /// Failed AUTH attempts per minute from one client address across its sessions, after a
    /// first burst of as many; past it AUTH gets `454 4.7.0`. 0: no limit.
    pub max_auth_error_rate_per_client: usize,
    /// Refused recipients in one session before `421 4.7.0`.
    pub rcpt_errors_max: usize,
    /// How long each refused recipient waits before its reply.
    pub rcpt_errors_wait: Duration,
    /// NOOP, RSET, VRFY, EXPN, HELP and ETRN between two accepted messages before `421 4.7.0`.
    pub junk_commands_max: usize,
    /// Message bytes all sessions may hold at once; past it DATA gets `452 4.3.1`.
    pub max_inflight_bytes: usize,
}

/// Equal when every value is; TLS by its certificate chain (see `tls_chain`).
impl PartialEq for SmtpConfig {
    fn eq(&self, other: &Self) -> bool {
        // Destructured so that a new field cannot be left out of the comparison.
        let SmtpConfig {
            listen,
            hostname,
            max_message_size,
            max_recipients,
            max_sessions,
            max_line_length,
            idle_timeout,
            session_timeout,
            drain_timeout,
            tls,
            tls_chain,
            users,
            require_auth,
            limits,
        } = self;
        *listen == other.listen
            && *hostname == other.hostname
            && [
                *max_message_size,
                *max_recipients,
                *max_sessions,
                *max_line_length,
            ] == [
                other.max_message_size,
                other.max_recipients,
                other.max_sessions,
                other.max_line_length,
            ]
            && [*idle_timeout, *session_timeout, *drain_timeout]
                == [
                    other.idle_timeout,
                    other.session_timeout,
                    other.drain_timeout,
                ]
            && tls.is_some() == other.tls.is_some()
            && *tls_chain == other.tls_chain
            && *users == other.users
            && *require_auth == other.require_auth
            && *limits == other.limits
    }
}

/// One `[[smtp.users]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpUser {
    pub name: String,
    pub password: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub api_token: Option<Secret>,
    /// Largest webhook body accepted; larger ones get 413.
    pub max_body_size: usize,
    /// How others reach this port (for links in notifications); `http://<listen>` by default.
    pub public_url: String,
    /// Most alerts one webhook request may carry (an Alertmanager group); more get 413.
    pub max_alerts_per_request: usize,
    /// Longest a client may take to send a request's headers (and to start the next one on a
    /// kept-alive connection).
    pub header_timeout: Duration,
    /// Time allowed for a body before `body_min_rate` is applied.
    pub body_timeout: Duration,
    /// Each `body_min_rate` bytes of body received earn one more second.
    pub body_min_rate: u64,
    /// A connection with no traffic this long is closed once its request is answered.
    pub keepalive_timeout: Duration,
    /// Concurrent HTTP connections at most (also bounded by the open-file limit).
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// sled's page cache, in bytes.
    pub cache_size: u64,
}

/// Retention of integration logs, applied per integration.
#[derive(Debug, Clone, PartialEq)]
pub struct LogsConfig {
    pub max_entries: usize,
    pub max_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationType {
    Webhook,
    Slack,
    Email,
    Command,
}

/// Where and how alert events are delivered (spec step 8).
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub id: String,
    pub kind: DestinationType,
    pub target: Target,
    /// The events this destination receives.
    pub events: Vec<AlertEvent>,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles (with jitter) up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// The limit on one attempt (connect, send, answer; or the command's run).
    pub timeout: Duration,
}

/// A destination's kind-specific settings.
#[derive(Clone, PartialEq)]
pub enum Target {
    Webhook {
        url: reqwest::Url,
        /// Values may carry credentials (`Authorization`), so they are secrets too.
        headers: Vec<(String, Secret)>,
        /// Signs each body: `X-Siren-Signature: sha256=<hex HMAC-SHA256>`.
        secret: Option<Secret>,
    },
    Slack {
        url: reqwest::Url,
        /// The base of the alert link in messages (`http.public_url`).
        link_base: String,
    },
    Email {
        host: String,
        port: u16,
        from: String,
        to: Vec<String>,
    },
    Command {
        argv: Vec<String>,
    },
}

/// Written by hand for one field: a Slack incoming-webhook URL is its credential, so only its
/// origin is shown (the webhook's own secret and header values are `Secret`s already).
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Webhook {
                url,
                headers,
                secret,
            } => f
                .debug_struct("Webhook")
                .field("url", &url.as_str())
                .field("headers", headers)
                .field("secret", secret)
                .finish(),
            Target::Slack { url, link_base } => f
                .debug_struct("Slack")
                .field(
                    "url",
                    &format!("{}/<redacted>", url.origin().ascii_serialization()),
                )
                .field("link_base", link_base)
                .finish(),
            Target::Email {
                host,
                port,
                from,
                to,
            } => f
                .debug_struct("Email")
                .field("host", host)
                .field("port", port)
                .field("from", from)
                .field("to", to)
                .finish(),
            Target::Command { argv } => f.debug_struct("Command").field("argv", argv).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_every_secret() {
        let config = parse(
            "[http]\napi_token = \"api-SECRET\"\n\
             [[integrations]]\nid = \"hook\"\ntype = \"webhook\"\ntoken = \"tok-SECRET\"\n\
             [[destinations]]\nid = \"d\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\
             secret = \"sig-SECRET\"\nheaders = { Authorization = \"Bearer hdr-SECRET\" }\n\
             [[destinations]]\nid = \"s\"\ntype = \"slack\"\n\
             url = \"https://hooks.slack.com/services/T0/B0/slack-SECRET\"\n",
        )
        .unwrap();
        let user = SmtpUser {
            name: "relay".into(),
            password: Secret::new("pw-SECRET"),
        };
        let shown = format!("{config:?} {user:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        // What is not secret still shows.
        assert!(
            shown.contains("Authorization") && shown.contains("hooks.slack.com"),
            "{shown}"
        );
        // The values themselves are intact for use.
        assert_eq!(config.http.api_token.as_deref(), Some("api-SECRET"));
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn secrets_come_from_environment_variables() {
        // cargo sets CARGO_PKG_NAME for the test process.
        let config = parse(
            "[[integrations]]\nid = \"hook\"\ntype = \"webhook\"\ntoken_env = \"CARGO_PKG_NAME\"\n\
             [[destinations]]\nid = \"d\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\
             secret_env = \"CARGO_PKG_NAME\"\n",
        )
        .unwrap();
        assert_eq!(config.integrations[0].token.as_deref(), Some("siren"));
        assert!(matches!(
            &config.destinations[0].target,
            Target::Webhook { secret: Some(s), .. } if s.as_str() == "siren"
        ));
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../../config/siren.toml");
        let cfg = parse(text).expect("config/siren.toml must be valid");
        assert_eq!(cfg.smtp.listen[0].to_string(), "127.0.0.1:2525");
        assert_eq!(cfg.http.listen.to_string(), "127.0.0.1:8025");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.smtp.max_message_size, 10 * 1024 * 1024);
        assert_eq!(cfg.store.path, PathBuf::from("data"));
        assert!(cfg.integrations.is_empty());
    }
}
