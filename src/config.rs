//! Configuration: the only place that reads TOML. Raw serde structs (unknown keys rejected) are
//! validated once into an immutable [`Config`]; every error names the key and what is allowed.
//! Nothing here falls back silently to a default when a value is present but wrong.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;

use crate::adapt::email::{Field, ID_GROUP, Matcher, Rule, RuleAction};
use crate::route::Router;
use crate::store::AlertEvent;
use crate::template::Templates;

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

/// The configuration in force. SIGHUP replaces its integrations (with their templates and
/// address claims) and destinations as one unit; readers take a snapshot ([`Live::get`]) and
/// use it for a whole transaction or request, so a reload never splits one.
#[derive(Clone)]
pub struct Live(Arc<ArcSwap<Config>>);

impl Live {
    pub fn new(config: Config) -> Self {
        Live(Arc::new(ArcSwap::from_pointee(config)))
    }

    /// The configuration as it is now.
    pub fn get(&self) -> Arc<Config> {
        self.0.load_full()
    }

    /// Puts `new`'s integrations, templates and destinations in force. The listeners, limits,
    /// store and log retention stay as they are (they need a restart); returns the sections
    /// whose new values were therefore not applied.
    pub fn reload(&self, new: Config) -> Vec<&'static str> {
        let old = self.get();
        let mut kept = Vec::new();
        let differs =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        let smtp = |c: &SmtpConfig| {
            (
                c.listen.clone(),
                c.hostname.clone(),
                [
                    c.max_message_size,
                    c.max_recipients,
                    c.max_sessions,
                    c.max_line_length,
                ],
                [c.idle_timeout, c.session_timeout, c.drain_timeout],
                c.tls.is_some(),
                c.require_auth,
                // Passwords too (SmtpUser's Debug hides them): a changed one needs a restart.
                c.users
                    .iter()
                    .map(|u| (u.name.clone(), u.password.clone()))
                    .collect::<Vec<_>>(),
            )
        };
        if differs(&smtp(&old.smtp), &smtp(&new.smtp)) {
            kept.push("smtp");
        }
        if differs(&old.http, &new.http) {
            kept.push("http");
        }
        if differs(&old.store, &new.store) {
            kept.push("store");
        }
        if differs(&old.logs, &new.logs) {
            kept.push("logs");
        }
        self.0.store(Arc::new(Config {
            smtp: old.smtp.clone(),
            http: old.http.clone(),
            store: old.store.clone(),
            logs: old.logs.clone(),
            ..new
        }));
        kept
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
    /// Who may AUTH (PLAIN or LOGIN, offered only after STARTTLS). Empty: AUTH is off.
    pub users: Vec<SmtpUser>,
    /// MAIL needs a successful AUTH first (`530 5.7.0` otherwise).
    pub require_auth: bool,
}

/// One `[[smtp.users]]` entry.
#[derive(Clone)]
pub struct SmtpUser {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for SmtpUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub api_token: Option<String>,
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

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// sled's page cache, in bytes.
    pub cache_size: u64,
}

/// Retention of integration logs, applied per integration.
#[derive(Debug, Clone)]
pub struct LogsConfig {
    pub max_entries: usize,
    pub max_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationType {
    Email,
    Webhook,
    Alertmanager,
}

impl IntegrationType {
    /// The name used in the configuration, templates and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationType::Email => "email",
            IntegrationType::Webhook => "webhook",
            IntegrationType::Alertmanager => "alertmanager",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    Low,
    Medium,
    High,
    Critical,
}

/// An integration: what it claims (addresses, a webhook URL) and how its alerts are built.
#[derive(Debug, Clone)]
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
    pub token: Option<String>,
    /// `email` only: tried in order, the first match decides the action (`adapt::email`).
    pub rules: Vec<Rule>,
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
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
pub enum Target {
    Webhook {
        url: reqwest::Url,
        headers: Vec<(String, String)>,
        /// Signs each body: `X-Siren-Signature: sha256=<hex HMAC-SHA256>`.
        secret: Option<String>,
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

/// Window values (`aggregate`, `auto_resolve`) must lie in this range.
const WINDOW_MIN: Duration = Duration::from_secs(15 * 60);
const WINDOW_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    smtp: RawSmtp,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    logs: RawLogs,
    #[serde(default)]
    integrations: Vec<RawIntegration>,
    #[serde(default)]
    destinations: Vec<RawDestination>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSmtp {
    listen: Vec<String>,
    hostname: String,
    max_message_size: i64,
    max_recipients: i64,
    max_sessions: i64,
    max_line_length: i64,
    idle_timeout: String,
    session_timeout: String,
    drain_timeout: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    require_auth: bool,
    users: Vec<RawSmtpUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtpUser {
    name: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
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
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    listen: String,
    api_token: Option<String>,
    api_token_file: Option<PathBuf>,
    api_token_env: Option<String>,
    max_body_size: i64,
    public_url: Option<String>,
    max_alerts_per_request: i64,
    header_timeout: String,
    body_timeout: String,
    body_min_rate: i64,
    keepalive_timeout: String,
    max_connections: i64,
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
struct RawStore {
    path: PathBuf,
    cache_size: i64,
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
struct RawLogs {
    max_entries: i64,
    max_age: String,
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
struct RawIntegration {
    id: String,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: IntegrationType,
    #[serde(default)]
    addresses: Vec<String>,
    urgency: Option<Urgency>,
    #[serde(default)]
    destinations: Vec<String>,
    aggregate: Option<String>,
    auto_resolve: Option<String>,
    title: Option<String>,
    description: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

/// An e-mail rule, `[[integrations.rules]]`: regexes on fields, and what a match does.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    to: Option<String>,
    from: Option<String>,
    subject: Option<String>,
    message: Option<String>,
    text: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    action: RuleAction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    id: String,
    #[serde(rename = "type")]
    kind: DestinationType,
    url: Option<String>,
    #[serde(default)]
    headers: HashMap<String, String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    command: Option<Vec<String>>,
    smarthost: Option<String>,
    from: Option<String>,
    to: Option<Vec<String>>,
    events: Option<Vec<AlertEvent>>,
    max_attempts: Option<i64>,
    retry_initial: Option<String>,
    retry_max: Option<String>,
    timeout: Option<String>,
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
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            // serde names Rust types ("expected i64"); say what to write instead.
            message: e
                .to_string()
                .trim_end()
                .replace("expected i64", "expected an integer"),
        })?;
        Validator { path }.config(raw)
    }
}

struct Validator<'a> {
    path: &'a Path,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let smtp = self.smtp(raw.smtp)?;
        let http = self.http(raw.http)?;
        if raw.store.path.as_os_str().is_empty() {
            return Err(self.err("store.path", "must not be empty"));
        }
        let logs = LogsConfig {
            max_entries: self.positive("logs.max_entries", raw.logs.max_entries, 1_000_000)?,
            max_age: self.duration("logs.max_age", &raw.logs.max_age)?,
        };
        let destinations = self.destinations(raw.destinations, &http)?;
        let integrations = self.integrations(raw.integrations, &destinations)?;
        if !http.listen.ip().is_loopback()
            && let Some(open) = integrations
                .iter()
                .find(|i| i.kind != IntegrationType::Email && i.token.is_none())
        {
            return Err(self.err(
                format!("integrations[{}].token", open.id),
                "is required for webhook and alertmanager integrations when http.listen is not a loopback address (set token or token_file)",
            ));
        }
        let templates = Templates::new(&integrations).map_err(|e| {
            self.err(
                format!("integrations[{}].{}", e.integration, e.field),
                e.message,
            )
        })?;
        Ok(Config {
            smtp,
            http,
            store: StoreConfig {
                path: raw.store.path,
                cache_size: self.size_in(
                    "store.cache_size",
                    raw.store.cache_size,
                    1 << 20,
                    1 << 40,
                )?,
            },
            logs,
            router: Arc::new(Router::new(&integrations)),
            integrations,
            destinations,
            templates: Arc::new(templates),
        })
    }

    fn smtp(&self, raw: RawSmtp) -> Result<SmtpConfig, ConfigError> {
        if raw.listen.is_empty() {
            return Err(self.err(
                "smtp.listen",
                "needs at least one address, e.g. \"127.0.0.1:2525\"",
            ));
        }
        let listen = raw
            .listen
            .iter()
            .map(|a| self.socket_addr("smtp.listen", a))
            .collect::<Result<Vec<_>, _>>()?;
        let hostname = raw.hostname.trim().to_string();
        if hostname.is_empty() || hostname.contains(char::is_whitespace) {
            return Err(self.err("smtp.hostname", "must be a host name without spaces"));
        }
        let tls = match (raw.tls_cert, raw.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(self.tls(&cert, &key)?),
            (Some(_), None) => {
                return Err(self.err("smtp.tls_key", "is required when tls_cert is set"));
            }
            (None, Some(_)) => {
                return Err(self.err("smtp.tls_cert", "is required when tls_key is set"));
            }
        };
        let users = self.smtp_users(raw.users)?;
        if tls.is_none() {
            if raw.require_auth {
                return Err(self.err(
                    "smtp.require_auth",
                    "needs STARTTLS, since AUTH is offered only over TLS: set smtp.tls_cert and smtp.tls_key",
                ));
            }
            if !users.is_empty() {
                return Err(self.err(
                    "smtp.users",
                    "AUTH is offered only after STARTTLS: set smtp.tls_cert and smtp.tls_key",
                ));
            }
        }
        if raw.require_auth && users.is_empty() {
            return Err(self.err(
                "smtp.require_auth",
                "needs at least one [[smtp.users]] entry to authenticate",
            ));
        }
        let max_line_length =
            self.positive("smtp.max_line_length", raw.max_line_length, 1 << 24)?;
        if max_line_length < 1002 {
            return Err(self.err(
                "smtp.max_line_length",
                "must be at least 1002 (RFC 5321 allows 1000-byte lines plus CRLF)",
            ));
        }
        Ok(SmtpConfig {
            listen,
            hostname,
            max_message_size: self.positive(
                "smtp.max_message_size",
                raw.max_message_size,
                1 << 30,
            )?,
            max_recipients: self.positive("smtp.max_recipients", raw.max_recipients, 100_000)?,
            max_sessions: self.positive("smtp.max_sessions", raw.max_sessions, 1_000_000)?,
            max_line_length,
            idle_timeout: self.duration("smtp.idle_timeout", &raw.idle_timeout)?,
            session_timeout: self.duration("smtp.session_timeout", &raw.session_timeout)?,
            drain_timeout: self.duration("smtp.drain_timeout", &raw.drain_timeout)?,
            tls,
            users,
            require_auth: raw.require_auth,
        })
    }

    /// `[[smtp.users]]`: unique names a SASL exchange can carry, each with a password.
    fn smtp_users(&self, raw: Vec<RawSmtpUser>) -> Result<Vec<SmtpUser>, ConfigError> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, u) in raw.into_iter().enumerate() {
            let name = u.name;
            if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
                return Err(self.err(
                    format!("smtp.users[{i}].name"),
                    "must be 1 to 255 bytes without control characters",
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(self.err(
                    format!("smtp.users[{i}].name"),
                    format!("\"{name}\" is used twice"),
                ));
            }
            let key = format!("smtp.users[{name}].password");
            let password = self
                .secret(&key, u.password, u.password_file, u.password_env)?
                .ok_or_else(|| {
                    self.err(
                        &key,
                        "is required (set password, password_file or password_env)",
                    )
                })?;
            out.push(SmtpUser { name, password });
        }
        Ok(out)
    }

    /// A path from the file, relative to the file's directory.
    fn relative(&self, path: &Path) -> PathBuf {
        if path.is_relative() {
            self.path.parent().unwrap_or(Path::new(".")).join(path)
        } else {
            path.to_owned()
        }
    }

    /// Loads the PEM certificate chain and private key for STARTTLS.
    fn tls(&self, cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (cert, key) = (self.relative(cert), self.relative(key));
        let certs = CertificateDer::pem_file_iter(&cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                self.err(
                    "smtp.tls_cert",
                    format!(
                        "cannot read a PEM certificate chain from {}: {e}",
                        cert.display()
                    ),
                )
            })?;
        if certs.is_empty() {
            return Err(self.err(
                "smtp.tls_cert",
                format!("{} holds no certificate", cert.display()),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
            self.err(
                "smtp.tls_key",
                format!("cannot read a PEM private key from {}: {e}", key.display()),
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| {
                self.err(
                    "smtp.tls_key",
                    format!("the certificate and key do not make a TLS configuration: {e}"),
                )
            })?;
        Ok(Arc::new(config))
    }

    fn http(&self, raw: RawHttp) -> Result<HttpConfig, ConfigError> {
        let listen = self.socket_addr("http.listen", &raw.listen)?;
        let api_token = self.secret(
            "http.api_token",
            raw.api_token,
            raw.api_token_file,
            raw.api_token_env,
        )?;
        if api_token.is_none() && !listen.ip().is_loopback() {
            return Err(self.err(
                "http.api_token",
                "is required when http.listen is not a loopback address (set api_token or api_token_file)",
            ));
        }
        let max_body_size = self.positive("http.max_body_size", raw.max_body_size, 1 << 28)?;
        let public_url = match raw.public_url {
            Some(u) => self
                .url("http.public_url", &u)?
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            None => format!("http://{listen}"),
        };
        Ok(HttpConfig {
            listen,
            api_token,
            max_body_size,
            public_url,
            max_alerts_per_request: self.positive(
                "http.max_alerts_per_request",
                raw.max_alerts_per_request,
                1_000_000,
            )?,
            header_timeout: self.duration("http.header_timeout", &raw.header_timeout)?,
            body_timeout: self.duration("http.body_timeout", &raw.body_timeout)?,
            body_min_rate: self.positive("http.body_min_rate", raw.body_min_rate, 1 << 30)? as u64,
            keepalive_timeout: self.duration("http.keepalive_timeout", &raw.keepalive_timeout)?,
            max_connections: self.positive("http.max_connections", raw.max_connections, 1 << 20)?,
        })
    }

    fn destinations(
        &self,
        raw: Vec<RawDestination>,
        http: &HttpConfig,
    ) -> Result<Vec<Destination>, ConfigError> {
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, d) in raw.into_iter().enumerate() {
            let key = |k: &str| format!("destinations[{i}].{k}");
            self.identifier(&key("id"), &d.id)?;
            if !seen.insert(d.id.clone()) {
                return Err(self.err(key("id"), format!("\"{}\" is used twice", d.id)));
            }
            let key = |k: &str| format!("destinations[{}].{k}", d.id);
            let required: &[(&str, bool)] = match d.kind {
                DestinationType::Webhook | DestinationType::Slack => &[("url", d.url.is_some())],
                DestinationType::Command => {
                    &[("command", d.command.as_ref().is_some_and(|c| !c.is_empty()))]
                }
                DestinationType::Email => &[
                    ("smarthost", d.smarthost.is_some()),
                    ("from", d.from.is_some()),
                    ("to", d.to.as_ref().is_some_and(|t| !t.is_empty())),
                ],
            };
            if let Some((name, _)) = required.iter().find(|(_, present)| !present) {
                return Err(self.err(
                    key(name),
                    format!("is required for type {:?}", d.kind).to_lowercase(),
                ));
            }
            let secret = self.secret(&key("secret"), d.secret, d.secret_file, d.secret_env)?;
            let target = match d.kind {
                DestinationType::Webhook => {
                    let mut headers: Vec<(String, String)> = d.headers.into_iter().collect();
                    headers.sort();
                    for (name, value) in &headers {
                        let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                            .is_ok()
                            && reqwest::header::HeaderValue::from_str(value).is_ok();
                        if !valid {
                            return Err(self.err(
                                key("headers"),
                                format!("\"{name}\" is not a valid HTTP header name and value"),
                            ));
                        }
                    }
                    Target::Webhook {
                        url: self.url(&key("url"), d.url.as_deref().unwrap_or_default())?,
                        headers,
                        secret,
                    }
                }
                DestinationType::Slack => Target::Slack {
                    url: self.url(&key("url"), d.url.as_deref().unwrap_or_default())?,
                    link_base: http.public_url.clone(),
                },
                DestinationType::Email => {
                    let smarthost = d.smarthost.unwrap_or_default();
                    let (host, port) = match smarthost.rsplit_once(':') {
                        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0)),
                        None => (smarthost.as_str(), Some(25)),
                    };
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let Some(port) = port.filter(|_| !host.is_empty()) else {
                        return Err(self.err(
                            key("smarthost"),
                            format!("\"{smarthost}\" is not host:port, e.g. \"127.0.0.1:25\""),
                        ));
                    };
                    let from = d.from.unwrap_or_default();
                    let to = d.to.unwrap_or_default();
                    for (name, a) in
                        std::iter::once(("from", &from)).chain(to.iter().map(|t| ("to", t)))
                    {
                        if a.parse::<lettre::Address>().is_err() {
                            return Err(
                                self.err(key(name), format!("\"{a}\" is not an e-mail address"))
                            );
                        }
                    }
                    Target::Email {
                        host: host.to_string(),
                        port,
                        from,
                        to,
                    }
                }
                DestinationType::Command => Target::Command {
                    argv: d.command.unwrap_or_default(),
                },
            };
            let retry_initial = self.duration(
                &key("retry_initial"),
                d.retry_initial.as_deref().unwrap_or("1s"),
            )?;
            let retry_max =
                self.duration(&key("retry_max"), d.retry_max.as_deref().unwrap_or("10m"))?;
            if retry_max < retry_initial {
                return Err(self.err(key("retry_max"), "must not be shorter than retry_initial"));
            }
            out.push(Destination {
                id: d.id.clone(),
                kind: d.kind,
                target,
                events: d.events.unwrap_or_else(|| {
                    vec![
                        AlertEvent::Create,
                        AlertEvent::Acknowledge,
                        AlertEvent::Resolve,
                    ]
                }),
                max_attempts: self.positive(
                    &key("max_attempts"),
                    d.max_attempts.unwrap_or(8),
                    100,
                )? as u32,
                retry_initial,
                retry_max,
                timeout: self.duration(&key("timeout"), d.timeout.as_deref().unwrap_or("10s"))?,
            });
        }
        Ok(out)
    }

    fn integrations(
        &self,
        raw: Vec<RawIntegration>,
        destinations: &[Destination],
    ) -> Result<Vec<Integration>, ConfigError> {
        let mut ids = HashSet::new();
        let mut claims: HashMap<String, String> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let key = |k: &str| format!("integrations[{i}].{k}");
            self.identifier(&key("id"), &r.id)?;
            if !ids.insert(r.id.clone()) {
                return Err(self.err(key("id"), format!("\"{}\" is used twice", r.id)));
            }
            let key = |k: &str| format!("integrations[{}].{k}", r.id);
            let mut addresses = Vec::new();
            for a in &r.addresses {
                let norm = self.address(&key("addresses"), a)?;
                if let Some(other) = claims.insert(norm.clone(), r.id.clone()) {
                    return Err(self.err(
                        key("addresses"),
                        format!("\"{a}\" is already claimed by integration \"{other}\""),
                    ));
                }
                addresses.push(norm);
            }
            match r.kind {
                IntegrationType::Email if addresses.is_empty() => {
                    return Err(self.err(
                        key("addresses"),
                        "an email integration needs at least one address",
                    ));
                }
                IntegrationType::Webhook | IntegrationType::Alertmanager
                    if !addresses.is_empty() =>
                {
                    return Err(
                        self.err(key("addresses"), "only email integrations claim addresses")
                    );
                }
                _ => {}
            }
            for d in &r.destinations {
                if !destinations.iter().any(|x| &x.id == d) {
                    return Err(self.err(
                        key("destinations"),
                        format!("no [[destinations]] has id \"{d}\""),
                    ));
                }
            }
            let aggregate = r
                .aggregate
                .as_deref()
                .map(|v| self.window(&key("aggregate"), v))
                .transpose()?;
            let auto_resolve = r
                .auto_resolve
                .as_deref()
                .map(|v| self.window(&key("auto_resolve"), v))
                .transpose()?;
            let (default_title, default_description) = crate::template::default_templates(r.kind);
            let title = r.title.unwrap_or_else(|| default_title.into());
            let description = r.description.unwrap_or_else(|| default_description.into());
            let token = self.secret(&key("token"), r.token, r.token_file, r.token_env)?;
            if r.kind != IntegrationType::Email && !r.rules.is_empty() {
                return Err(self.err(key("rules"), "only email integrations have rules"));
            }
            let rules = self.rules(&r.id, r.rules)?;
            out.push(Integration {
                name: r.name.unwrap_or_else(|| r.id.clone()),
                id: r.id,
                kind: r.kind,
                addresses,
                urgency: r.urgency.unwrap_or(Urgency::Medium),
                destinations: r.destinations,
                aggregate,
                auto_resolve,
                title,
                description,
                token,
                rules,
            });
        }
        Ok(out)
    }

    /// Compiles an email integration's rules. Errors name the rule's index and its key.
    fn rules(&self, integration: &str, raw: Vec<RawRule>) -> Result<Vec<Rule>, ConfigError> {
        let mut out = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let key = |k: &str| format!("integrations[{integration}].rules[{i}]{k}");
            let mut fields: Vec<(String, Field, String)> = [
                ("to", Field::To, r.to),
                ("from", Field::From, r.from),
                ("subject", Field::Subject, r.subject),
                ("message", Field::Message, r.message),
                ("text", Field::Text, r.text),
            ]
            .into_iter()
            .filter_map(|(k, f, p)| p.map(|p| (k.to_string(), f, p)))
            .collect();
            let mut names = HashSet::new();
            for (name, pattern) in r.headers {
                let k = format!("headers.{name}");
                if name.is_empty() || name.contains(|c: char| c == ':' || !c.is_ascii_graphic()) {
                    return Err(self.err(key(&format!(".{k}")), "is not a header name"));
                }
                if !names.insert(name.to_ascii_lowercase()) {
                    return Err(self.err(
                        key(&format!(".{k}")),
                        "is given twice (header names ignore case)",
                    ));
                }
                fields.push((k, Field::Header(name), pattern));
            }
            if fields.is_empty() {
                return Err(self.err(
                    key(""),
                    "needs at least one matcher: to, from, subject, message, text or headers.<Name> (subject = \"\" matches every message)",
                ));
            }
            let mut id_key: Option<String> = None;
            let mut matchers = Vec::with_capacity(fields.len());
            for (k, field, pattern) in fields {
                let regex = crate::template::build_regex(&pattern)
                    .map_err(|e| self.err(key(&format!(".{k}")), e))?;
                if regex.capture_names().any(|n| n == Some(ID_GROUP)) {
                    if let Some(first) = &id_key {
                        return Err(self.err(
                            key(&format!(".{k}")),
                            format!("has a (?P<id>…) group, and so has {first}; only one matcher of a rule may set the id"),
                        ));
                    }
                    id_key = Some(k);
                }
                matchers.push(Matcher { field, regex });
            }
            out.push(Rule {
                matchers,
                action: r.action,
            });
        }
        Ok(out)
    }

    fn identifier(&self, key: &str, id: &str) -> Result<(), ConfigError> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(self.err(
                key,
                format!("\"{id}\" is not allowed; use 1-64 characters of [a-z0-9_-]"),
            ))
        }
    }

    fn address(&self, key: &str, raw: &str) -> Result<String, ConfigError> {
        let a = raw.trim().to_ascii_lowercase();
        let valid = match a.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && (local == "*" || !local.contains('*'))
                    && !a.contains(char::is_whitespace)
                    && !a.contains(['<', '>'])
            }
            None => false,
        };
        if valid {
            Ok(a)
        } else {
            Err(self.err(
                key,
                format!("\"{raw}\" is not an address; use local@domain or *@domain"),
            ))
        }
    }

    fn url(&self, key: &str, raw: &str) -> Result<reqwest::Url, ConfigError> {
        match reqwest::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
            _ => Err(self.err(key, format!("\"{raw}\" is not an http:// or https:// URL"))),
        }
    }

    fn socket_addr(&self, key: &str, raw: &str) -> Result<SocketAddr, ConfigError> {
        raw.parse().map_err(|_| {
            self.err(
                key,
                format!("\"{raw}\" is not an IP address with a port, e.g. \"127.0.0.1:2525\""),
            )
        })
    }

    fn positive(&self, key: &str, v: i64, max: usize) -> Result<usize, ConfigError> {
        if v >= 1 && (v as u64) <= max as u64 {
            Ok(v as usize)
        } else {
            Err(self.err(key, format!("{v} is out of range; allowed: 1 to {max}")))
        }
    }

    /// A size in bytes between `min` and `max`.
    fn size_in(&self, key: &str, v: i64, min: u64, max: u64) -> Result<u64, ConfigError> {
        match u64::try_from(v) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.err(key, format!("{v} is out of range; allowed: {min} to {max}"))),
        }
    }

    fn duration(&self, key: &str, raw: &str) -> Result<Duration, ConfigError> {
        match humantime::parse_duration(raw) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(self.err(key, "must be longer than zero")),
            Err(e) => Err(self.err(
                key,
                format!("\"{raw}\" is not a duration ({e}); use e.g. \"30s\", \"5m\", \"2h\""),
            )),
        }
    }

    fn window(&self, key: &str, raw: &str) -> Result<Duration, ConfigError> {
        let d = self.duration(key, raw)?;
        if (WINDOW_MIN..=WINDOW_MAX).contains(&d) {
            Ok(d)
        } else {
            Err(self.err(
                key,
                format!("\"{raw}\" is out of range; allowed: 15m to 30d"),
            ))
        }
    }

    /// A secret given inline or as a file (trailing newline trimmed), never both.
    /// A secret given inline, in a file (`<key>_file`, relative to the configuration file,
    /// trailing newline trimmed) or in an environment variable (`<key>_env` names it); at most
    /// one of the three.
    fn secret(
        &self,
        key: &str,
        inline: Option<String>,
        file: Option<PathBuf>,
        env: Option<String>,
    ) -> Result<Option<String>, ConfigError> {
        let name = last_segment(key);
        let value = match (inline, file, env) {
            (None, None, None) => return Ok(None),
            (Some(v), None, None) => v,
            (None, Some(f), None) => {
                let f = if f.is_relative() {
                    self.path.parent().unwrap_or(Path::new(".")).join(f)
                } else {
                    f
                };
                std::fs::read_to_string(&f)
                    .map_err(|e| {
                        self.err(
                            format!("{key}_file"),
                            format!("cannot read {}: {e}", f.display()),
                        )
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string()
            }
            (None, None, Some(var)) => std::env::var(&var).map_err(|e| {
                self.err(
                    format!("{key}_env"),
                    format!("environment variable {var} cannot be used: {e}"),
                )
            })?,
            _ => {
                return Err(self.err(
                    key,
                    format!("set only one of {name}, {name}_file and {name}_env"),
                ));
            }
        };
        if value.is_empty() {
            return Err(self.err(key, "must not be empty"));
        }
        Ok(Some(value))
    }
}

fn last_segment(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Target::Webhook { secret: Some(s), .. } if s == "siren"
        ));
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../config/siren.toml");
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
