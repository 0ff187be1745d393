//! Fills a store with N existing alerts through the store API (not SMTP), for `bench/run`'s
//! scale figures: large groups, several commits in flight, so 1,000,000 alerts take minutes.
//! Run: `cargo run --release --example fill -- <store path> [alerts, default 1000000]`.
//!
//! The alerts look like real ones: the example configuration's integrations (`ops` Nagios,
//! `zabbix`, `prometheus` Alertmanager e-mail, `custom` and `alertmanager` webhooks), each with
//! its own raw input, distinct third-party ids and titles. Of every 100 alerts, 70 are later
//! resolved and 5 acknowledged by a second input of their integration, and every 10th is
//! repeated once (aggregated), so the store also holds every status and dedup counts. Log
//! retention (`logs.max_entries`, 10,000 per integration) prunes old entries as it goes, as in
//! a store that has run for a long time. No alert has an auto-resolve deadline: in a store this
//! old they would have fired long ago, and a cached store's deadlines would fall due during a
//! later benchmark. Checks every receipt's outcome and fails if one is not what was meant.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use siren::config::LogsConfig;
use siren::domain::Urgency;
use siren::store::{
    Action, AlertRequest, NewLog, Outcome, Receipt, ReopenBounds, Source, Store, Writer,
};

/// New alerts per commit; their follow-ups (repeats, resolves, acknowledges) ride along later.
const BATCH: u64 = 2_000;
/// Commits submitted and not yet answered. The writer folds queued commits into one group.
const IN_FLIGHT: usize = 4;
/// Follow-ups for the alerts of batch `k` go into batch `k + LAG`: by then batch `k` has been
/// answered (at most `IN_FLIGHT` are outstanding), so its alerts exist.
const LAG: u64 = IN_FLIGHT as u64 + 1;

const SERVICES: [&str; 7] = ["HTTP", "SSH", "Disk /var", "Load", "PING", "NTP", "Swap"];

/// What happens to an alert after its creation, drawn from its number.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Resolved,
    Acknowledged,
    Open,
}

fn mix(n: u64) -> u64 {
    // splitmix64: a fixed, well-spread sequence, so a fill is the same every time.
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fate(n: u64) -> Fate {
    match mix(n) % 100 {
        0..70 => Fate::Resolved,
        70..75 => Fate::Acknowledged,
        _ => Fate::Open,
    }
}

fn repeated(n: u64) -> bool {
    (mix(n) / 100).is_multiple_of(10)
}

/// One input about alert `n`: its integration, third-party id, title, description and raw bytes.
struct Input {
    integration: &'static str,
    source: Source,
    thirdparty_id: String,
    title: String,
    description: String,
    urgency: Urgency,
    aggregate: Option<Duration>,
    data: serde_json::Value,
    raw: Vec<u8>,
}

fn input(n: u64, action: Action) -> Input {
    let host = n / SERVICES.len() as u64;
    let service = SERVICES[(n % SERVICES.len() as u64) as usize];
    let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
    let (kind, state) = match action {
        Action::Resolve => ("RECOVERY", "OK"),
        Action::Acknowledge => ("ACKNOWLEDGEMENT", "CRITICAL"),
        _ => ("PROBLEM", "CRITICAL"),
    };
    match n % 10 {
        0..4 => {
            let id = format!("web{host:06}/{service}");
            let title = format!("** {kind} Service Alert: {id} is {state} **");
            let description = format!(
                "***** Nagios *****\n\nNotification Type: {kind}\n\nService: {service}\nHost: \
                 web{host:06}\nAddress: {ip}\nState: {state}\n\nAdditional Info:\n\n\
                 connect to address {ip} and port 80: Connection refused\n"
            );
            let raw = format!(
                "Received: from monitor.example.com (monitor.example.com [192.0.2.10])\r\n\
                 \tby mx1.example.com (Postfix) with ESMTP id {n:X}\r\n\
                 \tfor <ops@alerts.localhost>; Tue, 12 Mar 2024 03:14:22 +0000 (UTC)\r\n\
                 Subject: {title}\r\nTo: <ops@alerts.localhost>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\
                 Message-Id: <20240312031422.{n:X}.{kind}@monitor.example.com>\r\n\
                 Date: Tue, 12 Mar 2024 03:14:22 +0000 (UTC)\r\n\
                 From: nagios <nagios@monitor.example.com>\r\n\r\n{}",
                description.replace('\n', "\r\n")
            );
            Input {
                integration: "ops",
                source: Source::Smtp,
                data: serde_json::json!({"subject": title, "from": "nagios@monitor.example.com"}),
                thirdparty_id: id,
                title,
                description,
                urgency: Urgency::High,
                aggregate: Some(Duration::from_secs(3600)),
                raw: raw.into_bytes(),
            }
        }
        4..6 => {
            let thread = format!("<20240312031422.{n}.23661@zabbix.example.com>");
            let prefix = if action == Action::Resolve {
                "Resolved in 12m 3s"
            } else {
                "Problem"
            };
            let title = format!("{prefix}: High CPU utilization on db{n:07} (over 90% for 5m)");
            let description = format!(
                "Problem started at 03:14:22 on 2024.03.12\nProblem name: High CPU utilization \
                 (over 90% for 5m)\nHost: db{n:07}\nSeverity: Warning\nOperational data: \
                 Current utilization: 97.3 %\nOriginal problem ID: {n}\n"
            );
            let raw = format!(
                "Received: from zabbix.example.com (localhost [127.0.0.1])\r\n\
                 \tby zabbix.example.com (Postfix) with ESMTP id {n:X}\r\n\
                 From: Zabbix <zabbix@zabbix.example.com>\r\nTo: <zabbix@alerts.localhost>\r\n\
                 In-Reply-To: {thread}\r\nDate: Tue, 12 Mar 2024 03:14:24 +0000\r\n\
                 Subject: {title}\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=\"UTF-8\"\r\n\
                 Message-Id: <20240312031424.{n:X}@zabbix.example.com>\r\n\r\n{}",
                description.replace('\n', "\r\n")
            );
            Input {
                integration: "zabbix",
                source: Source::Smtp,
                data: serde_json::json!({"subject": title, "from": "zabbix@zabbix.example.com"}),
                thirdparty_id: thread,
                title,
                description,
                urgency: Urgency::Medium,
                aggregate: None,
                raw: raw.into_bytes(),
            }
        }
        6..8 => {
            let group = format!("team-ops/alertname=NodeDown;instance=node{n:07}:9100;");
            let status = if action == Action::Resolve {
                "resolved"
            } else {
                "firing"
            };
            let title = if action == Action::Resolve {
                format!("[RESOLVED] NodeDown node{n:07}:9100")
            } else {
                format!("[FIRING:1] NodeDown node{n:07}:9100")
            };
            let description = format!(
                "Labels:\n - alertname = NodeDown\n - instance = node{n:07}:9100\n - job = node\n - \
                 severity = critical\nAnnotations:\n - summary = Node node{n:07} is down\n\
                 Source: http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22node%22%7D+%3D%3D+0\n"
            );
            let raw = format!(
                "From: alertmanager@example.com\r\nTo: prometheus@alerts.localhost\r\n\
                 Subject: {title}\r\nX-Alertmanager-Group: {group}\r\n\
                 X-Alertmanager-Status: {status}\r\nMessage-Id: <{n}.{status}@alertmanager>\r\n\
                 Date: Tue, 12 Mar 2024 03:14:24 +0000\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=UTF-8\r\n\r\n{}",
                description.replace('\n', "\r\n")
            );
            Input {
                integration: "prometheus",
                source: Source::Smtp,
                data: serde_json::json!({"subject": title, "from": "alertmanager@example.com"}),
                thirdparty_id: group,
                title,
                description,
                urgency: Urgency::High,
                aggregate: None,
                raw: raw.into_bytes(),
            }
        }
        8 => {
            let id = format!("deploy-check-{n}");
            let title = format!("Custom Data - deploy check {n} failed");
            let event = match action {
                Action::Resolve => "resolve",
                Action::Acknowledge => "acknowledge",
                _ => "create",
            };
            let data = serde_json::json!({
                "event_type": event,
                "Id": id,
                "Title": format!("Deploy check {n}"),
                "Description": format!("Smoke test {n} failed on canary: HTTP 503 from /healthz"),
                "extra": format!("deploy check {n} failed"),
            });
            Input {
                integration: "custom",
                source: Source::Http,
                raw: serde_json::to_vec(&data).unwrap_or_default(),
                description: format!("Smoke test {n} failed on canary: HTTP 503 from /healthz"),
                data,
                thirdparty_id: id,
                title,
                urgency: Urgency::High,
                aggregate: None,
            }
        }
        _ => {
            let fingerprint = format!("{:016x}", mix(n ^ 0x5eed));
            let pod = format!("api-{n:07}-7c9f");
            let status = if action == Action::Resolve {
                "resolved"
            } else {
                "firing"
            };
            let data = serde_json::json!({
                "status": status,
                "labels": {"alertname": "KubePodCrashLooping", "namespace": "prod", "pod": pod,
                           "severity": "warning"},
                "annotations": {"summary": format!("Pod prod/{pod} is crash looping")},
                "startsAt": "2024-03-12T03:14:22Z",
                "fingerprint": fingerprint,
            });
            Input {
                integration: "alertmanager",
                source: Source::Http,
                raw: serde_json::to_vec(&data).unwrap_or_default(),
                description: format!(
                    "Pod prod/{pod} (container api) is restarting 2.1 times / 10 minutes."
                ),
                data,
                thirdparty_id: fingerprint,
                title: format!("KubePodCrashLooping prod/{pod}"),
                urgency: Urgency::Medium,
                aggregate: None,
            }
        }
    }
}

fn new_log(n: u64, action: Action) -> NewLog {
    let i = input(n, action);
    NewLog {
        integration: i.integration.into(),
        received_at: SystemTime::now(),
        source: i.source,
        remote_addr: format!("192.0.2.{}:{}", 10 + n % 200, 30_000 + n % 30_000),
        data: i.data,
        alert: Some(AlertRequest {
            dedup_keys: Vec::new(),
            action,
            thirdparty_id: i.thirdparty_id,
            title: i.title,
            description: i.description,
            urgency: i.urgency,
            aggregate: i.aggregate,
            auto_resolve: None,
            fold: Default::default(),
        }),
        outcome: None,
        error: None,
        raw: Arc::from(i.raw),
        email: None,
    }
}

/// The inputs of batch `k`: its new alerts, then the follow-ups of batch `k - LAG`. Each with
/// the outcome it must come to.
fn batch(k: u64, alerts: u64) -> Vec<(NewLog, Outcome)> {
    let mut out = Vec::new();
    for n in (k * BATCH)..((k + 1) * BATCH).min(alerts) {
        out.push((new_log(n, Action::Create), Outcome::Created));
    }
    if let Some(earlier) = k.checked_sub(LAG) {
        for n in (earlier * BATCH)..((earlier + 1) * BATCH).min(alerts) {
            if repeated(n) {
                out.push((new_log(n, Action::Create), Outcome::Aggregated));
            }
            match fate(n) {
                Fate::Resolved => out.push((new_log(n, Action::Resolve), Outcome::Resolved)),
                Fate::Acknowledged => {
                    out.push((new_log(n, Action::Acknowledge), Outcome::Acknowledged))
                }
                Fate::Open => {}
            }
        }
    }
    out
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: fill <store path> [alerts, default 1000000]");
        std::process::exit(2);
    };
    let alerts: u64 = match args.next().map(|a| a.parse()) {
        None => 1_000_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("fill: the number of alerts: {e}");
            std::process::exit(2);
        }
    };
    // The writer's reopens and its final count of journal bytes, on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let started = Instant::now();
    let outcomes = rt.block_on(async {
        let store = Store::open(&path).expect("open the store");
        // The retention of config/siren.toml, which bench/run's Siren uses.
        let retention = LogsConfig {
            max_entries: 10_000,
            max_age: Duration::from_secs(30 * 86_400),
        };
        // FILL_REOPEN_MIB: the writer's reopen bound (both), to measure what it costs and saves.
        let mut bounds = ReopenBounds::default();
        if let Some(mib) = std::env::var("FILL_REOPEN_MIB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            (bounds.idle, bounds.hard) = (mib << 20, mib << 20);
        }
        let (writer, handle) =
            Writer::spawn_with(store, retention, None, Default::default(), bounds)
                .expect("start the writer");
        let batches = alerts.div_ceil(BATCH);
        let mut pending: VecDeque<tokio::task::JoinHandle<_>> = VecDeque::new();
        // Outcome is not Hash; a handful of kinds.
        let mut outcomes: Vec<(Outcome, u64)> = Vec::new();
        let mut logs = 0u64;
        let mut check = |expected: Vec<Outcome>, receipts: Vec<Receipt>| {
            for (want, r) in expected.into_iter().zip(receipts) {
                let got = r.outcome.expect("an alert request has an outcome");
                assert_eq!(got, want, "log {}: {got:?}, meant {want:?}", r.log_id);
                match outcomes.iter_mut().find(|(o, _)| *o == got) {
                    Some((_, c)) => *c += 1,
                    None => outcomes.push((got, 1)),
                }
            }
        };
        let mut last_report = Instant::now();
        // LAG more batches than there are alerts: the last alerts' follow-ups.
        for k in 0..batches + LAG {
            let (inputs, expected): (Vec<NewLog>, Vec<Outcome>) =
                batch(k, alerts).into_iter().unzip();
            logs += inputs.len() as u64;
            let h = handle.clone();
            pending.push_back(tokio::spawn(async move {
                let receipts = h.commit(inputs).await.expect("commit");
                (expected, receipts)
            }));
            if pending.len() >= IN_FLIGHT {
                let (expected, receipts) = pending.pop_front().unwrap().await.unwrap();
                check(expected, receipts);
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                last_report = Instant::now();
                let done = ((k + 1) * BATCH).min(alerts);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "fill: {done} alerts, {logs} log entries, {secs:.0} s, {:.0} alerts/s",
                    done as f64 / secs
                );
            }
        }
        while let Some(p) = pending.pop_front() {
            let (expected, receipts) = p.await.unwrap();
            check(expected, receipts);
        }
        drop(handle);
        writer.join().await;
        outcomes
    });
    let elapsed = started.elapsed();
    let count = |o| {
        outcomes
            .iter()
            .find(|(k, _)| *k == o)
            .map_or(0, |(_, c)| *c)
    };
    println!(
        "fill: {alerts} alerts ({} resolved, {} acknowledged, {} aggregated inputs) in {:.1} s, \
         {:.0} alerts/s; store {} MiB at {}",
        count(Outcome::Resolved),
        count(Outcome::Acknowledged),
        count(Outcome::Aggregated),
        elapsed.as_secs_f64(),
        alerts as f64 / elapsed.as_secs_f64(),
        dir_size(&path) / (1 << 20),
        path.display()
    );
}
