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

mod labels;

pub use labels::{Actor, AlertChange, DeliveryOutcome, HttpRejection, SmtpRejection};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type Owned1 = [(&'static str, Cow<'static, str>); 1];
type Owned2 = [(&'static str, Cow<'static, str>); 2];

/// Latency buckets in seconds: about 25% apart from 0.1 ms to 100 ms, so that a p50 or p99
/// interpolated within a bucket is off by less than a bucket's width where it matters, then
/// coarse up to 10 s.
const LATENCY_BUCKETS: [f64; 37] = [
    0.0001, 0.000125, 0.00015, 0.0002, 0.00025, 0.0003, 0.0004, 0.0005, 0.0006, 0.0008, //
    0.001, 0.00125, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.006, 0.008, //
    0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.08, //
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Registers `metric` under `name` and hands it back (metrics are shared handles).
fn add<M: Clone + prometheus_client::registry::Metric>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Inputs received, accepted and refused, by protocol (the hot counters resolved once).
#[derive(Debug)]
struct Intake {
    received_smtp: Counter,
    received_http: Counter,
    accepted_smtp: Counter,
    accepted_http: Counter,
    rejected: Family<Labels2, Counter>,
    smtp_reply: Histogram,
    webhook_reply: Histogram,
}

impl Intake {
    fn register(registry: &mut Registry) -> Self {
        let received = add(
            registry,
            "messages_received",
            "Inputs whose transfer began: SMTP messages answered 354, webhook requests",
            Family::<Labels1, Counter>::default(),
        );
        let accepted = add(
            registry,
            "messages_accepted",
            "Inputs stored durably and answered 250 (SMTP) or 202 (webhooks)",
            Family::<Labels1, Counter>::default(),
        );
        let rejected = add(
            registry,
            "messages_rejected",
            "Refusals by protocol and reason: a message, recipient, command, request or session answered with an error",
            Family::<Labels2, Counter>::default(),
        );
        for r in SmtpRejection::ALL {
            rejected.get_or_create_owned(&[("protocol", "smtp"), ("reason", r.as_str())]);
        }
        for r in HttpRejection::ALL {
            rejected.get_or_create_owned(&[("protocol", "http"), ("reason", r.as_str())]);
        }
        let smtp_reply = add(
            registry,
            "smtp_data_reply_seconds",
            "From the final dot of DATA to the 250 written to the client (durable commit included)",
            Histogram::new(LATENCY_BUCKETS),
        );
        let webhook_reply = add(
            registry,
            "webhook_reply_seconds",
            "From a webhook request's arrival to its 202 (durable commit included)",
            Histogram::new(LATENCY_BUCKETS),
        );
        let hot = |f: &Family<Labels1, Counter>, p| f.get_or_create_owned(&[("protocol", p)]);
        Intake {
            received_smtp: hot(&received, "smtp"),
            received_http: hot(&received, "http"),
            accepted_smtp: hot(&accepted, "smtp"),
            accepted_http: hot(&accepted, "http"),
            rejected,
            smtp_reply,
            webhook_reply,
        }
    }
}

/// SMTP sessions, AUTH and load (stress mode, message bytes in flight), HTTP connections.
#[derive(Debug)]
struct Sessions {
    open: Gauge,
    total: Counter,
    auth: Family<Labels2, Counter>,
    stress: Gauge,
    stress_entered: Counter,
    inflight: Gauge,
    http_open: Gauge,
}

impl Sessions {
    fn register(registry: &mut Registry) -> Self {
        let open = add(
            registry,
            "smtp_sessions_open",
            "SMTP sessions being served",
            Gauge::default(),
        );
        let total = add(
            registry,
            "smtp_sessions",
            "SMTP sessions served (within smtp.max_sessions)",
            Counter::default(),
        );
        let auth = add(
            registry,
            "smtp_auth",
            "SMTP AUTH attempts by mechanism and result",
            Family::<Labels2, Counter>::default(),
        );
        for mechanism in ["plain", "login"] {
            for result in ["success", "failure"] {
                auth.get_or_create_owned(&[("mechanism", mechanism), ("result", result)]);
            }
        }
        let stress = add(
            registry,
            "smtp_stress",
            "1 while SMTP sessions are over 80% of smtp.max_sessions (idle timeouts shortened)",
            Gauge::default(),
        );
        let stress_entered = add(
            registry,
            "smtp_stress_entered",
            "Times SMTP entered stress mode",
            Counter::default(),
        );
        let inflight = add(
            registry,
            "smtp_inflight_bytes",
            "Message bytes SMTP sessions hold, within smtp.max_inflight_bytes",
            Gauge::default(),
        );
        let http_open = add(
            registry,
            "http_connections_open",
            "HTTP connections being served (within http.max_connections)",
            Gauge::default(),
        );
        Sessions {
            open,
            total,
            auth,
            stress,
            stress_entered,
            inflight,
            http_open,
        }
    }
}

/// Durable alert changes, by integration (and by whom, for resolve and acknowledge).
#[derive(Debug)]
struct Alerts {
    created: Family<Owned1, Counter>,
    dropped: Family<Owned1, Counter>,
    aggregated: Family<Owned1, Counter>,
    resolved: Family<Owned2, Counter>,
    acknowledged: Family<Owned2, Counter>,
}

impl Alerts {
    fn register(registry: &mut Registry) -> Self {
        let mut by_integration =
            |name, help| add(registry, name, help, Family::<Owned1, Counter>::default());
        let created = by_integration("alerts_created", "New alerts, by integration");
        let dropped = by_integration(
            "alerts_dropped",
            "New alerts created with status dropped, by integration",
        );
        let aggregated = by_integration(
            "alerts_aggregated",
            "Inputs folded into an existing alert (dedup_count + 1), by integration",
        );
        let resolved = add(
            registry,
            "alerts_resolved",
            "Alerts resolved, by integration and by whom (integration, auto, user)",
            Family::<Owned2, Counter>::default(),
        );
        let acknowledged = add(
            registry,
            "alerts_acknowledged",
            "Alerts acknowledged, by integration and by whom (integration, user)",
            Family::<Owned2, Counter>::default(),
        );
        Alerts {
            created,
            dropped,
            aggregated,
            resolved,
            acknowledged,
        }
    }
}

/// The store's group commits and the outbox.
#[derive(Debug)]
struct Storage {
    commit_seconds: Histogram,
    commit_group_size: Histogram,
    commit_failures: Counter,
    writable: Gauge,
    outbox_depth: Gauge,
    deliveries: Family<Owned2, Counter>,
}

impl Storage {
    fn register(registry: &mut Registry) -> Self {
        Storage {
            commit_seconds: add(
                registry,
                "store_commit_seconds",
                "One group commit, up to its answer: apply it, append its journal record (pwrite, fdatasync)",
                Histogram::new(LATENCY_BUCKETS),
            ),
            commit_group_size: add(
                registry,
                "store_commit_group_size",
                "Requests committed together in one group",
                Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            ),
            commit_failures: add(
                registry,
                "store_commit_failures",
                "Group commits that failed (every request in them was answered with a failure)",
                Counter::default(),
            ),
            writable: add(
                registry,
                "store_writable",
                "1 while the store takes writes, 0 while writes fail (full disk, I/O error) and the writer heals it",
                Gauge::default(),
            ),
            outbox_depth: add(
                registry,
                "outbox_depth",
                "Events in the outbox waiting for delivery",
                Gauge::default(),
            ),
            deliveries: add(
                registry,
                "deliveries",
                "Delivery attempts by destination and outcome (delivered, failed)",
                Family::<Owned2, Counter>::default(),
            ),
        }
    }
}

/// Every metric Siren exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    intake: Intake,
    sessions: Sessions,
    alerts: Alerts,
    storage: Storage,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("siren");
        let intake = Intake::register(&mut registry);
        let sessions = Sessions::register(&mut registry);
        let alerts = Alerts::register(&mut registry);
        let storage = Storage::register(&mut registry);
        Metrics {
            registry,
            intake,
            sessions,
            alerts,
            storage,
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
        self.sessions.total.inc();
        self.sessions.open.inc();
        SessionGuard(self.sessions.open.clone())
    }

    /// An HTTP connection was accepted; the gauge goes down when the guard drops.
    pub fn http_connection(&self) -> SessionGuard {
        self.sessions.http_open.inc();
        SessionGuard(self.sessions.http_open.clone())
    }

    /// SMTP entered (`true`) or left stress mode (sessions over 80% of `smtp.max_sessions`).
    pub fn smtp_stress(&self, on: bool) {
        self.sessions.stress.set(i64::from(on));
        if on {
            self.sessions.stress_entered.inc();
        }
    }

    /// SMTP sessions took (`bytes` > 0) or gave back message bytes in flight.
    pub fn smtp_inflight(&self, bytes: i64) {
        self.sessions.inflight.inc_by(bytes);
    }

    /// DATA was answered 354.
    pub fn smtp_received(&self) {
        self.intake.received_smtp.inc();
    }

    /// A message was answered 250, `latency` after its final dot.
    pub fn smtp_accepted(&self, latency: Duration) {
        self.intake.accepted_smtp.inc();
        self.intake.smtp_reply.observe(latency.as_secs_f64());
    }

    pub fn smtp_rejected(&self, reason: SmtpRejection) {
        self.intake
            .rejected
            .get_or_create(&[("protocol", "smtp"), ("reason", reason.as_str())])
            .inc();
    }

    /// One AUTH exchange ended; `mechanism` is `plain` or `login`.
    pub fn smtp_auth(&self, mechanism: &'static str, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.sessions
            .auth
            .get_or_create(&[("mechanism", mechanism), ("result", result)])
            .inc();
    }

    /// A request reached the webhook endpoint.
    pub fn webhook_received(&self) {
        self.intake.received_http.inc();
    }

    /// A webhook was answered 202, `latency` after it arrived.
    pub fn webhook_accepted(&self, latency: Duration) {
        self.intake.accepted_http.inc();
        self.intake.webhook_reply.observe(latency.as_secs_f64());
    }

    pub fn webhook_rejected(&self, reason: HttpRejection) {
        self.intake
            .rejected
            .get_or_create(&[("protocol", "http"), ("reason", reason.as_str())])
            .inc();
    }

    /// Alert changes of one group commit, counted once it is durable.
    pub fn alert_changes(&self, changes: &[(String, AlertChange)]) {
        let a = &self.alerts;
        for (integration, change) in changes {
            let i = ("integration", Cow::Owned(integration.clone()));
            let by = |b: &Actor| ("by", Cow::Borrowed(b.as_str()));
            match change {
                AlertChange::Created => a.created.get_or_create(&[i]).inc(),
                AlertChange::Dropped => a.dropped.get_or_create(&[i]).inc(),
                AlertChange::Aggregated => a.aggregated.get_or_create(&[i]).inc(),
                AlertChange::Resolved(b) => a.resolved.get_or_create(&[i, by(b)]).inc(),
                AlertChange::Acknowledged(b) => a.acknowledged.get_or_create(&[i, by(b)]).inc(),
            };
        }
    }

    /// One group commit of `requests` jobs succeeded in `elapsed` (apply, journal append, sled writes).
    pub fn commit(&self, elapsed: Duration, requests: usize) {
        self.storage.commit_seconds.observe(elapsed.as_secs_f64());
        self.storage.commit_group_size.observe(requests as f64);
    }

    pub fn commit_failed(&self) {
        self.storage.commit_failures.inc();
    }

    /// Whether the store takes writes.
    pub fn set_store_writable(&self, writable: bool) {
        self.storage.writable.set(i64::from(writable));
    }

    /// Sets the number of outbox events waiting for delivery.
    pub fn set_outbox_depth(&self, depth: u64) {
        self.storage
            .outbox_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Counts one delivery attempt to `destination`.
    pub fn delivery(&self, destination: &str, outcome: DeliveryOutcome) {
        self.storage
            .deliveries
            .get_or_create(&[
                ("destination", Cow::Owned(destination.to_string())),
                ("outcome", Cow::Borrowed(outcome.as_str())),
            ])
            .inc();
    }
}

/// Holds one SMTP session in `siren_smtp_sessions_open` (or an HTTP connection in
/// `siren_http_connections_open`).
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
            ("ops".into(), AlertChange::Resolved(Actor::Auto)),
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
