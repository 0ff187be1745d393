//! Integration-log retention: bounded by count per integration and by age.

use std::time::{Duration, SystemTime};

use crate::helpers::{Daemon, deliver, message};

fn ids(logs: &[serde_json::Value]) -> Vec<String> {
    logs.iter()
        .map(|l| l["data"]["message_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn oldest_entries_go_past_the_count_limit() {
    let d = Daemon::start_with("[logs]\nmax_entries = 3").await;
    for i in 0..5 {
        deliver(
            d.smtp,
            &["ops@alerts.localhost"],
            &message("n", &format!("c{i}@x")),
        )
        .await;
    }
    deliver(d.smtp, &["zabbix@alerts.localhost"], &message("z", "z0@x")).await;
    let logs = d.logs("ops").await;
    assert_eq!(ids(&logs), ["c4@x", "c3@x", "c2@x"]);
    assert_eq!(
        d.logs("zabbix").await.len(),
        1,
        "the limit is per integration"
    );
    // The dropped entries are gone with their raw input.
    let newest: u64 = logs[0]["id"].as_str().unwrap().parse().unwrap();
    for id in 0..newest {
        let (status, body) = d.get(&format!("/api/v1/logs/{id}")).await;
        if status == 200 {
            assert!(
                ids(&logs).contains(&body["data"]["message_id"].as_str().unwrap().to_string())
                    || body["integration"] == "zabbix"
            );
        }
    }
    d.stop().await;
}

#[tokio::test]
async fn entries_older_than_max_age_are_dropped() {
    let d = Daemon::start_with("[logs]\nmax_age = \"1d\"").await;
    deliver(d.smtp, &["ops@alerts.localhost"], &message("old", "old@x")).await;
    let now = SystemTime::now();
    // Nothing is due yet; the answer is when the entry expires.
    let next = d.writer.prune(now).await.unwrap().expect("an expiry time");
    let until = next.duration_since(now).unwrap();
    assert!(
        until > Duration::from_secs(86_000) && until <= Duration::from_secs(86_400),
        "{until:?}"
    );
    assert_eq!(d.logs("ops").await.len(), 1);
    // A day later it is dropped, raw input included, and nothing further is due.
    let later = now + Duration::from_secs(86_401);
    assert_eq!(d.writer.prune(later).await.unwrap(), None);
    assert!(d.logs("ops").await.is_empty());
    d.stop().await;
}

/// Regression (issue 12): a failed age-prune waited a whole `logs.max_age` for its next try.
/// It is now tried again within a minute.
#[tokio::test]
async fn a_failed_age_prune_is_retried_soon() {
    let d = Daemon::start_with("[logs]\nmax_age = \"1h\"").await;
    deliver(d.smtp, &["ops@alerts.localhost"], &message("old", "old@x")).await;
    d.writer.inject_failure(true);
    // The log-age timer comes due and its prune fails. (Paused only while no client talks:
    // with a paused clock, tokio moves time ahead at every park, socket I/O or not.)
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(3600 + 5)).await;
    tokio::time::resume();
    assert!(d.writer.unwritable().is_some(), "the prune ran and failed");
    assert_eq!(d.logs("ops").await.len(), 1);
    d.writer.inject_failure(false);
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(60)).await;
    tokio::time::resume();
    assert!(d.logs("ops").await.is_empty(), "pruned on the retry");
    d.stop().await;
}
