//! The cost of creating an alert with few and with many existing alerts: every lookup that
//! aggregation does is an index seek, so the two should be close. Prints figures; asserts
//! nothing. Run: `cargo bench --bench alerts` (SIREN_BENCH_ALERTS=N changes the large size).

use std::sync::Arc;
use std::time::{Duration, Instant};

use siren::config::LogsConfig;
use siren::domain::Urgency;
use siren::store::{Action, AlertRequest, NewLog, Outcome, Source, Store, Writer, WriterHandle};

const FILL_BATCH: usize = 2_000;
const MEASURED: usize = 2_000;
const GROUP: usize = 100;

fn request(n: u64, tp: &str) -> NewLog {
    NewLog {
        integration: "bench".into(),
        received_at: std::time::SystemTime::now(),
        source: Source::Http,
        remote_addr: "127.0.0.1:1".into(),
        data: serde_json::json!({ "n": n }),
        alert: Some(AlertRequest {
            dedup_keys: Vec::new(),
            action: Action::Create,
            thirdparty_id: tp.to_string(),
            title: format!("Disk usage high on host{n:07}"),
            description: "Filesystem /var is 93% full".into(),
            urgency: Urgency::High,
            aggregate: Some(Duration::from_secs(3600)),
            auto_resolve: Some(Duration::from_secs(4 * 3600)),
            fold: Default::default(),
        }),
        outcome: None,
        error: None,
        raw: Arc::from(&b"{}"[..]),
        email: None,
    }
}

async fn fill(writer: &WriterHandle, existing: u64) {
    let mut n = 0;
    while n < existing {
        let batch: Vec<NewLog> = (n..(n + FILL_BATCH as u64).min(existing))
            .map(|i| request(i, &format!("fill-{i}")))
            .collect();
        n += batch.len() as u64;
        writer.commit(batch).await.expect("fill commit");
    }
}

/// Mean time per create: each its own commit (fsync included), and `GROUP` per commit.
async fn measure(writer: &WriterHandle, base: u64) -> (Duration, Duration, Duration) {
    let start = Instant::now();
    for i in 0..MEASURED as u64 {
        let r = writer
            .commit(vec![request(base + i, &format!("new-{}", base + i))])
            .await
            .unwrap();
        assert_eq!(r[0].outcome, Some(Outcome::Created));
    }
    let single = start.elapsed() / MEASURED as u32;

    let start = Instant::now();
    for g in 0..(MEASURED / GROUP) as u64 {
        let batch = (0..GROUP as u64)
            .map(|i| {
                let n = base + 10_000_000 + g * GROUP as u64 + i;
                request(n, &format!("grp-{n}"))
            })
            .collect();
        writer.commit(batch).await.unwrap();
    }
    let grouped = start.elapsed() / MEASURED as u32;

    // Aggregation: creates that fold into an existing alert by third-party id.
    let start = Instant::now();
    for g in 0..(MEASURED / GROUP) as u64 {
        let batch = (0..GROUP as u64)
            .map(|i| {
                let n = base + g * GROUP as u64 + i;
                request(n, &format!("new-{n}"))
            })
            .collect();
        let r = writer.commit(batch).await.unwrap();
        assert_eq!(r[0].outcome, Some(Outcome::Aggregated));
    }
    let aggregated = start.elapsed() / MEASURED as u32;
    (single, grouped, aggregated)
}

fn main() {
    let large: u64 = std::env::var("SIREN_BENCH_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        println!("existing alerts | create, own commit | create, {GROUP}/commit | aggregate, {GROUP}/commit | fill time");
        let mut rows = Vec::new();
        for existing in [10, large] {
            let dir = tempfile::tempdir().unwrap();
            // SIREN_BENCH_CACHE=bytes sets sled's page cache (default 1 GiB).
            let cache = std::env::var("SIREN_BENCH_CACHE").ok().and_then(|v| v.parse().ok());
            let store = Store::open_with_cache(&dir.path().join("store"), cache).unwrap();
            // No log pruning in either run: it would cost the large run alone.
            let retention = LogsConfig {
                max_entries: 1_000_000,
                max_age: Duration::from_secs(30 * 86400),
            };
            let (writer, handle) = Writer::spawn(store, retention, None, Default::default()).unwrap();
            let t = Instant::now();
            fill(&handle, existing).await;
            let fill_time = t.elapsed();
            // Three rounds; the median of each column (this machine is shared).
            let mut runs = Vec::new();
            for round in 0..3 {
                runs.push(measure(&handle, existing + round * 100_000_000).await);
            }
            let median = |f: fn(&(Duration, Duration, Duration)) -> Duration| {
                let mut v: Vec<Duration> = runs.iter().map(f).collect();
                v.sort();
                v[1]
            };
            let (single, grouped, aggregated) = (median(|r| r.0), median(|r| r.1), median(|r| r.2));
            println!("{existing:>15} | {single:>18.1?} | {grouped:>17.1?} | {aggregated:>20.1?} | {fill_time:.1?}");
            rows.push((single, grouped, aggregated));
            drop(handle);
            writer.join().await;
        }
        let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
        println!(
            "ratio large/small: own commit {:.2}, grouped {:.2}, aggregate {:.2}",
            ratio(rows[0].0, rows[1].0),
            ratio(rows[0].1, rows[1].1),
            ratio(rows[0].2, rows[1].2)
        );
    });
}
