//! The daemon's metrics, served at `GET /metrics` in the Prometheus text format (0.0.4).
//!
//! One [`Metrics`] per running daemon, shared as `Arc<Metrics>` by the stages that count:
//! `smtp` (intake, sessions, AUTH, end-of-DATA latency), `http` (webhook intake and latency),
//! the store writer (alert changes, group-commit latency and size) and, later, delivery (outbox
//! depth and deliveries). Counting never blocks on I/O and never fails. Hot counters are
//! resolved once here, so intake does not look labels up per message.

use std::borrow::Cow;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::ResolvedBy;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Why SMTP intake refused something: a message, a recipient, a command or a whole session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpRejection {
    /// `552 5.3.4`: over `smtp.max_message_size` (declared with SIZE= or sent).
    Size,
    /// `500 5.5.2`: a line over `smtp.max_line_length`; the session is closed.
    LineLength,
    /// `452 4.5.3`: over `smtp.max_recipients`.
    Recipients,
    /// `550 5.1.1`: no integration claims the address.
    UnknownRecipient,
    /// `521 5.5.2` in DATA (SMTP smuggling), or a command line ending in a bare LF.
    BareLf,
    /// `421 4.4.2`: idle or whole-session timeout.
    Timeout,
    /// `421 4.3.2`: over `smtp.max_sessions`.
    SessionCap,
    /// `451 4.3.0`: the commit failed; the sender retries.
    StoreFailure,
    /// Syntax errors, bad command order, unsupported parameters.
    Protocol,
    /// `421 4.7.0`: the session reached the protocol-error limit and was cut off.
    TooManyErrors,
    /// `421 4.3.0`: the daemon is stopping.
    Shutdown,
    /// The TLS handshake after STARTTLS failed or timed out.
    TlsHandshake,
    /// `538 5.7.11`: AUTH before STARTTLS.
    EncryptionRequired,
    /// `530 5.7.0`: MAIL without AUTH while `smtp.require_auth` is on.
    AuthRequired,
    /// `535 5.7.8`: wrong user name or password.
    AuthFailed,
}

impl SmtpRejection {
    pub const ALL: [SmtpRejection; 15] = [
        Self::Size,
        Self::LineLength,
        Self::Recipients,
        Self::UnknownRecipient,
        Self::BareLf,
        Self::Timeout,
        Self::SessionCap,
        Self::StoreFailure,
        Self::Protocol,
        Self::TooManyErrors,
        Self::Shutdown,
        Self::TlsHandshake,
        Self::EncryptionRequired,
        Self::AuthRequired,
        Self::AuthFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::LineLength => "line_length",
            Self::Recipients => "recipients",
            Self::UnknownRecipient => "unknown_recipient",
            Self::BareLf => "bare_lf",
            Self::Timeout => "timeout",
            Self::SessionCap => "session_cap",
            Self::StoreFailure => "store_failure",
            Self::Protocol => "protocol",
            Self::TooManyErrors => "too_many_errors",
            Self::Shutdown => "shutdown",
            Self::TlsHandshake => "tls_handshake",
            Self::EncryptionRequired => "encryption_required",
            Self::AuthRequired => "auth_required",
            Self::AuthFailed => "auth_failed",
        }
    }
}

/// Why webhook intake refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRejection {
    /// 400: the body is not JSON.
    BadJson,
    /// 400: JSON the integration's adapter cannot read, or a bad query string.
    BadPayload,
    /// 401: missing or wrong token.
    Unauthorized,
    /// 404: no webhook integration with that id.
    NotFound,
    /// 413: over `http.max_body_size`.
    TooLarge,
    /// 415: not `application/json`.
    UnsupportedMediaType,
    /// 503: the commit failed.
    StoreFailure,
}

impl HttpRejection {
    pub const ALL: [HttpRejection; 7] = [
        Self::BadJson,
        Self::BadPayload,
        Self::Unauthorized,
        Self::NotFound,
        Self::TooLarge,
        Self::UnsupportedMediaType,
        Self::StoreFailure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadPayload => "bad_payload",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::TooLarge => "too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::StoreFailure => "store_failure",
        }
    }
}

/// A durable change to an alert, counted once its group commit is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertChange {
    Created,
    /// Created with status `dropped` (a rule dropped it).
    Dropped,
    Aggregated,
    Resolved(ResolvedBy),
    /// By the integration (an acknowledge event) or a user (the API).
    Acknowledged(ResolvedBy),
}

/// How one delivery attempt to a destination ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The destination took it (2xx, exit status 0, 250): never sent again.
    Delivered,
    /// It failed and will be retried.
    Failed,
    /// It failed for the last time and was dead-lettered.
    Dead,
}

impl DeliveryOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type Owned1 = [(&'static str, Cow<'static, str>); 1];
type Owned2 = [(&'static str, Cow<'static, str>); 2];

/// Every metric Siren exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received_smtp: Counter,
    received_http: Counter,
    accepted_smtp: Counter,
    accepted_http: Counter,
    rejected: Family<Labels2, Counter>,
    sessions_open: Gauge,
    sessions: Counter,
    auth: Family<Labels2, Counter>,
    smtp_reply: Histogram,
    webhook_reply: Histogram,
    created: Family<Owned1, Counter>,
    dropped: Family<Owned1, Counter>,
    aggregated: Family<Owned1, Counter>,
    resolved: Family<Owned2, Counter>,
    acknowledged: Family<Owned2, Counter>,
    commit_seconds: Histogram,
    commit_group_size: Histogram,
    commit_failures: Counter,
    outbox_depth: Gauge,
    deliveries: Family<Owned2, Counter>,
}

/// Latency buckets in seconds: about 25% apart from 0.1 ms to 100 ms, so that a p50 or p99
/// interpolated within a bucket is off by less than a bucket's width where it matters, then
/// coarse up to 10 s.
const LATENCY_BUCKETS: [f64; 37] = [
    0.0001, 0.000125, 0.00015, 0.0002, 0.00025, 0.0003, 0.0004, 0.0005, 0.0006, 0.0008, //
    0.001, 0.00125, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.006, 0.008, //
    0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.08, //
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("siren");
        let received = Family::<Labels1, Counter>::default();
        let accepted = Family::<Labels1, Counter>::default();
        let rejected = Family::<Labels2, Counter>::default();
        registry.register(
            "messages_received",
            "Inputs whose transfer began: SMTP messages answered 354, webhook requests",
            received.clone(),
        );
        registry.register(
            "messages_accepted",
            "Inputs stored durably and answered 250 (SMTP) or 202 (webhooks)",
            accepted.clone(),
        );
        registry.register(
            "messages_rejected",
            "Refusals by protocol and reason: a message, recipient, command, request or session answered with an error",
            rejected.clone(),
        );
        for r in SmtpRejection::ALL {
            rejected.get_or_create_owned(&[("protocol", "smtp"), ("reason", r.as_str())]);
        }
        for r in HttpRejection::ALL {
            rejected.get_or_create_owned(&[("protocol", "http"), ("reason", r.as_str())]);
        }

        let sessions_open = Gauge::default();
        registry.register(
            "smtp_sessions_open",
            "SMTP sessions being served",
            sessions_open.clone(),
        );
        let sessions = Counter::default();
        registry.register(
            "smtp_sessions",
            "SMTP sessions served (within smtp.max_sessions)",
            sessions.clone(),
        );
        let auth = Family::<Labels2, Counter>::default();
        registry.register(
            "smtp_auth",
            "SMTP AUTH attempts by mechanism and result",
            auth.clone(),
        );
        for mechanism in ["plain", "login"] {
            for result in ["success", "failure"] {
                auth.get_or_create_owned(&[("mechanism", mechanism), ("result", result)]);
            }
        }
        let smtp_reply = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "smtp_data_reply_seconds",
            "From the final dot of DATA to the 250 written to the client (durable commit included)",
            smtp_reply.clone(),
        );
        let webhook_reply = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "webhook_reply_seconds",
            "From a webhook request's arrival to its 202 (durable commit included)",
            webhook_reply.clone(),
        );

        let created = Family::<Owned1, Counter>::default();
        registry.register(
            "alerts_created",
            "New alerts, by integration",
            created.clone(),
        );
        let dropped = Family::<Owned1, Counter>::default();
        registry.register(
            "alerts_dropped",
            "New alerts created with status dropped, by integration",
            dropped.clone(),
        );
        let aggregated = Family::<Owned1, Counter>::default();
        registry.register(
            "alerts_aggregated",
            "Inputs folded into an existing alert (dedup_count + 1), by integration",
            aggregated.clone(),
        );
        let resolved = Family::<Owned2, Counter>::default();
        registry.register(
            "alerts_resolved",
            "Alerts resolved, by integration and by whom (integration, auto, user)",
            resolved.clone(),
        );
        let acknowledged = Family::<Owned2, Counter>::default();
        registry.register(
            "alerts_acknowledged",
            "Alerts acknowledged, by integration and by whom (integration, user)",
            acknowledged.clone(),
        );

        let commit_seconds = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "store_commit_seconds",
            "One group commit: apply the batch, flush, fdatasync",
            commit_seconds.clone(),
        );
        let commit_group_size = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        registry.register(
            "store_commit_group_size",
            "Requests committed together in one group",
            commit_group_size.clone(),
        );
        let commit_failures = Counter::default();
        registry.register(
            "store_commit_failures",
            "Group commits that failed (every request in them was answered with a failure)",
            commit_failures.clone(),
        );

        let outbox_depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Events in the outbox waiting for delivery",
            outbox_depth.clone(),
        );
        let deliveries = Family::<Owned2, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts by destination and outcome (delivered, failed)",
            deliveries.clone(),
        );

        let hot = |f: &Family<Labels1, Counter>, p| f.get_or_create_owned(&[("protocol", p)]);
        Metrics {
            received_smtp: hot(&received, "smtp"),
            received_http: hot(&received, "http"),
            accepted_smtp: hot(&accepted, "smtp"),
            accepted_http: hot(&accepted, "http"),
            registry,
            rejected,
            sessions_open,
            sessions,
            auth,
            smtp_reply,
            webhook_reply,
            created,
            dropped,
            aggregated,
            resolved,
            acknowledged,
            commit_seconds,
            commit_group_size,
            commit_failures,
            outbox_depth,
            deliveries,
        }
    }

    /// Every metric in the Prometheus text format (0.0.4); see [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// An SMTP session began; the gauge goes down when the guard drops.
    pub fn smtp_session(&self) -> SessionGuard {
        self.sessions.inc();
        self.sessions_open.inc();
        SessionGuard(self.sessions_open.clone())
    }

    /// DATA was answered 354.
    pub fn smtp_received(&self) {
        self.received_smtp.inc();
    }

    /// A message was answered 250, `latency` after its final dot.
    pub fn smtp_accepted(&self, latency: Duration) {
        self.accepted_smtp.inc();
        self.smtp_reply.observe(latency.as_secs_f64());
    }

    pub fn smtp_rejected(&self, reason: SmtpRejection) {
        self.rejected
            .get_or_create(&[("protocol", "smtp"), ("reason", reason.as_str())])
            .inc();
    }

    /// One AUTH exchange ended; `mechanism` is `plain` or `login`.
    pub fn smtp_auth(&self, mechanism: &'static str, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.auth
            .get_or_create(&[("mechanism", mechanism), ("result", result)])
            .inc();
    }

    /// A request reached the webhook endpoint.
    pub fn webhook_received(&self) {
        self.received_http.inc();
    }

    /// A webhook was answered 202, `latency` after it arrived.
    pub fn webhook_accepted(&self, latency: Duration) {
        self.accepted_http.inc();
        self.webhook_reply.observe(latency.as_secs_f64());
    }

    pub fn webhook_rejected(&self, reason: HttpRejection) {
        self.rejected
            .get_or_create(&[("protocol", "http"), ("reason", reason.as_str())])
            .inc();
    }

    /// Alert changes of one group commit, counted once it is durable.
    pub fn alert_changes(&self, changes: &[(String, AlertChange)]) {
        for (integration, change) in changes {
            let i = ("integration", Cow::Owned(integration.clone()));
            let by = |b: &ResolvedBy| {
                let by = match b {
                    ResolvedBy::Integration => "integration",
                    ResolvedBy::Auto => "auto",
                    ResolvedBy::User => "user",
                };
                ("by", Cow::Borrowed(by))
            };
            match change {
                AlertChange::Created => self.created.get_or_create(&[i]).inc(),
                AlertChange::Dropped => self.dropped.get_or_create(&[i]).inc(),
                AlertChange::Aggregated => self.aggregated.get_or_create(&[i]).inc(),
                AlertChange::Resolved(b) => self.resolved.get_or_create(&[i, by(b)]).inc(),
                AlertChange::Acknowledged(b) => self.acknowledged.get_or_create(&[i, by(b)]).inc(),
            };
        }
    }

    /// One group commit of `requests` jobs succeeded in `elapsed` (apply, flush, fdatasync).
    pub fn commit(&self, elapsed: Duration, requests: usize) {
        self.commit_seconds.observe(elapsed.as_secs_f64());
        self.commit_group_size.observe(requests as f64);
    }

    pub fn commit_failed(&self) {
        self.commit_failures.inc();
    }

    /// Sets the number of outbox events waiting for delivery.
    pub fn set_outbox_depth(&self, depth: u64) {
        self.outbox_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Counts one delivery attempt to `destination`.
    pub fn delivery(&self, destination: &str, outcome: DeliveryOutcome) {
        self.deliveries
            .get_or_create(&[
                ("destination", Cow::Owned(destination.to_string())),
                ("outcome", Cow::Borrowed(outcome.as_str())),
            ])
            .inc();
    }
}

/// Holds one SMTP session in `siren_smtp_sessions_open`.
pub struct SessionGuard(Gauge);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the first sample line starting with `prefix`.
    fn sample(text: &str, prefix: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
    }

    #[test]
    fn encodes_prometheus_text_with_zeroed_reasons() {
        let m = Metrics::new();
        m.smtp_rejected(SmtpRejection::UnknownRecipient);
        m.smtp_accepted(Duration::from_micros(1500));
        m.alert_changes(&[
            ("ops".into(), AlertChange::Created),
            ("ops".into(), AlertChange::Resolved(ResolvedBy::Auto)),
        ]);
        m.delivery("hook", DeliveryOutcome::Failed);
        m.set_outbox_depth(3);
        let _open = m.smtp_session();
        let text = m.encode();
        let s = |p| sample(&text, p);
        assert_eq!(
            s("siren_messages_rejected_total{protocol=\"smtp\",reason=\"unknown_recipient\"}"),
            1.0
        );
        assert_eq!(
            s("siren_messages_rejected_total{protocol=\"http\",reason=\"bad_json\"}"),
            0.0
        );
        assert_eq!(s("siren_messages_accepted_total{protocol=\"smtp\"}"), 1.0);
        assert_eq!(s("siren_smtp_data_reply_seconds_count"), 1.0);
        // 1.5 ms is counted from the bucket ending at 1.5 ms on, not in the one before.
        assert_eq!(
            s("siren_smtp_data_reply_seconds_bucket{le=\"0.00125\"}"),
            0.0
        );
        assert_eq!(
            s("siren_smtp_data_reply_seconds_bucket{le=\"0.0015\"}"),
            1.0
        );
        assert_eq!(s("siren_alerts_created_total{integration=\"ops\"}"), 1.0);
        assert_eq!(
            s("siren_alerts_resolved_total{integration=\"ops\",by=\"auto\"}"),
            1.0
        );
        assert_eq!(
            s("siren_deliveries_total{destination=\"hook\",outcome=\"failed\"}"),
            1.0
        );
        assert_eq!(s("siren_outbox_depth"), 3.0);
        assert_eq!(s("siren_smtp_sessions_open"), 1.0);
        assert!(text.contains("# TYPE siren_smtp_data_reply_seconds histogram"));
    }

    #[test]
    fn session_guard_closes_the_session() {
        let m = Metrics::new();
        drop(m.smtp_session());
        let text = m.encode();
        assert_eq!(sample(&text, "siren_smtp_sessions_open"), 0.0);
        assert_eq!(sample(&text, "siren_smtp_sessions_total"), 1.0);
    }
}
