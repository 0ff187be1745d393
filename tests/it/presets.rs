//! Sender presets over SMTP: each preset's samples, sent by a real client (lettre) in the order
//! the sender would send them, create, acknowledge and resolve the right alert with no rule
//! written by hand; `check-config --explain` prints the rules in force, the preset's included.

use std::path::{Path, PathBuf};
use std::process::Command;

use lettre::address::Envelope;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;
use siren::Config;
use siren::domain::Preset;

use crate::helpers::Daemon;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One e-mail integration per preset: `<preset>` at `<preset>@presets.localhost`.
fn config(store: &Path) -> Config {
    let mut text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"siren.test\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [store]\npath = \"{}\"\n",
        store.display()
    );
    for p in Preset::ALL {
        let name = p.as_str();
        text.push_str(&format!(
            "[[integrations]]\nid = \"{name}\"\ntype = \"email\"\naddresses = [\"{name}@presets.localhost\"]\npreset = \"{name}\"\n"
        ));
    }
    Config::parse(&text, Path::new("presets.toml")).expect("valid config")
}

struct Sender {
    daemon: Daemon,
    mailer: AsyncSmtpTransport<Tokio1Executor>,
}

impl Sender {
    async fn start() -> Sender {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Daemon::start_config(config(&dir.path().join("store"))).await;
        daemon.dir = Some(dir);
        let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(daemon.smtp.port())
            .build();
        Sender { daemon, mailer }
    }

    /// Sends `samples/<file>` to the preset's integration; answers its log entry.
    async fn send(&self, preset: &str, file: &str) -> Value {
        let raw = std::fs::read(root().join("samples").join(file)).unwrap();
        let envelope = Envelope::new(
            Some("monitor@example.com".parse::<Address>().unwrap()),
            vec![format!("{preset}@presets.localhost").parse().unwrap()],
        )
        .unwrap();
        self.mailer
            .send_raw(&envelope, &raw)
            .await
            .unwrap_or_else(|e| panic!("{file} refused: {e}"));
        // The 250 came after the commit: the entry is there.
        self.daemon.logs(preset).await.remove(0)
    }

    async fn alert(&self, log: &Value) -> Value {
        let id = log["alert_id"].as_str().expect("an alert");
        let (status, body) = self.daemon.get(&format!("/api/v1/alerts/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// (preset, sample, outcome, the alert's status after it, its title, which earlier step's
/// alert it is: None for a new one).
type Step = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<usize>,
);

#[tokio::test]
async fn each_presets_mails_create_acknowledge_and_resolve_their_alert() {
    let s = Sender::start().await;
    let grafana = "DiskSpaceLow Infrastructure (db01.example.com:9100 /var/lib/postgresql warning)";
    #[rustfmt::skip]
    let steps: &[Step] = &[
        ("nagios", "nagios-problem.eml", "created", "open", "web01/HTTP is CRITICAL", None),
        ("nagios", "nagios-acknowledgement.eml", "acknowledged", "acknowledged", "web01/HTTP is CRITICAL", Some(0)),
        ("nagios", "nagios-host-down.eml", "created", "open", "db01 is DOWN", None),
        ("nagios", "nagios-recovery.eml", "resolved", "resolved", "web01/HTTP is CRITICAL", Some(0)),
        ("icinga2", "icinga2-problem.eml", "created", "open", "disk /var on db01 is CRITICAL", None),
        ("icinga2", "icinga2-host-down.eml", "created", "open", "Host web02 is DOWN", None),
        ("icinga2", "icinga2-recovery.eml", "resolved", "resolved", "disk /var on db01 is CRITICAL", Some(4)),
        ("zabbix", "zabbix-problem.eml", "created", "open", "High CPU utilization (over 90% for 5m)", None),
        ("zabbix", "zabbix-update-acknowledged.eml", "acknowledged", "acknowledged",
            "High CPU utilization (over 90% for 5m)", Some(7)),
        ("zabbix", "zabbix-resolved.eml", "resolved", "resolved", "High CPU utilization (over 90% for 5m)", Some(7)),
        ("monit", "monit.eml", "created", "open", "Resource limit matched nginx on web01.example.com", None),
        ("monit", "monit-does-not-exist.eml", "created", "open", "Does not exist php-fpm on web01.example.com", None),
        ("monit", "monit-exists.eml", "resolved", "resolved", "Does not exist php-fpm on web01.example.com", Some(11)),
        ("monit", "monit-resource-succeeded.eml", "resolved", "resolved",
            "Resource limit matched nginx on web01.example.com", Some(10)),
        ("alertmanager", "alertmanager.eml", "created", "open", "InstanceDown (node critical)", None),
        ("alertmanager", "alertmanager-resolved.eml", "resolved", "resolved", "InstanceDown (node critical)", Some(14)),
        ("grafana", "grafana.eml", "created", "open", grafana, None),
        ("grafana", "grafana-resolved.eml", "resolved", "resolved", grafana, Some(16)),
        ("cron", "cron-report.eml", "created", "open", "Cron <root@db01> /usr/local/bin/backup.sh", None),
        ("cron", "cron-report.eml", "aggregated", "open", "Cron <root@db01> /usr/local/bin/backup.sh", Some(18)),
        // Auto-Submitted: auto-generated and Precedence: bulk, as cron sends: an alert.
        ("cron", "anacron-daily.eml", "created", "open", "Anacron job 'cron.daily' on db01", None),
        ("smartd", "smartd-email-test.eml", "dropped", "dropped", "SMART error (EmailTest) detected on host: db01", None),
        ("smartd", "smartd-pending-sectors.eml", "created", "open",
            "/dev/sdb [SAT], 8 Currently unreadable (pending) sectors on db01", None),
        ("smartd", "smartd-pending-sectors.eml", "aggregated", "open",
            "/dev/sdb [SAT], 8 Currently unreadable (pending) sectors on db01", Some(22)),
        ("apcupsd", "apcupsd-onbattery.eml", "created", "open", "nas01 UPS rack-a Power Failure !!!", None),
        ("apcupsd", "apcupsd-offbattery.eml", "resolved", "resolved", "nas01 UPS rack-a Power Failure !!!", Some(24)),
    ];
    let mut alert_ids: Vec<Value> = Vec::new();
    for (n, &(preset, file, outcome, status, title, same_as)) in steps.iter().enumerate() {
        let log = s.send(preset, file).await;
        assert_eq!(log["outcome"], outcome, "step {n} {file}: {log}");
        let alert = s.alert(&log).await;
        assert_eq!(alert["status"], status, "step {n} {file}: {alert}");
        assert_eq!(alert["title"], title, "step {n} {file}");
        match same_as {
            Some(k) => assert_eq!(
                alert["id"], alert_ids[k],
                "step {n} {file} is step {k}'s alert"
            ),
            None => assert!(
                !alert_ids.contains(&alert["id"]),
                "step {n} {file}: a new alert"
            ),
        }
        if status == "resolved" {
            assert_eq!(alert["resolved_by"], "integration", "step {n} {file}");
        }
        alert_ids.push(alert["id"].clone());
    }
    s.daemon.stop().await;
}

/// `siren check-config --explain ID` on a file.
fn explain(config: &Path, id: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_siren"))
        .args(["--config"])
        .arg(config)
        .args(["check-config", "--explain", id])
        .output()
        .expect("run siren check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explain_prints_own_rules_then_the_presets_and_where_templates_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("siren.toml");
    std::fs::write(
        &path,
        r#"
[[integrations]]
id = "zabbix"
type = "email"
addresses = ["zabbix@alerts.localhost"]
preset = "zabbix"
description = "{{data.text}}"

[[integrations.rules]]
subject = '^Problem: .*staging'
action = "drop"
"#,
    )
    .unwrap();
    let (code, out, err) = explain(&path, "zabbix");
    assert_eq!(code, 0, "{err}");
    let want = [
        "integration zabbix (email), \"zabbix\"",
        "  addresses            zabbix@alerts.localhost",
        "  title                {{#if (matchRegex data.subject \"^Problem: .\")}}{{extract data.subject \"^Problem: (.+)$\"}}{{else}}{{data.subject}}{{/if}}    (preset zabbix)",
        "  description          {{data.text}}    (own)",
        "  preset               zabbix",
        "  guard                auto-replies, delivery reports and Siren's own mail are ignored",
        "    [0] own",
        "        subject = '^Problem: .*staging'",
        "        => drop, id = the default (References, In-Reply-To, Message-ID)",
        "    [1] preset zabbix",
        "        subject = '^Problem: '",
        "    [3] preset zabbix",
        "        text = '\\backnowledged\\b[^\\n]* problem at '",
        "        => acknowledge, id = the default (References, In-Reply-To, Message-ID)",
        "    [4] preset zabbix",
        "        => ignore (logged, no alert)",
    ];
    for line in want {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    assert!(!out.contains("[5]"), "zabbix has four rules:\n{out}");
    let (code, _, err) = explain(&path, "nope");
    assert_eq!(code, 1);
    assert_eq!(err, "siren: no integration \"nope\" in the configuration\n");
}
