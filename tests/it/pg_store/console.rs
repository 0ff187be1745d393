//! What the console and the outbox read on PostgreSQL: the alert list's search, filters and
//! cursors, log rows by outcome, an integration's counts, an alert's timeline with its
//! deliveries, a dead letter retried, and one input's raw bytes stored once and removed with
//! its last entry.

use std::sync::Arc;
use std::time::Duration;

use siren::store::{
    Action, AlertSearch, DeliveryOutcome, Outcome, ResolvedBy, Status, TimelineEntry, UserChange,
};

use super::{Node, entry, request, schema, with_destination};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_the_alert_list_searches_filters_and_pages_like_sled() {
    let Some(url) = schema("alert_rows").await else {
        return;
    };
    let n = Node::open(&url, None).await;
    for (tp, title) in [
        ("a1", "Disk full on DB01"),
        ("a2", "disk FULL on db02"),
        ("a3", "Érable: CPU high"),
        ("a4", "Load high"),
    ] {
        n.send(Action::Create, tp, title, None).await;
    }
    n.send(Action::Resolve, "a4", "", None).await;
    let rows = |search: AlertSearch, limit: usize, cursor: Option<u64>| {
        n.blocking(move |s| s.alert_rows(&search, limit, cursor))
    };
    let search = |text: &str| AlertSearch {
        text: Some(text.to_string()),
        ..AlertSearch::default()
    };
    let found = rows(search("disk full"), 10, None).await.unwrap();
    let titles: Vec<_> = found.items.iter().map(|r| r.title.as_str()).collect();
    assert_eq!(titles, ["disk FULL on db02", "Disk full on DB01"]);
    assert!(!found.searched_out);
    // Lower case as Rust has it, beyond ASCII.
    let found = rows(search("érable"), 10, None).await.unwrap();
    assert_eq!(found.items.len(), 1);
    let open = AlertSearch {
        status: Some(Status::Open),
        integration: Some("ops".into()),
        ..AlertSearch::default()
    };
    let page = rows(open.clone(), 2, None).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = rows(open, 2, page.next).await.unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next, None);
    let mut all: Vec<_> = page.items.iter().chain(&rest.items).map(|r| r.id).collect();
    all.dedup();
    assert_eq!(all.len(), 3, "no row twice, none skipped");
    // Limit 1 on a search: the cursor is the last hit.
    let one = rows(search("disk"), 1, None).await.unwrap();
    let next = rows(search("disk"), 1, one.next).await.unwrap();
    assert_eq!(next.items[0].title, "Disk full on DB01");
    n.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_log_rows_filter_by_outcome_and_integrations_count_the_day() {
    let Some(url) = schema("log_rows").await else {
        return;
    };
    let n = Node::open(&url, None).await;
    n.create("x").await;
    n.create("x").await;
    n.create("x").await;
    n.send(Action::Resolve, "nope", "", None).await;
    let rows = |o: Option<Outcome>| n.blocking(move |s| s.log_rows("ops", o, 10, None));
    let aggregated = rows(Some(Outcome::Aggregated)).await.unwrap();
    assert_eq!(aggregated.items.len(), 2);
    assert!(
        aggregated
            .items
            .iter()
            .all(|r| r.outcome == Some(Outcome::Aggregated))
    );
    // The row's subject is the input's summary (its data has no title: empty).
    let all = rows(None).await.unwrap();
    assert_eq!(all.items.len(), 4);
    assert_eq!(all.items[0].outcome, Some(Outcome::Ignored));
    let stats = n.blocking(|s| s.integration_stats("ops", 0)).await.unwrap();
    assert_eq!(stats.total, 4);
    assert_eq!(
        stats.by_outcome,
        [
            (Outcome::Created, 1),
            (Outcome::Aggregated, 2),
            (Outcome::Ignored, 1)
        ]
    );
    assert!(stats.last_input_ms.is_some());
    let none = n.blocking(|s| s.integration_stats("db", 0)).await.unwrap();
    assert_eq!((none.total, none.last_input_ms), (0, None));
    n.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_timeline_shows_entries_changes_and_a_dead_letter_retried() {
    let Some(url) = schema("timeline").await else {
        return;
    };
    let mut n = Node::open(&url, Some(with_destination())).await;
    let created = n.create("t1").await;
    let id = created.alert_id.unwrap();
    n.create("t1").await;
    let batch = n.queued.as_mut().unwrap().recv().await.unwrap();
    let delivery = batch[0].1.id;
    // The attempt fails for the last time: a dead letter.
    let (mut state, _) = n
        .blocking(move |s| s.pending_delivery(delivery))
        .await
        .unwrap()
        .unwrap();
    state.failed(
        "503 from the receiver",
        0,
        Some(siren::store::unix_ms(siren::clock::now())),
    );
    n.handle
        .delivery(delivery, DeliveryOutcome::Dead(state))
        .await
        .unwrap();
    n.handle
        .change(id, UserChange::Acknowledge, siren::clock::now())
        .await
        .unwrap();
    let log = created.log_id;
    let history = n.blocking(move |s| s.history(id, log)).await.unwrap();
    let kinds: Vec<_> = history
        .entries
        .iter()
        .map(|e| match e {
            TimelineEntry::Log { outcome, .. } => format!("{outcome:?}"),
            TimelineEntry::Change { event, by, .. } => format!("{event:?} by {by:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["Some(Created)", "Some(Aggregated)", "Acknowledge by User"],
        "{history:?}"
    );
    assert_eq!(history.earlier, 0);
    let states: Vec<_> = history.deliveries.iter().map(|d| d.state).collect();
    // One per event the destination takes: the create (dead), the aggregate, the acknowledge.
    assert_eq!(states[0], "dead", "{history:?}");
    assert_eq!(history.deliveries[0].id, delivery);
    assert_eq!(
        history.deliveries[0].last_error.as_deref(),
        Some("503 from the receiver")
    );

    let dead = n
        .blocking(|s| s.deliveries(true, None, 10, None))
        .await
        .unwrap();
    assert_eq!(dead.items.len(), 1);
    n.handle.retry(delivery, siren::clock::now()).await.unwrap();
    let back = loop {
        let b = n.queued.as_mut().unwrap().recv().await.unwrap();
        if let Some(q) = b.into_iter().find(|(_, q)| q.id == delivery) {
            break q;
        }
    };
    assert_eq!((back.1.attempts, back.0.as_str()), (0, "hook"));
    let dead = n
        .blocking(|s| s.deliveries(true, None, 10, None))
        .await
        .unwrap();
    assert!(dead.items.is_empty());
    let again = n.handle.retry(delivery, siren::clock::now()).await;
    assert!(
        matches!(again, Err(siren::store::Error::NoSuchDeadLetter(d)) if d == delivery),
        "{again:?}"
    );
    let history = n.blocking(move |s| s.history(id, log)).await.unwrap();
    assert_eq!(history.deliveries[0].state, "pending");
    // Resolved by the user: the alert says who.
    let r = n
        .handle
        .change(id, UserChange::Resolve, siren::clock::now())
        .await
        .unwrap();
    assert_eq!(r.resolved_by, Some(ResolvedBy::User));
    n.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_one_inputs_entries_store_its_raw_input_once_until_the_last_one_goes() {
    let Some(url) = schema("raw_once").await else {
        return;
    };
    let n = Node::open(&url, None).await;
    let shared: Arc<[u8]> = vec![b'x'; 10_000].into();
    let logs = (0..3)
        .map(|i| {
            let tp = format!("n{i}");
            entry(&tp, Some(request(Action::Create, &tp, "t")), shared.clone())
        })
        .collect();
    let receipts = n.handle.commit(logs).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let raws = || async {
        let row = client
            .query_one(
                "SELECT count(*), coalesce(sum(length(raw)), 0) FROM siren_raws",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    };
    assert_eq!(raws().await, (1, 10_000));
    for r in &receipts {
        let id = r.log_id;
        let raw = n.blocking(move |s| s.raw(id)).await.unwrap().unwrap();
        assert_eq!(raw.len(), 10_000);
        let e = n.blocking(move |s| s.log(id)).await.unwrap().unwrap();
        assert_eq!(e.summary.size, 10_000);
    }
    // All past the age limit: the entries go, and the raw input with the last of them.
    let later = siren::clock::now() + Duration::from_secs(31 * 86_400);
    assert_eq!(n.handle.prune(later).await.unwrap(), None);
    assert_eq!(raws().await, (0, 0));
    let logs = n.blocking(|s| s.logs("ops", 10, None)).await.unwrap();
    assert!(logs.items.is_empty());
    n.close().await;
}
