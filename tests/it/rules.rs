//! E-mail rules over SMTP: the example configuration's rules make a Nagios RECOVERY, a Zabbix
//! "Resolved" and an Alertmanager resolved notification resolve the alert their problem created;
//! `drop`, `ignore` and `acknowledge` rules do what the log says.

use std::path::{Path, PathBuf};

use serde_json::Value;
use siren::Config;

use crate::helpers::{Daemon, deliver};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `config/siren.toml` as shipped, listening on port 0 with its store in `store`.
fn example_config(store: &Path) -> Config {
    let path = root().join("config/siren.toml");
    let mut t: toml::Table = std::fs::read_to_string(&path)
        .unwrap()
        .parse()
        .expect("example config is TOML");
    let mut set = |table: &str, key: &str, value: toml::Value| {
        t.get_mut(table)
            .and_then(toml::Value::as_table_mut)
            .expect("the example has the table")
            .insert(key.into(), value);
    };
    set(
        "smtp",
        "listen",
        toml::Value::Array(vec!["127.0.0.1:0".into()]),
    );
    set("http", "listen", "127.0.0.1:0".into());
    set("store", "path", store.display().to_string().into());
    Config::parse(&toml::to_string(&t).unwrap(), &path).expect("example config is valid")
}

async fn start_example() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_config(example_config(&dir.path().join("store"))).await;
    d.dir = Some(dir);
    d
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(root().join("samples").join(name)).unwrap()
}

async fn alert(d: &Daemon, id: &Value) -> Value {
    let (status, body) = d
        .get(&format!(
            "/api/v1/alerts/{}",
            id.as_str().expect("an alert id")
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn alerts(d: &Daemon, integration: &str) -> Vec<Value> {
    let (status, body) = d
        .get(&format!("/api/v1/alerts?integration={integration}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["alerts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn nagios_recovery_resolves_its_problem_alert() {
    let d = start_example().await;
    let to = &["ops@alerts.localhost"];
    deliver(d.smtp, to, &sample("nagios-problem.eml")).await;
    let created = d.logs("ops").await[0].clone();
    assert_eq!(created["outcome"], "created", "{created}");
    assert_eq!(created["data"]["rule"], 0);
    let problem = alert(&d, &created["alert_id"]).await;
    assert_eq!(problem["thirdparty_id"], "web01/HTTP");
    assert_eq!(problem["status"], "open");

    deliver(d.smtp, to, &sample("nagios-recovery.eml")).await;
    let resolved = d.logs("ops").await[0].clone();
    assert_eq!(resolved["outcome"], "resolved", "{resolved}");
    assert_eq!(resolved["data"]["rule"], 1);
    assert_eq!(resolved["alert_id"], created["alert_id"]);
    let problem = alert(&d, &created["alert_id"]).await;
    assert_eq!(problem["status"], "resolved", "{problem}");
    assert_eq!(problem["resolved_by"], "integration");

    // A second recovery finds nothing unresolved; the next problem opens a new alert.
    deliver(d.smtp, to, &sample("nagios-recovery.eml")).await;
    assert_eq!(d.logs("ops").await[0]["outcome"], "ignored");
    deliver(d.smtp, to, &sample("nagios-problem.eml")).await;
    let again = d.logs("ops").await[0].clone();
    assert_eq!(again["outcome"], "created");
    assert_ne!(again["alert_id"], created["alert_id"]);
    assert_eq!(alerts(&d, "ops").await.len(), 2);
    d.stop().await;
}

#[tokio::test]
async fn zabbix_resolved_resolves_its_problem_alert() {
    let d = start_example().await;
    let to = &["zabbix@alerts.localhost"];
    deliver(d.smtp, to, &sample("zabbix-problem.eml")).await;
    deliver(d.smtp, to, &sample("zabbix-resolved.eml")).await;
    let logs = d.logs("zabbix").await;
    assert_eq!(
        (&logs[1]["outcome"], &logs[0]["outcome"]),
        (&"created".into(), &"resolved".into()),
        "{logs:?}"
    );
    assert_eq!(logs[0]["alert_id"], logs[1]["alert_id"]);
    let a = alert(&d, &logs[1]["alert_id"]).await;
    assert_eq!(a["status"], "resolved", "{a}");
    assert_eq!(
        a["thirdparty_id"],
        "20240312031422.3385217.23661@zabbix.example.com"
    );
    d.stop().await;
}

/// An Alertmanager notification as its `email_configs` with the `headers` of docs/wiring.md sends it.
fn alertmanager_mail(status: &str, group: &str, n: u32) -> Vec<u8> {
    let subject = match status {
        "firing" => "[FIRING:1] Down (db01 critical)",
        _ => "[RESOLVED] Down (db01 critical)",
    };
    format!(
        "From: alertmanager@example.com\r\nTo: prometheus@alerts.localhost\r\n\
         Subject: {subject}\r\nMessage-Id: <{n}.am@alertmanager-0>\r\n\
         X-Alertmanager-Group: {group}\r\nX-Alertmanager-Status: {status}\r\n\
         Content-Type: text/html; charset=UTF-8\r\n\r\n<p>{status}</p>\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn alertmanager_group_headers_resolve_the_group_alert() {
    let d = start_example().await;
    let to = &["prometheus@alerts.localhost"];
    let group = "siren-email/alertname=Down;";
    deliver(d.smtp, to, &alertmanager_mail("firing", group, 1)).await;
    // A repeat notification of the same group folds in.
    deliver(d.smtp, to, &alertmanager_mail("firing", group, 2)).await;
    deliver(d.smtp, to, &alertmanager_mail("resolved", group, 3)).await;
    let logs = d.logs("prometheus").await;
    let outcomes: Vec<&str> = logs
        .iter()
        .rev()
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["created", "aggregated", "resolved"], "{logs:?}");
    let a = alert(&d, &logs[2]["alert_id"]).await;
    assert_eq!(a["thirdparty_id"], group);
    assert_eq!(
        (&a["status"], &a["dedup_count"]),
        (&"resolved".into(), &1.into())
    );
    d.stop().await;
}

/// One email integration with drop, ignore, create and acknowledge rules.
fn rules_config(store: &Path) -> Config {
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
[http]
listen = "127.0.0.1:0"
[store]
path = "{}"

[[integrations]]
id = "ops"
type = "email"
addresses = ["ops@alerts.localhost"]

[[integrations.rules]]
subject = '(?i)^\[test\]'
action = "drop"

[[integrations.rules]]
from = '@noise\.example\.com$'
action = "ignore"

[[integrations.rules]]
subject = '^PROBLEM (?P<id>\S+)'
action = "create"

[[integrations.rules]]
subject = '^ACK (?P<id>\S+)'
headers.x-ack-by = '.'
action = "acknowledge"
"#,
        store.display()
    );
    Config::parse(&text, Path::new("rules.toml")).expect("rules config is valid")
}

fn mail(from: &str, subject: &str, extra_headers: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: ops@alerts.localhost\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\n{extra_headers}\r\nbody\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn drop_ignore_and_acknowledge_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_config(rules_config(&dir.path().join("store"))).await;
    let to = &["ops@alerts.localhost"];
    let last = || async { d.logs("ops").await[0].clone() };

    // drop: an alert with status dropped; a repeat folds into it and stays dropped.
    deliver(
        d.smtp,
        to,
        &mail("m@example.com", "[TEST] disk", "", "t1@x"),
    )
    .await;
    let dropped = last().await;
    assert_eq!(dropped["outcome"], "dropped", "{dropped}");
    let a = alert(&d, &dropped["alert_id"]).await;
    assert_eq!(a["status"], "dropped");
    deliver(
        d.smtp,
        to,
        &mail("m@example.com", "[test] disk", "", "t1@x"),
    )
    .await;
    assert_eq!(last().await["outcome"], "aggregated");
    let a = alert(&d, &dropped["alert_id"]).await;
    assert_eq!(
        (&a["status"], &a["dedup_count"]),
        (&"dropped".into(), &1.into())
    );

    // ignore: logged, no alert, even though a later rule would create one.
    deliver(
        d.smtp,
        to,
        &mail("bot@noise.example.com", "PROBLEM db01", "", "n1@x"),
    )
    .await;
    let ignored = last().await;
    assert_eq!(ignored["outcome"], "ignored", "{ignored}");
    assert_eq!(ignored["alert_id"], Value::Null);
    assert_eq!(ignored["data"]["rule"], 1);
    assert_eq!(alerts(&d, "ops").await.len(), 1, "only the dropped alert");

    // acknowledge: needs both of its matchers; the id comes from the subject.
    deliver(
        d.smtp,
        to,
        &mail("m@example.com", "PROBLEM db01", "", "p1@x"),
    )
    .await;
    let created = last().await;
    assert_eq!(created["outcome"], "created");
    deliver(d.smtp, to, &mail("m@example.com", "ACK db01", "", "a1@x")).await;
    let unmatched = last().await;
    assert_eq!(
        (&unmatched["outcome"], &unmatched["data"]["rule"]),
        (&"created".into(), &Value::Null),
        "without X-Ack-By no rule matches: {unmatched}"
    );
    deliver(
        d.smtp,
        to,
        &mail("m@example.com", "ACK db01", "X-Ack-By: alice\r\n", "a2@x"),
    )
    .await;
    let acked = last().await;
    assert_eq!(acked["outcome"], "acknowledged", "{acked}");
    assert_eq!(acked["alert_id"], created["alert_id"]);
    let a = alert(&d, &created["alert_id"]).await;
    assert_eq!(
        (&a["status"], &a["thirdparty_id"]),
        (&"acknowledged".into(), &"db01".into())
    );
    d.stop().await;
}
