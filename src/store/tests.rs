//! The store's own properties, checked against the tree itself: what one input stores, and what
//! a failing input or a failing disk does to the rest.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::logs::{DATA, LOG, PACKED_RAW, RAW};
use super::{
    Action, AlertRequest, Error, NewLog, Outcome, ReopenBounds, Source, Store, Writer, WriterHandle,
};
use crate::config::LogsConfig;
use crate::domain::Urgency;

fn start(max_entries: usize) -> (tempfile::TempDir, Store, Writer, WriterHandle) {
    start_with(max_entries, ReopenBounds::default())
}

fn start_with(
    max_entries: usize,
    bounds: ReopenBounds,
) -> (tempfile::TempDir, Store, Writer, WriterHandle) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let retention = LogsConfig {
        max_entries,
        max_age: Duration::from_secs(30 * 86_400),
    };
    let (writer, handle) =
        Writer::spawn_with(store.clone(), retention, None, Default::default(), bounds).unwrap();
    (dir, store, writer, handle)
}

fn entry(raw: &Arc<[u8]>, alert: Option<&str>) -> NewLog {
    NewLog {
        integration: "i".into(),
        received_at: SystemTime::now(),
        source: Source::Http,
        remote_addr: "127.0.0.1:1".into(),
        data: json!({"title": "t"}),
        alert: alert.map(|tp| AlertRequest {
            action: Action::Create,
            thirdparty_id: tp.into(),
            dedup_keys: Vec::new(),
            title: tp.into(),
            description: String::new(),
            urgency: Urgency::High,
            aggregate: None,
            auto_resolve: None,
            fold: Default::default(),
        }),
        outcome: alert.is_none().then_some(Outcome::Ignored),
        error: None,
        raw: raw.clone(),
        email: None,
    }
}

/// The log entries on an alert's timeline, oldest first (`timeline::entries`).
fn timeline_entries(store: &Store, alert: u64) -> Vec<u64> {
    super::timeline::entries(&store.tree().unwrap(), alert)
}

/// Chunks of raw input in the tree, compressed or not, and `L` values that hold one.
fn raw_chunks(store: &Store) -> usize {
    let tree = store.tree().unwrap();
    tree.scan_prefix([RAW]).count() + tree.scan_prefix([PACKED_RAW]).count() + raw_in_entries(store)
}

/// `L` values that hold their input's raw bytes.
fn raw_in_entries(store: &Store) -> usize {
    let tree = store.tree().unwrap();
    tree.scan_prefix([LOG])
        .values()
        .filter(|v| {
            let v = v.as_ref().unwrap();
            matches!(
                super::entry_value::split_entry_raw(v),
                Some(Ok((_, _, Some(_))))
            )
        })
        .count()
}

#[tokio::test]
async fn a_small_input_of_one_entry_keeps_its_raw_input_in_the_entrys_value() {
    let (_dir, store, writer, handle) = start(10);
    let keys = |kind: u8| store.tree().unwrap().scan_prefix([kind]).count();
    // Compressed (2 KB of repeated text), as received (too short to compress), and one whose
    // compressed form is over the limit (bytes that do not compress): that one keeps its key.
    let text: Arc<[u8]> = "disk full on web-1\n".repeat(100).into_bytes().into();
    let tiny: Arc<[u8]> = b"{}".to_vec().into();
    let mut rng = fastrand::Rng::with_seed(3);
    let noise: Arc<[u8]> = (0..2_000).map(|_| rng.u8(..)).collect();
    let mut ids = Vec::new();
    for raw in [&text, &tiny] {
        ids.push(handle.commit(vec![entry(raw, None)]).await.unwrap()[0].log_id);
    }
    assert_eq!((keys(PACKED_RAW), keys(RAW)), (0, 0));
    assert_eq!(raw_in_entries(&store), 2);
    assert_eq!(store.raw(ids[0]).unwrap().unwrap(), text[..]);
    assert_eq!(store.raw(ids[1]).unwrap().unwrap(), tiny[..]);
    assert!(store.log(ids[0]).unwrap().is_some());
    let big = handle.commit(vec![entry(&noise, None)]).await.unwrap()[0].log_id;
    assert_eq!(
        keys(RAW),
        1,
        "2,000 bytes that do not compress: a key of their own"
    );
    assert_eq!(raw_in_entries(&store), 2);
    assert_eq!(store.raw(big).unwrap().unwrap(), noise[..]);
    writer.join().await;
}

#[tokio::test]
async fn one_inputs_entries_store_its_raw_input_once_until_the_last_one_goes() {
    let (_dir, store, writer, handle) = start(3);
    // 10,000 bytes that do not compress: three chunks.
    let mut rng = fastrand::Rng::with_seed(7);
    let shared: Arc<[u8]> = (0..10_000).map(|_| rng.u8(..)).collect();
    let logs = (0..3).map(|_| entry(&shared, None)).collect();
    let first = handle.commit(logs).await.unwrap();
    assert_eq!(raw_chunks(&store), 3, "one copy for three entries");
    for r in &first {
        assert_eq!(store.raw(r.log_id).unwrap().unwrap(), shared[..]);
    }
    // Count retention (3 entries) drops the oldest entry with each new one; the shared input
    // stays as long as one of its entries does.
    let small: Arc<[u8]> = b"small".to_vec().into();
    for n in 1..=2 {
        handle.commit(vec![entry(&small, None)]).await.unwrap();
        assert_eq!(store.raw(first[n - 1].log_id).unwrap(), None);
        assert_eq!(store.raw(first[2].log_id).unwrap().unwrap(), shared[..]);
        assert_eq!(raw_chunks(&store), 3 + n);
    }
    handle.commit(vec![entry(&small, None)]).await.unwrap();
    assert_eq!(store.raw(first[2].log_id).unwrap(), None);
    assert_eq!(
        raw_chunks(&store),
        3,
        "only the three small inputs are left"
    );
    writer.join().await;
}

#[tokio::test]
async fn count_retention_leaves_no_chunk_of_a_dropped_entry_inline_or_under_v() {
    let (_dir, store, writer, handle) = start(1);
    // Keys under a prefix, read through the store's gate: after an answer, sled holds its group.
    let keys = |kind: u8| store.tree().unwrap().scan_prefix([kind]).count();
    let raw: Arc<[u8]> = b"{}".to_vec().into();
    // Data that does not compress, too large for the `L` value: its packed form goes under `V`.
    let mut rng = fastrand::Rng::with_seed(11);
    let noise: String = (0..6_000).map(|_| rng.alphanumeric()).collect();
    let mut large = entry(&raw, None);
    large.data = json!({"title": "t", "noise": noise});
    let first = handle.commit(vec![large]).await.unwrap()[0].log_id;
    assert!(keys(DATA) > 0, "large data goes under V");
    let second = handle.commit(vec![entry(&raw, None)]).await.unwrap()[0].log_id;
    // Retention (1 entry) dropped the large one; the small one's data is in its `L` value.
    assert_eq!(store.log(first).unwrap().map(|_| ()), None);
    assert!(store.log(second).unwrap().is_some());
    assert_eq!(keys(DATA), 0);
    assert_eq!(keys(LOG), 1);
    let third = handle.commit(vec![entry(&raw, None)]).await.unwrap()[0].log_id;
    assert_eq!(store.log(second).unwrap().map(|_| ()), None);
    assert!(store.log(third).unwrap().is_some());
    assert_eq!(keys(LOG), 1);
    assert_eq!(raw_chunks(&store), 1, "one input left, stored once");
    writer.join().await;
}

#[tokio::test]
async fn count_retention_takes_dropped_entries_off_their_alerts_timeline() {
    let (_dir, store, writer, handle) = start(2);
    let raw: Arc<[u8]> = b"{}".to_vec().into();
    let mut logs = Vec::new();
    for _ in 0..4 {
        logs.push(handle.commit(vec![entry(&raw, Some("tp"))]).await.unwrap()[0]);
    }
    let alert = logs[0].alert_id.unwrap();
    assert!(logs.iter().all(|r| r.alert_id == Some(alert)), "{logs:?}");
    // The creating entry is on the timeline through the record; the next three were linked,
    // and retention (2 entries) dropped the first two entries: only the last two are left.
    assert_eq!(
        timeline_entries(&store, alert),
        [logs[2].log_id, logs[3].log_id]
    );
    writer.join().await;
}

#[tokio::test]
async fn an_input_that_fails_in_a_group_fails_alone_with_its_own_error() {
    let (_dir, store, writer, handle) = start(100);
    let raw: Arc<[u8]> = b"{}".to_vec().into();
    let bad = handle.commit(vec![entry(&raw, Some("bad"))]).await.unwrap();
    let bad_id = bad[0].alert_id.unwrap();
    // Its record becomes unreadable: the next input for it cannot aggregate.
    store
        .tree()
        .unwrap()
        .insert(super::alerts::alert_key(bad_id), &b"not json"[..])
        .unwrap();
    // Queued together before the writer runs, so they share a group.
    let (a, b, c) = tokio::join!(
        handle.commit(vec![entry(&raw, Some("g1"))]),
        handle.commit(vec![entry(&raw, Some("bad"))]),
        handle.commit(vec![entry(&raw, Some("g2"))]),
    );
    assert_eq!(a.unwrap()[0].outcome, Some(Outcome::Created));
    assert!(matches!(b, Err(Error::Corrupt { .. })), "{b:?}");
    assert_eq!(c.unwrap()[0].outcome, Some(Outcome::Created));
    // The failed input left nothing behind: three entries, not four.
    assert_eq!(store.logs("i", 10, None).unwrap().items.len(), 3);
    writer.join().await;
}

#[tokio::test]
async fn a_store_that_fails_writes_says_why_refuses_them_and_heals_by_itself() {
    let (_dir, _store, writer, handle) = start(100);
    let raw: Arc<[u8]> = b"{}".to_vec().into();
    handle.inject_failure(true);
    let first = handle.commit(vec![entry(&raw, Some("a"))]).await;
    assert!(matches!(first, Err(Error::Commit(_))), "{first:?}");
    assert!(handle.unwritable().is_some());
    let next = handle.commit(vec![entry(&raw, Some("a"))]).await;
    assert!(matches!(next, Err(Error::Unavailable(_))), "{next:?}");
    handle.inject_failure(false);
    // The next write heals the store first (nothing acknowledged was lost: nothing was).
    let healed = handle.commit(vec![entry(&raw, Some("a"))]).await.unwrap();
    assert_eq!(healed[0].outcome, Some(Outcome::Created));
    assert!(handle.unwritable().is_none());
    writer.join().await;
}

fn sled(store: &Store) -> super::SledStore {
    match &store.0 {
        super::seam::Backend::Sled(s) => s.clone(),
        _ => unreachable!("a sled store"),
    }
}

fn bounds(idle: u64, hard: u64, idle_wait: Duration) -> ReopenBounds {
    ReopenBounds {
        idle,
        hard,
        idle_wait,
    }
}

#[tokio::test]
async fn past_its_hard_bound_the_writer_reopens_the_store_and_loses_nothing() {
    let hourly = Duration::from_secs(3600);
    let (dir, store, writer, handle) = start_with(1000, bounds(u64::MAX, 16 << 10, hourly));
    let mut rng = fastrand::Rng::with_seed(3);
    let mut written = Vec::new();
    for n in 0..40 {
        // 2,000 bytes that do not compress: a reopen every eight inputs or so.
        let raw: Arc<[u8]> = (0..2_000).map(|_| rng.u8(..)).collect();
        let r = handle
            .commit(vec![entry(&raw, Some(&format!("a{n}")))])
            .await
            .unwrap();
        assert_eq!(r[0].outcome, Some(Outcome::Created));
        assert_eq!(store.raw(r[0].log_id).unwrap().unwrap(), raw[..]);
        written.push((r[0].log_id, raw));
    }
    let reopens = sled(&store).reopens();
    assert!(reopens >= 3, "{reopens} reopens");
    writer.join().await;
    drop(store);
    // Opened afresh, as the next start opens it: everything acknowledged is there.
    let store = Store::open(&dir.path().join("store")).unwrap();
    for (id, raw) in &written {
        assert_eq!(store.raw(*id).unwrap().unwrap(), raw[..]);
    }
    assert_eq!(store.logs("i", 100, None).unwrap().items.len(), 40);
}

#[tokio::test(start_paused = true)]
async fn past_its_idle_bound_the_writer_reopens_the_store_once_writes_pause() {
    let idle = bounds(1, u64::MAX, Duration::from_millis(50));
    let (_dir, store, writer, handle) = start_with(100, idle);
    let raw: Arc<[u8]> = b"{}".to_vec().into();
    handle.commit(vec![entry(&raw, Some("a"))]).await.unwrap();
    assert_eq!(sled(&store).reopens(), 0, "not while writes come");
    // Paused time: the writer's idle timer fires, the reopen runs on the blocking pool.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sled(&store).reopens(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sled(&store).reopens(),
        1,
        "nothing written since: no reopen"
    );
    let r = handle.commit(vec![entry(&raw, Some("a"))]).await.unwrap();
    assert_eq!(r[0].outcome, Some(Outcome::Aggregated));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sled(&store).reopens(), 2);
    writer.join().await;
}

#[test]
fn readers_wait_for_a_planned_reopen_and_fail_at_once_while_the_store_heals() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::SledStore::open(&dir.path().join("store")).unwrap();
    store.close();
    assert!(matches!(store.tree(), Err(Error::Unavailable(_))));
    store.reopen().unwrap();
    store.planned.set(true);
    store.close();
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || store.tree().map(|_| ()))
    };
    // sled takes milliseconds to open: the reader asks while the store is closed.
    store.reopen().unwrap();
    store.planned.set(false);
    assert!(reader.join().unwrap().is_ok());
}

/// Groups that follow each other in one chain: each is applied before sled holds the one in
/// front (`commit.rs`), reading the tree with its writes laid over it. 600 inputs queued at
/// once make at least three groups (256 at most each) of one chain; every one folds into the
/// alert the first created, and count retention (300 entries) drops the oldest across group
/// boundaries, each entry once, leaving no key of a dropped one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_groups_see_the_group_in_front_before_sled_holds_it() {
    let (_dir, store, writer, handle) = start(300);
    let raw: Arc<[u8]> = b"{}".to_vec().into();
    let commits: Vec<_> = (0..600)
        .map(|_| {
            let (handle, store, raw) = (handle.clone(), store.clone(), raw.clone());
            tokio::spawn(async move {
                let receipt = handle.commit(vec![entry(&raw, Some("tp"))]).await.unwrap()[0];
                // Once answered, its alert is readable (the store's gate).
                let alert = receipt.alert_id.unwrap();
                assert!(store.alert(alert).unwrap().is_some());
                receipt
            })
        })
        .collect();
    let mut receipts = Vec::new();
    for c in commits {
        receipts.push(c.await.unwrap());
    }
    let alert = receipts[0].alert_id.unwrap();
    assert!(receipts.iter().all(|r| r.alert_id == Some(alert)));
    // Created once, folded into 599 times.
    assert_eq!(store.alert(alert).unwrap().unwrap().dedup_count, 599);
    let tree = store.tree().unwrap();
    let keys = |prefix: &[u8]| tree.scan_prefix(prefix).count();
    assert_eq!(keys(&[LOG]), 300);
    let indexed = |tree: &sled::Tree| super::index::counts(tree).unwrap()["i"];
    assert_eq!(indexed(&tree), 300);
    // One index key per group (a run of its entries), not one per entry.
    assert!(keys(&[super::index::INDEX]) < 300);
    // The 300 newest entries are left, each on the alert's timeline.
    let mut ids: Vec<u64> = receipts.iter().map(|r| r.log_id).collect();
    ids.sort_unstable();
    assert_eq!(timeline_entries(&store, alert), ids[300..]);
    // One timeline key per group (a run of its entries), not one per entry.
    assert!(
        tree.scan_prefix(super::timeline::timeline_prefix(alert))
            .count()
            < 300
    );
    for id in &ids[..300] {
        assert!(store.log(*id).unwrap().is_none());
    }
    writer.join().await;
}

/// A group that makes more entries than `logs.max_entries` keeps only the newest of its own:
/// the integration never holds more than the limit after a group.
#[tokio::test]
async fn a_group_larger_than_the_limit_drops_its_own_oldest() {
    let (_dir, store, writer, handle) = start(2);
    let keys = |kind: u8| store.tree().unwrap().scan_prefix([kind]).count();
    let raw: Arc<[u8]> = b"{}".to_vec().into();
    let first = handle.commit(vec![entry(&raw, None)]).await.unwrap()[0].log_id;
    let receipts = handle
        .commit((0..5).map(|_| entry(&raw, Some("tp"))).collect())
        .await
        .unwrap();
    let indexed = || super::index::counts(&store.tree().unwrap()).unwrap()["i"];
    assert_eq!((keys(LOG), indexed()), (2, 2));
    assert!(store.log(first).unwrap().is_none());
    let mut ids: Vec<u64> = receipts.iter().map(|r| r.log_id).collect();
    ids.sort_unstable();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.log(*id).unwrap().is_some(), i >= 3, "entry {i} of 5");
    }
    // The alert keeps its timeline of what is left, and the next input drops one more.
    let alert = receipts[0].alert_id.unwrap();
    // The two left folded into the alert; the two folded ones dropped left it too.
    assert_eq!(timeline_entries(&store, alert), ids[3..]);
    // The five share one raw input (one `R` chunk, counted by `C`): the two left keep it.
    let refs = |id: u64| {
        let key = super::chunk_prefix(super::logs::RAW_REFS, id);
        let value = store.tree().unwrap().get(key).unwrap();
        value.map(|v| super::u64_at(&v))
    };
    assert_eq!((raw_chunks(&store), refs(ids[0])), (1, Some(2)));
    assert_eq!(store.raw(ids[4]).unwrap().as_deref(), Some(&b"{}"[..]));
    let last = handle.commit(vec![entry(&raw, None)]).await.unwrap()[0].log_id;
    assert_eq!(keys(LOG), 2);
    assert!(store.log(ids[3]).unwrap().is_none());
    assert!(store.log(last).unwrap().is_some());
    assert_eq!(refs(ids[0]), Some(1));
    // A group that drops every entry of a shared raw input takes the input with them: three
    // more that share one, with a limit of two, drop the last of the five and the first of
    // their own, so the five's raw input and its count leave.
    handle
        .commit((0..3).map(|_| entry(&raw, Some("tp"))).collect())
        .await
        .unwrap();
    assert!(store.log(ids[4]).unwrap().is_none() && store.log(last).unwrap().is_none());
    assert_eq!((keys(LOG), refs(ids[0])), (2, None));
    assert_eq!(raw_chunks(&store), 1, "only the three's raw input is left");
    writer.join().await;
}

/// An entry whose `L` value takes more than one chunk (a long error) is dropped whole by
/// count retention, as a one-chunk entry is (read with one point read).
#[tokio::test]
async fn count_retention_drops_every_chunk_of_a_long_entry() {
    let (_dir, store, writer, handle) = start(1);
    let keys = |kind: u8| store.tree().unwrap().scan_prefix([kind]).count();
    let raw: Arc<[u8]> = b"{}".to_vec().into();
    let mut long = entry(&raw, None);
    long.error = Some("e".repeat(3 * super::CHUNK));
    let first = handle.commit(vec![long]).await.unwrap()[0].log_id;
    assert!(keys(LOG) > 1, "the long entry takes several chunks");
    let second = handle.commit(vec![entry(&raw, None)]).await.unwrap()[0].log_id;
    assert_eq!(store.log(first).unwrap().map(|_| ()), None);
    assert!(store.log(second).unwrap().is_some());
    assert_eq!(keys(LOG), 1);
    // And the other way round: a one-chunk entry dropped for a long one.
    let mut long = entry(&raw, None);
    long.error = Some("e".repeat(3 * super::CHUNK));
    handle.commit(vec![long]).await.unwrap();
    assert_eq!(store.log(second).unwrap().map(|_| ()), None);
    assert!(keys(LOG) > 1);
    writer.join().await;
}
