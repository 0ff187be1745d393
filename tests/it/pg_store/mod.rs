//! The PostgreSQL store (issue 16), against a real server: set `SIREN_TEST_PG_URL` (e.g.
//! `postgresql://postgres@127.0.0.1:55432/postgres`; `tests/e2e/cluster/run` starts one). Each
//! test works in a schema of its own. Without the variable every test here prints why it is
//! skipped (to the real stderr, past the test harness's capture) and returns.
//!
//! Here: the rules, races between two nodes, auto resolve once, delivery claims, migrations;
//! `folding.rs`: storms, `aggregate_key`, silences across nodes; `console.rs`: the console's
//! reads, timelines, dead letters, raw inputs stored once; `daemon.rs`: the whole daemon.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use siren::clock;
use siren::config::{Live, LogsConfig, PostgresConfig, StoreConfig};
use siren::domain::Urgency;
use siren::metrics::Metrics;
use siren::store::{
    Action, AlertRequest, DeliveryOutcome, NewLog, Outcome, Queued, Receipt, Source, Status, Store,
    UserChange, Writer, WriterHandle,
};
use tokio::sync::mpsc;

mod console;
mod daemon;
mod folding;

/// A fresh schema on the test server, and the URL that uses it; `None` (after saying so) when
/// no server is configured.
async fn schema(test: &str) -> Option<String> {
    let Ok(base) = std::env::var("SIREN_TEST_PG_URL") else {
        // One write, so that parallel tests' lines do not interleave.
        let line = format!("pg_store::{test}: skipped: SIREN_TEST_PG_URL not set\n");
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        return None;
    };
    let name = format!("t_{test}_{}", fastrand::u32(..));
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("SIREN_TEST_PG_URL is set but the server cannot be reached");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{name}"))
}

fn store_config(url: &str) -> StoreConfig {
    StoreConfig {
        path: "unused".into(),
        cache_size: 64 << 20,
        postgres: Some(PostgresConfig {
            url: siren::config::Secret::new(url),
            pool_size: 4,
        }),
    }
}

/// One node: a store on the shared schema and its writer.
struct Node {
    store: Store,
    writer: Option<Writer>,
    handle: WriterHandle,
    metrics: Arc<Metrics>,
    queued: Option<mpsc::UnboundedReceiver<Vec<(String, Queued)>>>,
}

impl Node {
    async fn open(url: &str, config: Option<siren::Config>) -> Node {
        let c = store_config(url);
        let store = tokio::task::spawn_blocking(move || Store::open_configured(&c))
            .await
            .unwrap()
            .expect("store opens");
        let retention = LogsConfig {
            max_entries: 10_000,
            max_age: Duration::from_secs(30 * 86400),
        };
        let metrics = Arc::new(Metrics::new());
        let (feed, queued) = match config {
            Some(config) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let feed = siren::store::OutboxFeed {
                    live: Live::new(config),
                    queued: tx,
                };
                (Some(feed), Some(rx))
            }
            None => (None, None),
        };
        let (writer, handle) =
            Writer::spawn(store.clone(), retention, feed, metrics.clone()).unwrap();
        Node {
            store,
            writer: Some(writer),
            handle,
            metrics,
            queued,
        }
    }

    async fn close(mut self) {
        self.writer.take().unwrap().join().await;
    }

    async fn send(
        &self,
        action: Action,
        tp: &str,
        title: &str,
        window: Option<Duration>,
    ) -> Receipt {
        self.send_keyed(action, tp, &[], title, window).await
    }

    /// [`Node::send`] with further ids (`dedup_keys`).
    async fn send_keyed(
        &self,
        action: Action,
        tp: &str,
        keys: &[&str],
        title: &str,
        window: Option<Duration>,
    ) -> Receipt {
        let mut req = request(action, tp, title);
        req.dedup_keys = keys.iter().map(|k| k.to_string()).collect();
        req.aggregate = window;
        self.send_request(req).await
    }

    /// Commits one input of `ops` asking for `req`.
    async fn send_request(&self, req: AlertRequest) -> Receipt {
        let log = entry(&req.thirdparty_id, Some(req.clone()), Arc::from(&b"{}"[..]));
        self.handle.commit(vec![log]).await.unwrap().remove(0)
    }

    async fn create(&self, tp: &str) -> Receipt {
        self.send(Action::Create, tp, "t", None).await
    }

    fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Store) -> T + Send + 'static,
    ) -> impl Future<Output = T> {
        let store = self.store.clone();
        async move { tokio::task::spawn_blocking(move || f(store)).await.unwrap() }
    }
}

/// A request of `action` for `tp` titled `title`, auto-resolving in 15 minutes.
fn request(action: Action, tp: &str, title: &str) -> AlertRequest {
    AlertRequest {
        action,
        thirdparty_id: tp.to_string(),
        dedup_keys: Vec::new(),
        title: title.to_string(),
        description: "d".into(),
        urgency: Urgency::High,
        aggregate: None,
        auto_resolve: Some(Duration::from_secs(15 * 60)),
        fold: Default::default(),
    }
}

/// One log entry of `ops` over HTTP whose data names `tp`, with `raw` as its input.
fn entry(tp: &str, alert: Option<AlertRequest>, raw: Arc<[u8]>) -> NewLog {
    NewLog {
        integration: "ops".to_string(),
        received_at: clock::now(),
        source: Source::Http,
        remote_addr: "127.0.0.1:1".into(),
        data: serde_json::json!({"tp": tp}),
        outcome: alert.is_none().then_some(Outcome::Ignored),
        alert,
        error: None,
        raw,
        email: None,
    }
}

fn outcome(r: &Receipt) -> (Option<Outcome>, Option<u64>) {
    (r.outcome, r.alert_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_aggregates_resolves_and_reads_like_sled() {
    let Some(url) = schema("rules").await else {
        return;
    };
    let n = Node::open(&url, None).await;
    let a = n.create("123").await;
    assert_eq!(a.outcome, Some(Outcome::Created));
    let id = a.alert_id.unwrap();
    assert_eq!(
        outcome(&n.create("123").await),
        (Some(Outcome::Aggregated), Some(id))
    );
    let other = n.create("456").await.alert_id.unwrap();
    assert_ne!(other, id);
    let ack = n.send(Action::Acknowledge, "123", "t", None).await;
    assert_eq!(outcome(&ack), (Some(Outcome::Acknowledged), Some(id)));
    // Still there while acknowledged: a repeat folds in.
    assert_eq!(
        outcome(&n.create("123").await),
        (Some(Outcome::Aggregated), Some(id))
    );
    let res = n.send(Action::Resolve, "123", "t", None).await;
    assert_eq!(outcome(&res), (Some(Outcome::Resolved), Some(id)));
    let again = n.create("123").await;
    assert_eq!(again.outcome, Some(Outcome::Created));
    assert_ne!(again.alert_id, Some(id));
    let unknown = n.send(Action::Resolve, "nope", "t", None).await;
    assert_eq!(outcome(&unknown), (Some(Outcome::Ignored), None));

    let alert = n.blocking(move |s| s.alert(id)).await.unwrap().unwrap();
    assert_eq!((alert.status, alert.dedup_count), (Status::Resolved, 2));
    // A user cannot acknowledge a resolved alert; resolving the other one works.
    let refused = n
        .handle
        .change(id, UserChange::Acknowledge, clock::now())
        .await;
    assert!(
        matches!(refused, Err(siren::store::Error::Conflict { .. })),
        "{refused:?}"
    );
    let r = n
        .handle
        .change(other, UserChange::Resolve, clock::now())
        .await
        .unwrap();
    assert_eq!(r.status, Status::Resolved);

    let page = n
        .blocking(|s| s.alerts(&Default::default(), 2, None))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let next: u64 = page.next.clone().unwrap().parse().unwrap();
    let rest = n
        .blocking(move |s| s.alerts(&Default::default(), 10, Some(next)))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next, None);
    let logs = n.blocking(|s| s.logs("ops", 100, None)).await.unwrap();
    assert_eq!(logs.items.len(), 8);
    // Lists give summaries; one entry gives its data.
    let newest: u64 = logs.items[0].id.parse().unwrap();
    let entry = n.blocking(move |s| s.log(newest)).await.unwrap().unwrap();
    assert_eq!(entry.summary, logs.items[0]);
    assert_eq!(entry.data, serde_json::json!({"tp": "nope"}));
    let raw = n.blocking(move |s| s.raw(a.log_id)).await.unwrap().unwrap();
    assert_eq!(raw, b"{}");
    n.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dedup_keys_aggregate_and_resolve_like_sled() {
    let Some(url) = schema("dedup_keys").await else {
        return;
    };
    let n = Node::open(&url, None).await;
    let a = n.send_keyed(Action::Create, "m1", &["t1"], "t", None).await;
    assert_eq!(a.outcome, Some(Outcome::Created));
    let id = a.alert_id.unwrap();
    // Another id that names the first's further id folds in, and is then known by its own.
    let reply = n
        .send_keyed(Action::Create, "m2", &["t1", "m1"], "t", None)
        .await;
    assert_eq!(outcome(&reply), (Some(Outcome::Aggregated), Some(id)));
    assert_eq!(
        outcome(&n.create("m2").await),
        (Some(Outcome::Aggregated), Some(id))
    );
    // A further id resolves the alert it was created with.
    let res = n.send(Action::Resolve, "t1", "t", None).await;
    assert_eq!(outcome(&res), (Some(Outcome::Resolved), Some(id)));
    let unrelated = n.send_keyed(Action::Create, "m3", &["t9"], "t", None).await;
    assert_eq!(unrelated.outcome, Some(Outcome::Created));
    assert_ne!(unrelated.alert_id, Some(id));
    n.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_same_alert_at_two_nodes_at_once_makes_one_alert() {
    let Some(url) = schema("race").await else {
        return;
    };
    let (a, b) = (Node::open(&url, None).await, Node::open(&url, None).await);
    let sends = (0..30).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        node.create("same")
    });
    let receipts = futures_util_join(sends).await;
    let created: Vec<_> = receipts
        .iter()
        .filter(|r| r.outcome == Some(Outcome::Created))
        .collect();
    assert_eq!(created.len(), 1, "{receipts:?}");
    let id = created[0].alert_id.unwrap();
    assert!(receipts.iter().all(|r| r.alert_id == Some(id)));
    let alert = a.blocking(move |s| s.alert(id)).await.unwrap().unwrap();
    assert_eq!(alert.dedup_count, 29);

    // Auto aggregate by title, across nodes: different ids, one alert.
    let window = Some(Duration::from_secs(3600));
    let titled = (0..10).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        async move {
            node.send(Action::Create, &format!("tp-{i}"), "disk full", window)
                .await
        }
    });
    let receipts = futures_util_join(titled).await;
    let ids: std::collections::HashSet<_> = receipts.iter().map(|r| r.alert_id).collect();
    assert_eq!(ids.len(), 1, "{receipts:?}");
    // Each folded third-party id now finds that alert.
    let r = b.send(Action::Resolve, "tp-7", "x", None).await;
    assert_eq!(r.outcome, Some(Outcome::Resolved));
    assert_eq!(Some(r.alert_id), ids.into_iter().next());
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_auto_resolve_happens_once_across_nodes() {
    let Some(url) = schema("resolve").await else {
        return;
    };
    let (a, b) = (Node::open(&url, None).await, Node::open(&url, None).await);
    for i in 0..20 {
        a.create(&format!("r{i}")).await;
    }
    let later = clock::now() + Duration::from_secs(16 * 60);
    let (na, nb) = tokio::join!(a.handle.auto_resolve(later), b.handle.auto_resolve(later));
    // A node that found due alerts locked by the other looks again a second later.
    for next in [na.unwrap(), nb.unwrap()].into_iter().flatten() {
        assert!(next <= later + Duration::from_secs(1), "{next:?}");
    }
    assert_eq!(a.handle.auto_resolve(later).await.unwrap(), None);
    let resolved = |m: &Metrics| -> u64 {
        m.encode()
            .lines()
            .find(|l| l.starts_with("siren_alerts_resolved_total{integration=\"ops\",by=\"auto\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(resolved(&a.metrics) + resolved(&b.metrics), 20);
    let page = a
        .blocking(|s| {
            let filter = siren::store::AlertFilter {
                status: Some(Status::Resolved),
                ..Default::default()
            };
            s.alerts(&filter, 100, None)
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 20);
    a.close().await;
    b.close().await;
}

fn with_destination() -> siren::Config {
    let text = r#"
[http]
listen = "127.0.0.1:0"

[[integrations]]
id = "ops"
type = "webhook"
token = "t"
destinations = ["hook"]

[[destinations]]
id = "hook"
type = "webhook"
url = "http://127.0.0.1:9/"
"#;
    siren::Config::parse(text, Path::new("t.toml")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_delivery_is_held_by_one_node_until_its_claim_expires() {
    let Some(url) = schema("claims").await else {
        return;
    };
    let mut a = Node::open(&url, Some(with_destination())).await;
    let b = Node::open(&url, Some(with_destination())).await;
    a.create("x").await;
    let batch = a.queued.as_mut().unwrap().recv().await.unwrap();
    let (dest, q) = batch[0].clone();
    assert_eq!(dest, "hook");
    let id = q.id;
    let got = a.blocking(move |s| s.pending_delivery(id)).await.unwrap();
    assert!(got.is_some(), "the first node claims it");
    let none = b.blocking(move |s| s.pending_delivery(id)).await.unwrap();
    assert!(
        none.is_none(),
        "another node must not attempt a held delivery"
    );
    // The first node dies without recording the attempt: its claim's time passes (set back
    // here instead of waiting 60 s), and the other node takes the delivery, same id.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "UPDATE siren_deliveries SET claim_until = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let taken = b.blocking(move |s| s.pending_delivery(id)).await.unwrap();
    let (state, payload) = taken.expect("an expired claim is taken over");
    assert_eq!(
        (state.alert_id, payload.alert.id),
        (q.alert_id, q.alert_id.to_string())
    );
    b.handle
        .delivery(id, DeliveryOutcome::Delivered)
        .await
        .unwrap();
    let gone = a.blocking(move |s| s.pending_delivery(id)).await.unwrap();
    assert!(gone.is_none());
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_refuses_a_database_newer_than_the_binary() {
    let Some(url) = schema("newer").await else {
        return;
    };
    Node::open(&url, None).await.close().await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute("INSERT INTO siren_schema (version) VALUES (999)", &[])
        .await
        .unwrap();
    let c = store_config(&url);
    let opened = tokio::task::spawn_blocking(move || Store::open_configured(&c))
        .await
        .unwrap();
    let err = opened.err().expect("a newer schema is refused").to_string();
    assert!(
        err.contains("schema is version 999, newer than this Siren"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_daemon_accepts_mail_and_is_ready() {
    let Some(url) = schema("daemon").await else {
        return;
    };
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "siren.test"

[http]
listen = "127.0.0.1:0"

[store]
backend = "postgres"
url = "{url}"
pool_size = 4

[[integrations]]
id = "ops"
type = "email"
addresses = ["ops@alerts.localhost"]
"#
    );
    let config = siren::Config::parse(&text, Path::new("t.toml")).unwrap();
    let d = crate::helpers::Daemon::start_config(config).await;
    let (status, body) = d.get("/readyz").await;
    assert_eq!((status, body), (200, serde_json::json!({"ready": true})));
    let msg = crate::helpers::message("Disk full on db1", "<m1@test>");
    crate::helpers::deliver(d.smtp, &["ops@alerts.localhost"], &msg).await;
    let (status, alerts) = d.get("/api/v1/alerts").await;
    assert_eq!(status, 200, "{alerts}");
    assert_eq!(
        alerts["alerts"].as_array().map(Vec::len),
        Some(1),
        "{alerts}"
    );
    d.stop().await;
}

/// Polls the futures together, so that their commits can land in the same groups.
async fn futures_util_join<F: Future<Output = Receipt>>(
    fs: impl Iterator<Item = F>,
) -> Vec<Receipt> {
    let mut pinned: Vec<_> = fs.map(Box::pin).collect();
    let mut out: Vec<Option<Receipt>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => out[i] = Some(r),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}
