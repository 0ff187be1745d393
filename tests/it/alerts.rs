//! Alerts at the engine level (the store's writer, no sockets): PagerTree's four aggregation
//! examples, auto aggregate windows, and auto resolve with paused time.

use std::sync::Arc;
use std::time::Duration;

use siren::clock;
use siren::config::LogsConfig;
use siren::domain::Urgency;
use siren::store::{
    Action, Alert, AlertRequest, NewLog, Outcome, Receipt, ResolvedBy, Source, Status, Store,
    UserChange, Writer, WriterHandle,
};

/// A store and its writer in a temporary directory.
struct Engine {
    store: Store,
    writer: Option<Writer>,
    handle: WriterHandle,
    dir: tempfile::TempDir,
}

impl Engine {
    async fn new() -> Engine {
        Self::open(tempfile::tempdir().unwrap())
    }

    fn open(dir: tempfile::TempDir) -> Engine {
        let store = Store::open(&dir.path().join("store")).unwrap();
        let retention = LogsConfig {
            max_entries: 10_000,
            max_age: Duration::from_secs(30 * 86400),
        };
        let (writer, handle) =
            Writer::spawn(store.clone(), retention, None, Default::default()).unwrap();
        Engine {
            store,
            writer: Some(writer),
            handle,
            dir,
        }
    }

    async fn close(mut self) -> tempfile::TempDir {
        self.writer.take().unwrap().join().await;
        self.dir
    }

    async fn send(&self, req: Req<'_>) -> Receipt {
        let log = NewLog {
            integration: req.integration.to_string(),
            received_at: clock::now(),
            source: Source::Http,
            remote_addr: "127.0.0.1:1".into(),
            data: serde_json::json!({}),
            alert: Some(AlertRequest {
                dedup_keys: Vec::new(),
                action: req.action,
                thirdparty_id: req.thirdparty_id.to_string(),
                title: req.title.to_string(),
                description: "d".into(),
                urgency: Urgency::High,
                aggregate: req.aggregate,
                auto_resolve: req.auto_resolve,
                fold: Default::default(),
            }),
            outcome: None,
            error: None,
            raw: Arc::from(&b"{}"[..]),
            email: None,
        };
        self.handle.commit(vec![log]).await.unwrap().remove(0)
    }

    async fn create(&self, integration: &str, thirdparty_id: &str) -> Receipt {
        self.send(Req::new(integration, Action::Create, thirdparty_id))
            .await
    }

    async fn resolve(&self, integration: &str, thirdparty_id: &str) -> Receipt {
        self.send(Req::new(integration, Action::Resolve, thirdparty_id))
            .await
    }

    fn alert(&self, id: u64) -> Alert {
        self.store.alert(id).unwrap().expect("alert exists")
    }

    async fn user(&self, id: u64, change: UserChange) -> Alert {
        self.handle.change(id, change, clock::now()).await.unwrap()
    }
}

struct Req<'a> {
    integration: &'a str,
    action: Action,
    thirdparty_id: &'a str,
    title: &'a str,
    aggregate: Option<Duration>,
    auto_resolve: Option<Duration>,
}

impl<'a> Req<'a> {
    fn new(integration: &'a str, action: Action, thirdparty_id: &'a str) -> Self {
        Req {
            integration,
            action,
            thirdparty_id,
            title: "t",
            aggregate: None,
            auto_resolve: None,
        }
    }
}

fn created(r: Receipt) -> u64 {
    assert_eq!(r.outcome, Some(Outcome::Created), "{r:?}");
    r.alert_id.unwrap()
}

fn assert_outcome(r: Receipt, outcome: Outcome, alert: u64) {
    assert_eq!(
        (r.outcome, r.alert_id),
        (Some(outcome), Some(alert)),
        "{r:?}"
    );
}

#[tokio::test]
async fn pagertree_example_1_simple() {
    let e = Engine::new().await;
    let a1 = created(e.create("i1", "123").await);
    assert_outcome(e.resolve("i1", "123").await, Outcome::Resolved, a1);
    let a2 = created(e.create("i1", "123").await);
    assert_ne!(a1, a2);
    let (x1, x2) = (e.alert(a1), e.alert(a2));
    assert_eq!(
        (x1.status, x1.resolved_by, x1.dedup_count),
        (Status::Resolved, Some(ResolvedBy::Integration), 0)
    );
    assert!(x1.resolved_at.is_some());
    assert_eq!((x2.status, x2.dedup_count), (Status::Open, 0));
    assert_eq!(x2.thirdparty_id, "123");
}

#[tokio::test]
async fn pagertree_example_2_dedup() {
    let e = Engine::new().await;
    let a1 = created(e.create("i1", "123").await);
    assert_outcome(e.create("i1", "123").await, Outcome::Aggregated, a1);
    assert_eq!(e.alert(a1).dedup_count, 1);
    assert_outcome(e.resolve("i1", "123").await, Outcome::Resolved, a1);
    let a2 = created(e.create("i1", "123").await);
    assert_ne!(a1, a2);
    assert_eq!(
        (e.alert(a1).status, e.alert(a1).dedup_count),
        (Status::Resolved, 1)
    );
    assert_eq!(
        (e.alert(a2).status, e.alert(a2).dedup_count),
        (Status::Open, 0)
    );
}

#[tokio::test]
async fn pagertree_example_3_multiple_integrations() {
    let e = Engine::new().await;
    let a1 = created(e.create("i1", "123").await);
    let a2 = created(e.create("i2", "123").await);
    assert_ne!(a1, a2);
    assert_outcome(e.resolve("i1", "123").await, Outcome::Resolved, a1);
    for _ in 0..3 {
        assert_outcome(e.create("i2", "123").await, Outcome::Aggregated, a2);
    }
    assert_eq!(e.alert(a1).status, Status::Resolved);
    assert_eq!(
        (e.alert(a2).status, e.alert(a2).dedup_count),
        (Status::Open, 3)
    );
    assert_outcome(e.resolve("i2", "123").await, Outcome::Resolved, a2);
}

#[tokio::test]
async fn pagertree_example_4_user_intervention() {
    let e = Engine::new().await;
    let a1 = created(e.create("i1", "123").await);
    assert_eq!(
        e.user(a1, UserChange::Acknowledge).await.status,
        Status::Acknowledged
    );
    assert_outcome(e.create("i1", "123").await, Outcome::Aggregated, a1);
    assert_eq!(
        (e.alert(a1).status, e.alert(a1).dedup_count),
        (Status::Acknowledged, 1)
    );
    let resolved = e.user(a1, UserChange::Resolve).await;
    assert_eq!(
        (resolved.status, resolved.resolved_by),
        (Status::Resolved, Some(ResolvedBy::User))
    );
    let a2 = created(e.create("i1", "123").await);
    assert_ne!(a1, a2);
    assert_eq!(e.alert(a2).dedup_count, 0);
}

#[tokio::test]
async fn resolve_of_unknown_id_changes_nothing_and_user_changes_are_checked() {
    let e = Engine::new().await;
    let r = e.resolve("i1", "never-seen").await;
    assert_eq!((r.outcome, r.alert_id), (Some(Outcome::Ignored), None));
    let a1 = created(e.create("i1", "1").await);
    e.user(a1, UserChange::Resolve).await;
    let err = e
        .handle
        .change(a1, UserChange::Acknowledge, clock::now())
        .await
        .unwrap_err();
    assert!(matches!(err, siren::store::Error::Conflict { .. }), "{err}");
    let err = e
        .handle
        .change(999_999, UserChange::Resolve, clock::now())
        .await
        .unwrap_err();
    assert!(matches!(err, siren::store::Error::NoSuchAlert(_)), "{err}");
    // Resolving again is idempotent.
    assert_eq!(
        e.user(a1, UserChange::Resolve).await.status,
        Status::Resolved
    );
}

#[tokio::test]
async fn creates_in_one_group_commit_see_each_other() {
    let e = Engine::new().await;
    let sends = (0..20).map(|_| e.create("i1", "same"));
    let receipts = futures_join_all(sends).await;
    let created: Vec<_> = receipts
        .iter()
        .filter(|r| r.outcome == Some(Outcome::Created))
        .collect();
    assert_eq!(created.len(), 1, "{receipts:?}");
    assert_eq!(e.alert(created[0].alert_id.unwrap()).dedup_count, 19);
}

async fn futures_join_all<F: std::future::Future<Output = Receipt>>(
    fs: impl Iterator<Item = F>,
) -> Vec<Receipt> {
    let mut set = Vec::new();
    for f in fs {
        set.push(f);
    }
    let mut out = Vec::new();
    // Polls them together so their commits land in the same group.
    let mut pinned: Vec<_> = set.into_iter().map(Box::pin).collect();
    let results = std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out.len() <= i {
                out.push(None);
            }
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
    });
    results.await;
    out.into_iter().map(Option::unwrap).collect()
}

const HOUR: Duration = Duration::from_secs(3600);

fn titled<'a>(integration: &'a str, tp: &'a str, title: &'a str) -> Req<'a> {
    Req {
        title,
        aggregate: Some(HOUR),
        ..Req::new(integration, Action::Create, tp)
    }
}

#[tokio::test(start_paused = true)]
async fn auto_aggregate_folds_same_title_within_the_window_only() {
    let e = Engine::new().await;
    let a1 = created(e.send(titled("i1", "m1", "Disk full on db01")).await);
    tokio::time::sleep(30 * 60 * Duration::from_secs(1)).await;
    assert_outcome(
        e.send(titled("i1", "m2", "Disk full on db01")).await,
        Outcome::Aggregated,
        a1,
    );
    // The later message's own id now leads to the alert it folded into.
    assert_outcome(e.resolve("i1", "m2").await, Outcome::Resolved, a1);
    // After a resolve, the same title starts a new alert.
    let a2 = created(e.send(titled("i1", "m3", "Disk full on db01")).await);
    // Another integration, or another title, never folds in.
    let a3 = created(e.send(titled("i2", "m4", "Disk full on db01")).await);
    let a4 = created(e.send(titled("i1", "m5", "Disk full on db02")).await);
    assert!(a2 != a3 && a3 != a4 && a2 != a4);
    // Past the window (counted from the alert's creation), a new alert.
    tokio::time::sleep(HOUR + Duration::from_secs(1)).await;
    let a5 = created(e.send(titled("i1", "m6", "Disk full on db01")).await);
    assert_ne!(a5, a2);
    assert_eq!(
        e.alert(a2).status,
        Status::Open,
        "the old one is left alone"
    );
    assert_eq!(e.alert(a1).dedup_count, 1);
}

#[tokio::test]
async fn without_a_window_titles_do_not_fold() {
    let e = Engine::new().await;
    created(
        e.send(Req {
            title: "x",
            ..Req::new("i1", Action::Create, "a")
        })
        .await,
    );
    created(
        e.send(Req {
            title: "x",
            ..Req::new("i1", Action::Create, "b")
        })
        .await,
    );
}

#[tokio::test(start_paused = true)]
async fn auto_resolve_fires_at_the_deadline() {
    let e = Engine::new().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let resolver = tokio::spawn(siren::resolver::run(e.handle.clone(), stop.clone()));
    let four_hours = 4 * HOUR;
    let a = created(
        e.send(Req {
            auto_resolve: Some(four_hours),
            ..Req::new("i1", Action::Create, "a")
        })
        .await,
    );
    let b = created(
        e.send(Req {
            auto_resolve: Some(8 * HOUR),
            ..Req::new("i1", Action::Create, "b")
        })
        .await,
    );
    tokio::time::sleep(3 * HOUR).await;
    assert_eq!(e.alert(a).status, Status::Open);
    tokio::time::sleep(HOUR + Duration::from_secs(1)).await;
    let x = e.alert(a);
    assert_eq!(
        (x.status, x.resolved_by),
        (Status::Resolved, Some(ResolvedBy::Auto))
    );
    assert_eq!(e.alert(b).status, Status::Open);
    // An alert resolved before its deadline is not touched again.
    e.user(b, UserChange::Resolve).await;
    tokio::time::sleep(5 * HOUR).await;
    assert_eq!(e.alert(b).resolved_by, Some(ResolvedBy::User));
    stop.cancel();
    resolver.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn overdue_alerts_are_resolved_right_after_a_restart() {
    let e = Engine::new().await;
    let mut ids = Vec::new();
    for tp in ["a", "b", "c"] {
        ids.push(created(
            e.send(Req {
                auto_resolve: Some(HOUR),
                ..Req::new("i1", Action::Create, tp)
            })
            .await,
        ));
    }
    let dir = e.close().await;
    // Stopped past the deadline.
    tokio::time::sleep(2 * HOUR).await;
    let e = Engine::open(dir);
    let stop = tokio_util::sync::CancellationToken::new();
    let resolver = tokio::spawn(siren::resolver::run(e.handle.clone(), stop.clone()));
    while ids.iter().any(|id| e.alert(*id).status != Status::Resolved) {
        tokio::task::yield_now().await;
    }
    for id in ids {
        assert_eq!(e.alert(id).resolved_by, Some(ResolvedBy::Auto));
    }
    stop.cancel();
    resolver.await.unwrap();
}

/// The whole daemon: alerts created through it, the daemon stopped past their deadline and
/// started again on the same store; right after start they are resolved by `auto`. The mail is
/// sent in real time (a paused clock jumps ahead at every socket wait); then time is paused.
#[tokio::test]
async fn daemon_restart_resolves_overdue_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\nauto_resolve = \"4h\"\n",
        dir.path().join("store").display()
    );
    let config = || siren::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let d = crate::helpers::Daemon::start_config(config()).await;
    for i in 0..3 {
        let msg = crate::helpers::message(&format!("alert {i}"), &format!("r{i}@x"));
        crate::helpers::deliver(d.smtp, &["ops@alerts.localhost"], &msg).await;
    }
    let (_, body) = d.get("/api/v1/alerts?status=open").await;
    assert_eq!(body["alerts"].as_array().unwrap().len(), 3, "{body}");
    d.stop().await;

    tokio::time::pause();
    tokio::time::sleep(5 * HOUR).await;
    let d = crate::helpers::Daemon::start_config(config()).await;
    let mut resolved = Vec::new();
    for _ in 0..1000 {
        let (_, body) = d.get("/api/v1/alerts?status=resolved").await;
        resolved = body["alerts"].as_array().unwrap().clone();
        if resolved.len() == 3 {
            break;
        }
    }
    assert_eq!(resolved.len(), 3, "overdue alerts resolved after restart");
    assert!(resolved.iter().all(|a| a["resolved_by"] == "auto"));
    d.stop().await;
}
