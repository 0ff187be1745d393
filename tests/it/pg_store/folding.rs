//! Folding on PostgreSQL, across nodes: a storm window every node counts into (the storm alert
//! pages once and resolves with its members), the title window's `aggregate_key`, and silences
//! that every node puts in force (a node running when the silence was made reloads it).

use std::time::{Duration, Instant};

use siren::domain::Storm;
use siren::store::{Action, Fold, NewSilence, Outcome, STORM_ID, Status};

use super::{Node, outcome, request, schema, with_destination};

fn storm(tp: &str) -> siren::store::AlertRequest {
    let mut req = request(Action::Create, tp, &format!("Disk full on {tp}"));
    req.fold = Fold {
        storm: Some(Storm {
            alerts: 3,
            within: Duration::from_secs(60),
        }),
        ..Fold::default()
    };
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_storm_is_counted_by_every_node_and_resolves_with_its_members() {
    let Some(url) = schema("storm").await else {
        return;
    };
    let (a, b) = (Node::open(&url, None).await, Node::open(&url, None).await);
    // Two new alerts on each node: a window per node would never pass three.
    for (node, tp) in [(&a, "h1"), (&b, "h2"), (&a, "h3")] {
        assert_eq!(
            node.send_request(storm(tp)).await.outcome,
            Some(Outcome::Created)
        );
    }
    let first = b.send_request(storm("h4")).await;
    assert_eq!(first.outcome, Some(Outcome::Aggregated));
    let id = first.alert_id.unwrap();
    let second = a.send_request(storm("h5")).await;
    assert_eq!(outcome(&second), (Some(Outcome::Aggregated), Some(id)));
    // A member's repeat finds the storm alert, and adds no member.
    assert_eq!(
        outcome(&b.send_request(storm("h5")).await),
        (Some(Outcome::Aggregated), Some(id))
    );
    let alert = a.blocking(move |s| s.alert(id)).await.unwrap().unwrap();
    assert_eq!(alert.thirdparty_id, STORM_ID);
    assert_eq!(alert.title, "Storm: 2 alerts from ops in 1m");
    assert_eq!((alert.status, alert.dedup_count), (Status::Open, 2));

    // Its members' resolves, on either node: the storm alert resolves with the last.
    let r = a.send(Action::Resolve, "h4", "", None).await;
    assert_eq!(outcome(&r), (Some(Outcome::Resolved), Some(id)));
    let still = b.blocking(move |s| s.alert(id)).await.unwrap().unwrap();
    assert_eq!(still.status, Status::Open);
    // A member's resolve counts once.
    let again = a.send(Action::Resolve, "h4", "", None).await;
    assert_ne!(again.alert_id, Some(id), "{again:?}");
    let r = b.send(Action::Resolve, "h5", "", None).await;
    assert_eq!(outcome(&r), (Some(Outcome::Resolved), Some(id)));
    let done = a.blocking(move |s| s.alert(id)).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Resolved);
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_the_title_window_compares_the_aggregate_key_and_takes_the_latest_title() {
    let Some(url) = schema("aggregate_key").await else {
        return;
    };
    let (a, b) = (Node::open(&url, None).await, Node::open(&url, None).await);
    let keyed = |tp: &str, title: &str, key: &str| {
        let mut req = request(Action::Create, tp, title);
        req.aggregate = Some(Duration::from_secs(3600));
        req.fold.key = Some(key.to_string());
        req
    };
    let first = a
        .send_request(keyed("z1", "Disk 91% full on db01", "disk db01"))
        .await;
    assert_eq!(first.outcome, Some(Outcome::Created));
    let id = first.alert_id.unwrap();
    let second = b
        .send_request(keyed("z2", "Disk 95% full on db01", "disk db01"))
        .await;
    assert_eq!(outcome(&second), (Some(Outcome::Aggregated), Some(id)));
    let other = a
        .send_request(keyed("z3", "Disk 95% full on db02", "disk db02"))
        .await;
    assert_eq!(other.outcome, Some(Outcome::Created));
    let alert = b.blocking(move |s| s.alert(id)).await.unwrap().unwrap();
    assert_eq!(
        (alert.title.as_str(), alert.dedup_count),
        ("Disk 95% full on db01", 1)
    );
    // The folded input's id now finds the alert.
    let r = a.send(Action::Resolve, "z2", "", None).await;
    assert_eq!(outcome(&r), (Some(Outcome::Resolved), Some(id)));
    a.close().await;
    b.close().await;
}

/// A silence for `title` ending in an hour, checked at now.
fn silence(title: &str) -> siren::store::SilenceSpec {
    let ends = humantime::format_rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600));
    let new: NewSilence = serde_json::from_value(serde_json::json!({
        "matchers": {"integration": "ops", "title": title},
        "ends_at": ends.to_string(),
        "comment": "maintenance",
    }))
    .unwrap();
    new.check(siren::clock::now(), 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_silence_made_on_one_node_drops_alerts_on_every_node() {
    let Some(url) = schema("silences").await else {
        return;
    };
    let a = Node::open(&url, Some(with_destination())).await;
    let b = Node::open(&url, Some(with_destination())).await;
    let s = a.handle.create_silence(silence("^Disk")).await.unwrap();
    assert_eq!(
        (s.state.as_str(), a.handle.silences_in_force()),
        ("active", 1)
    );
    // The other node, running already, reloads the silences every 2 s.
    let started = Instant::now();
    while b.handle.silences_in_force() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped = b
        .send(Action::Create, "d1", "Disk full on db01", None)
        .await;
    assert_eq!(dropped.outcome, Some(Outcome::Dropped));
    let log = dropped.log_id;
    let entry = b.blocking(move |s| s.log(log)).await.unwrap().unwrap();
    let why = entry.summary.error.unwrap_or_default();
    assert_eq!(why, format!("silenced by silence {}", s.id));
    // Its repeat aggregates, and neither pages anyone; an unsilenced alert does.
    let repeat = a
        .send(Action::Create, "d1", "Disk full on db01", None)
        .await;
    assert_eq!(repeat.outcome, Some(Outcome::Aggregated));
    async fn pending(n: &Node) -> usize {
        let page = n.blocking(|s| s.deliveries(false, None, 100, None)).await;
        page.unwrap().items.len()
    }
    assert_eq!(pending(&a).await, 0);
    let paged = a.send(Action::Create, "l1", "Load high", None).await;
    assert_eq!(paged.outcome, Some(Outcome::Created));
    assert_eq!(pending(&b).await, 1);

    // Listed by both; ended on the second, which a node opened later knows at once.
    let listed = a.blocking(|s| s.silences(10, None)).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let id: u64 = s.id.parse().unwrap();
    let ended = b.handle.end_silence(id, siren::clock::now()).await.unwrap();
    assert_eq!(ended.unwrap().state, "expired");
    let c = Node::open(&url, None).await;
    assert_eq!(c.handle.silences_in_force(), 0);
    let open = c
        .send(Action::Create, "d2", "Disk full on db02", None)
        .await;
    assert_eq!(open.outcome, Some(Outcome::Created));
    // The silenced problem seen again once the silence ended: a new alert that pages, beside
    // the dropped one (which takes in only dropped repeats).
    let again = c
        .send(Action::Create, "d1", "Disk full on db01", None)
        .await;
    assert_eq!(again.outcome, Some(Outcome::Created));
    assert_ne!(again.alert_id, dropped.alert_id);
    assert_eq!(
        b.handle
            .end_silence(id + 1_000_000, siren::clock::now())
            .await
            .unwrap(),
        None
    );
    for n in [a, b, c] {
        n.close().await;
    }
}
