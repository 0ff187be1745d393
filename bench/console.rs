//! The web console's pages over a store of 10,000 alerts (SIREN_BENCH_ALERTS=N changes it):
//! the daemon on 127.0.0.1:0, filled through the writer, then each page fetched over HTTP by a
//! real client, one request at a time. Prints the median, p99 and maximum per page; asserts
//! nothing. Run: `cargo bench --bench console`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use siren::domain::Urgency;
use siren::store::{Action, AlertRequest, NewLog, Source, UserChange};

const ROUNDS: usize = 200;
const BATCH: usize = 1_000;

fn config(store: &Path) -> siren::Config {
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [store]\npath = \"{}\"\n[logs]\nmax_entries = 1000000\n\
         [[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\n\
         [[integrations]]\nid = \"custom\"\ntype = \"webhook\"\n",
        store.display()
    );
    siren::Config::parse(&text, Path::new("bench.toml")).expect("bench config")
}

fn input(n: usize) -> NewLog {
    let (integration, title) = if n.is_multiple_of(3) {
        ("custom", format!("Custom Data - deploy check {n} failed"))
    } else {
        (
            "ops",
            format!("** PROBLEM Service Alert: web{n:06}/HTTP is CRITICAL **"),
        )
    };
    NewLog {
        integration: integration.into(),
        received_at: SystemTime::now(),
        source: Source::Http,
        remote_addr: "127.0.0.1:9".into(),
        data: serde_json::json!({ "Title": title, "n": n }),
        alert: Some(AlertRequest {
            action: Action::Create,
            thirdparty_id: format!("bench-{n}"),
            dedup_keys: Vec::new(),
            title,
            description: format!("Connection refused on port 80 of host {n}"),
            urgency: Urgency::High,
            aggregate: None,
            auto_resolve: None,
            fold: Default::default(),
        }),
        outcome: None,
        error: None,
        raw: Arc::from(format!("{{\"n\": {n}}}").into_bytes()),
        email: None,
    }
}

struct Figures {
    median: Duration,
    p99: Duration,
    max: Duration,
    bytes: usize,
}

async fn measure(client: &reqwest::Client, url: &str) -> Figures {
    let mut times = Vec::with_capacity(ROUNDS);
    let mut bytes = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let resp = client.get(url).send().await.expect("request");
        assert_eq!(resp.status(), 200, "{url}");
        bytes = resp.bytes().await.expect("body").len();
        times.push(start.elapsed());
    }
    times.sort();
    Figures {
        median: times[ROUNDS / 2],
        p99: times[ROUNDS * 99 / 100],
        max: times[ROUNDS - 1],
        bytes,
    }
}

fn main() {
    let n: usize = std::env::var("SIREN_BENCH_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = siren::App::build(config(&dir.path().join("store")))
            .await
            .expect("daemon starts");
        let http = app.http_addr();
        let writer = app.writer();
        let fill = Instant::now();
        let mut ids = Vec::new();
        for start in (0..n).step_by(BATCH) {
            let batch = (start..(start + BATCH).min(n)).map(input).collect();
            let receipts = writer.commit(batch).await.expect("fill commit");
            ids.extend(receipts.iter().filter_map(|r| r.alert_id));
        }
        // Some of every status, as in a store that has been used.
        for (i, id) in ids.iter().enumerate() {
            let change = match i % 10 {
                0..6 => Some(UserChange::Resolve),
                6 => Some(UserChange::Acknowledge),
                _ => None,
            };
            if let Some(c) = change {
                writer
                    .change(*id, c, SystemTime::now())
                    .await
                    .expect("change");
            }
        }
        println!(
            "console bench: {n} alerts ({} ops, {} custom) filled in {:.1?}",
            n - n.div_ceil(3),
            n.div_ceil(3),
            fill.elapsed()
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        let middle = ids[ids.len() / 2];
        let pages = [
            ("/", "the alert list, first page (50)"),
            ("/alert-rows", "its rows, as the script polls them"),
            ("/?status=open", "open alerts"),
            (
                "/?integration=custom&status=resolved",
                "one integration's resolved",
            ),
            ("/?q=web000124/http", "title search, one match (reads all)"),
            ("/?q=no-such-title", "title search, no match (reads all)"),
            ("/?limit=1000", "one page of 1,000"),
            (
                &format!("/alerts/{middle}") as &str,
                "one alert with its timeline",
            ),
            ("/integrations", "integrations with 24 h counts"),
            ("/integrations/ops/logs", "an integration's log (50)"),
        ];
        println!(
            "{:<42} {:>9} {:>9} {:>9} {:>9}",
            "page", "median", "p99", "max", "bytes"
        );
        for (path, what) in pages {
            let f = measure(&client, &format!("http://{http}{path}")).await;
            println!(
                "{:<42} {:>9.2?} {:>9.2?} {:>9.2?} {:>9}  {what}",
                path, f.median, f.p99, f.max, f.bytes
            );
        }
        let _ = stop.send(());
        daemon.await.expect("daemon task").expect("daemon stops");
    });
}
