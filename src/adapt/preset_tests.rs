//! Every preset over realistic samples of its sender's default mails (`samples/`), and over
//! the variants its comments name: the action, the third-party id, the rule and the title.

use std::path::Path;

use crate::Config;
use crate::adapt::email::adapt;
use crate::domain::{Action, Integration, Preset};
use crate::email::{EmailData, Envelope, parse};

/// One e-mail integration per preset, `<preset>` at `<preset>@presets.test`.
fn config() -> Config {
    let mut text = String::new();
    for p in Preset::ALL {
        let name = p.as_str();
        text.push_str(&format!(
            "[[integrations]]\nid = \"{name}\"\ntype = \"email\"\naddresses = [\"{name}@presets.test\"]\npreset = \"{name}\"\n"
        ));
    }
    Config::parse(&text, Path::new("presets.toml")).expect("every preset compiles")
}

fn integration(config: &Config, preset: Preset) -> &Integration {
    config
        .integrations
        .iter()
        .find(|i| i.preset == Some(preset))
        .unwrap()
}

fn sample(name: &str) -> EmailData {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name);
    parse(&std::fs::read(path).unwrap(), Envelope::default())
}

fn mail(subject: &str, body: &str) -> EmailData {
    let raw = format!(
        "From: x@example.com\r\nTo: ops@x\r\nSubject: {subject}\r\nMessage-ID: <m@x>\r\n\r\n{body}\r\n"
    );
    parse(raw.as_bytes(), Envelope::default())
}

/// (action, third-party id, the index of the preset rule that decided, the title).
fn run(
    config: &Config,
    preset: Preset,
    data: EmailData,
) -> (Action, String, Option<usize>, String) {
    let i = integration(config, preset);
    let event = adapt(data, i);
    let title = config.templates.render(i, &event.data).title;
    (event.action, event.thirdparty_id, event.rule, title)
}

use Action::{Acknowledge, Create, Drop, Other, Resolve};
use Preset::*;

const ZABBIX_EVENT: &str = "20240312031422.3385217.23661@zabbix.example.com";

#[test]
fn presets_over_the_samples() {
    let config = config();
    let grafana_id =
        "DiskSpaceLow Infrastructure (db01.example.com:9100 /var/lib/postgresql warning)";
    #[rustfmt::skip]
    let cases: &[(Preset, &str, Action, &str, usize, &str)] = &[
        (Nagios, "nagios-problem.eml", Create, "web01/HTTP", 0, "web01/HTTP is CRITICAL"),
        (Nagios, "nagios-acknowledgement.eml", Acknowledge, "web01/HTTP", 2, "web01/HTTP is CRITICAL"),
        (Nagios, "nagios-recovery.eml", Resolve, "web01/HTTP", 1, "web01/HTTP is OK"),
        (Nagios, "nagios-host-down.eml", Create, "db01", 0, "db01 is DOWN"),
        (Icinga2, "icinga2-problem.eml", Create, "disk /var on db01", 0, "disk /var on db01 is CRITICAL"),
        (Icinga2, "icinga2-recovery.eml", Resolve, "disk /var on db01", 1, "disk /var on db01 is OK"),
        (Icinga2, "icinga2-host-down.eml", Create, "Host web02", 0, "Host web02 is DOWN"),
        (Zabbix, "zabbix-problem.eml", Create, ZABBIX_EVENT, 0, "High CPU utilization (over 90% for 5m)"),
        (Zabbix, "zabbix-update-acknowledged.eml", Acknowledge, ZABBIX_EVENT, 2,
            "Updated problem in 5m 12s: High CPU utilization (over 90% for 5m)"),
        (Zabbix, "zabbix-resolved.eml", Resolve, ZABBIX_EVENT, 1,
            "Resolved in 12m 3s: High CPU utilization (over 90% for 5m)"),
        (Monit, "monit.eml", Create, "web01.example.com/nginx/Resource limit", 6,
            "Resource limit matched nginx on web01.example.com"),
        (Monit, "monit-resource-succeeded.eml", Resolve, "web01.example.com/nginx/Resource limit", 7,
            "Resource limit succeeded nginx on web01.example.com"),
        (Monit, "monit-does-not-exist.eml", Create, "web01.example.com/php-fpm/Existence", 1,
            "Does not exist php-fpm on web01.example.com"),
        (Monit, "monit-exists.eml", Resolve, "web01.example.com/php-fpm/Existence", 2,
            "Exists php-fpm on web01.example.com"),
        (Alertmanager, "alertmanager.eml", Create, "InstanceDown (node critical)", 3, "InstanceDown (node critical)"),
        (Alertmanager, "alertmanager-resolved.eml", Resolve, "InstanceDown (node critical)", 2,
            "InstanceDown (node critical)"),
        (Grafana, "grafana.eml", Create, grafana_id, 1, grafana_id),
        (Grafana, "grafana-resolved.eml", Resolve, grafana_id, 0, grafana_id),
        (Cron, "cron-report.eml", Create, "Cron <root@db01> /usr/local/bin/backup.sh", 0,
            "Cron <root@db01> /usr/local/bin/backup.sh"),
        (Cron, "anacron-daily.eml", Create, "Anacron job 'cron.daily' on db01", 1, "Anacron job 'cron.daily' on db01"),
        (Smartd, "smartd-pending-sectors.eml", Create, "db01//dev/sdb/CurrentPendingSector", 1,
            "/dev/sdb [SAT], 8 Currently unreadable (pending) sectors on db01"),
        (Smartd, "smartd-email-test.eml", Drop, "20240312020007.71C0D1A0A1@db01.example.com", 0,
            "SMART error (EmailTest) detected on host: db01"),
        (Apcupsd, "apcupsd-onbattery.eml", Create, "nas01/rack-a/power", 0, "nas01 UPS rack-a Power Failure !!!"),
        (Apcupsd, "apcupsd-offbattery.eml", Resolve, "nas01/rack-a/power", 1, "nas01 UPS rack-a Power has returned"),
    ];
    for &(preset, file, action, id, rule, title) in cases {
        let got = run(&config, preset, sample(file));
        // Titles are rendered only for new alerts; here for every case, to check the template.
        assert_eq!(
            got,
            (action, id.to_string(), Some(rule), title.to_string()),
            "{file}"
        );
    }
}

#[test]
fn presets_over_the_other_notifications_they_name() {
    let config = config();
    #[rustfmt::skip]
    let cases: &[(Preset, &str, &str, Action, Option<&str>)] = &[
        (Nagios, "** FLAPPINGSTART Service Alert: web01/HTTP is CRITICAL **", "", Other, None),
        (Nagios, "** DOWNTIMESTART Host Alert: db01 is UP **", "", Other, None),
        (Icinga2, "[ACKNOWLEDGEMENT] disk /var on db01 is CRITICAL!", "", Acknowledge, Some("disk /var on db01")),
        (Icinga2, "[DOWNTIMESTART] Host web02 is UP!", "", Other, None),
        (Zabbix, "Resolved: High CPU utilization", "", Resolve, None),
        (Zabbix, "Updated problem: Disk full", "Admin commented problem at 2024.03.12 03:19:34.", Other, None),
        (Zabbix, "Updated problem in 1h: Disk full",
            "Admin unacknowledged problem at 2024.03.12 03:19:34.", Other, None),
        (Monit, "monit alert --  Timeout nginx", "\tHost:        web01", Create, Some("web01/nginx/Timeout")),
        (Monit, "monit alert --  Timeout recovery nginx", "\tHost:        web01", Resolve, Some("web01/nginx/Timeout")),
        (Monit, "monit alert --  Invalid type /srv", "\tHost:        web01", Create, Some("web01//srv/Type")),
        (Monit, "monit alert --  Type succeeded /srv", "\tHost:        web01", Resolve, Some("web01//srv/Type")),
        (Monit, "monit alert --  Connection failed postfix", "\tHost:        mx1", Create, Some("mx1/postfix/Connection")),
        (Monit, "monit alert --  Connection succeeded postfix", "\tHost:        mx1", Resolve, Some("mx1/postfix/Connection")),
        (Monit, "monit alert --  Link down eth0", "\tHost:        mx1", Create, Some("mx1/eth0/Link")),
        (Monit, "monit alert --  Link up eth0", "\tHost:        mx1", Resolve, Some("mx1/eth0/Link")),
        (Monit, "monit alert --  Action done nginx", "\tHost:        mx1", Other, None),
        (Monit, "monit alert --  Monit instance changed mx1", "\tHost:        mx1", Other, None),
        (Monit, "monit alert --  PID not changed nginx", "\tHost:        mx1", Other, None),
        // A one-off change has no pair: an alert of its own (the Message-ID).
        (Monit, "monit alert --  PID changed nginx", "\tHost:        mx1", Create, None),
        (Grafana, "[FIRING:2, RESOLVED:1] HighLatency api", "", Create, Some("HighLatency api")),
        (Grafana, "[Alerting] Disk usage alert", "", Create, Some("Disk usage alert")),
        (Grafana, "[No Data] Disk usage alert", "", Create, Some("Disk usage alert")),
        (Grafana, "[OK] Disk usage alert", "", Resolve, Some("Disk usage alert")),
        (Smartd, "SMART error (Temperature) detected on host: nas01", "no device line", Create,
            Some("nas01/Temperature")),
        (Apcupsd, "nas01 Power Failure !!!", "", Create, Some("nas01//power")),
        (Apcupsd, "nas01 Power has returned", "", Resolve, Some("nas01//power")),
        (Apcupsd, "nas01 Communications with UPS rack-a lost.", "", Create, Some("nas01/rack-a/communications")),
        (Apcupsd, "nas01 Communications with UPS rack-a restored.", "", Resolve, Some("nas01/rack-a/communications")),
        (Apcupsd, "nas01 Communications with UPS lost", "", Create, Some("nas01//communications")),
        (Apcupsd, "nas01 UPS rack-a battery needs changing NOW.", "", Create, Some("nas01/rack-a/battery")),
    ];
    for &(preset, subject, body, action, id) in cases {
        let (got_action, got_id, _, _) = run(&config, preset, mail(subject, body));
        assert_eq!(got_action, action, "{subject}");
        assert_eq!(got_id, id.unwrap_or("m@x"), "{subject}");
    }
}

#[test]
fn own_rules_and_templates_come_before_the_presets() {
    let text = r#"
[[integrations]]
id = "ops"
type = "email"
addresses = ["ops@x"]
preset = "nagios"
title = "{{data.subject}}"

[[integrations.rules]]
subject = 'staging'
action = "drop"
"#;
    let config = Config::parse(text, Path::new("t.toml")).unwrap();
    let i = &config.integrations[0];
    assert_eq!(i.own_rules, 1);
    assert_eq!(
        i.rules.len(),
        1 + crate::config::presets::compiled(Nagios)
            .unwrap()
            .rules
            .len()
    );
    let e = adapt(
        mail("** PROBLEM Service Alert: staging/HTTP is CRITICAL **", ""),
        i,
    );
    assert_eq!((e.action, e.rule), (Drop, Some(0)));
    // The preset's rules follow, numbered after the own ones.
    let e = adapt(mail("** RECOVERY Host Alert: db01 is UP **", ""), i);
    assert_eq!(
        (e.action, e.thirdparty_id.as_str(), e.rule),
        (Resolve, "db01", Some(2))
    );
    // The integration's own title wins over the preset's.
    let title = config.templates.render(i, &e.data).title;
    assert_eq!(title, "** RECOVERY Host Alert: db01 is UP **");
}

#[test]
fn a_preset_is_for_email_integrations() {
    let text = "[[integrations]]\nid = \"hook\"\ntype = \"webhook\"\npreset = \"grafana\"\n";
    let err = Config::parse(text, Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "t.toml: integrations[hook].preset: only email integrations take a preset"
    );
    let text = "[[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"o@x\"]\npreset = \"nagois\"\n";
    let err = Config::parse(text, Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `nagois`"), "{err}");
    assert!(err.contains("`nagios`, `icinga2`, `zabbix`"), "{err}");
}
