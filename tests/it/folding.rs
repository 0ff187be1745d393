//! Aggregation keys that survive noise and storm folding, through real clients: e-mails over
//! SMTP (lettre) fold by their normalized subject, webhooks by an `aggregate_key` template; a
//! burst of new alerts past `storm` becomes one storm alert and one page at a real webhook
//! receiver, and its members' resolves resolve it. The storm's end (the rate falls, the
//! window passes) runs at the engine with paused time.

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::{Value, json};
use siren::config::LogsConfig;
use siren::domain::{Storm, Urgency};
use siren::store::{
    Action, AlertRequest, Fold, NewLog, Outcome, ResolvedBy, Source, Status, Store, Writer,
};

use crate::helpers::Daemon;
use crate::hook::{Receiver, alert, result, start};

async fn mail(d: &Daemon, to: &str, subject: &str, id: &str) -> Value {
    let raw = format!(
        "From: monitor@example.com\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}@example.com>\r\n\r\nbody\r\n"
    );
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(d.smtp.port())
        .build();
    let envelope = Envelope::new(
        Some("monitor@example.com".parse().unwrap()),
        vec![to.parse().unwrap()],
    )
    .unwrap();
    mailer.send_raw(&envelope, raw.as_bytes()).await.unwrap();
    let integration = to.split('@').next().unwrap();
    d.logs(integration).await.remove(0)
}

#[tokio::test]
async fn normalized_subjects_fold_and_the_alert_keeps_the_latest_title() {
    let d = start(
        "[[integrations]]\nid = \"disks\"\ntype = \"email\"\naddresses = [\"disks@alerts.localhost\"]\n\
         aggregate = \"1h\"\nnormalize = true\n\
         [[integrations]]\nid = \"plain\"\ntype = \"email\"\naddresses = [\"plain@alerts.localhost\"]\n\
         aggregate = \"1h\"\n",
    )
    .await;
    let to = "disks@alerts.localhost";
    let first = mail(&d, to, "Disk 91% full on db01", "m1").await;
    assert_eq!(first["outcome"], "created");
    let second = mail(&d, to, "Disk 93% full on db01", "m2").await;
    assert_eq!(second["outcome"], "aggregated", "{second}");
    assert_eq!(second["alert_id"], first["alert_id"]);
    let a = alert(&d, &first["alert_id"]).await;
    assert_eq!(a["title"], "Disk 93% full on db01", "the latest title");
    assert_eq!(a["dedup_count"], 1);
    // db02 is another host: another alert. So is another problem on db01.
    let other = mail(&d, to, "Disk 95% full on db02", "m3").await;
    assert_eq!(other["outcome"], "created");
    let inode = mail(&d, to, "Inodes 91% used on db01", "m4").await;
    assert_eq!(inode["outcome"], "created");
    // Without normalize, the exact title window keeps 91% and 93% apart.
    let to = "plain@alerts.localhost";
    mail(&d, to, "Disk 91% full on db01", "p1").await;
    let p2 = mail(&d, to, "Disk 93% full on db01", "p2").await;
    assert_eq!(p2["outcome"], "created");
    d.stop().await;
}

#[tokio::test]
async fn an_aggregate_key_template_decides_what_folds() {
    let d = start(
        "[[integrations]]\nid = \"checks\"\ntype = \"webhook\"\naggregate = \"1h\"\n\
         aggregate_key = \"{{data.host}}/{{data.check}}\"\n",
    )
    .await;
    let create = |id: &str, title: &str, host: &str| json!({"event_type": "create", "Id": id, "Title": title, "host": host, "check": "disk"});
    let r1 = result(d.http, "checks", create("a", "Disk 91% full", "db01")).await;
    assert_eq!(r1["outcome"], "created");
    let r2 = result(d.http, "checks", create("b", "Disk nearly full!", "db01")).await;
    assert_eq!(
        (&r2["outcome"], &r2["alert_id"]),
        (&json!("aggregated"), &r1["alert_id"])
    );
    assert_eq!(
        alert(&d, &r1["alert_id"]).await["title"],
        "Disk nearly full!"
    );
    let r3 = result(d.http, "checks", create("c", "Disk 91% full", "db02")).await;
    assert_eq!(r3["outcome"], "created");
    // A key that cannot render (no `host`) compares the title instead, and the log says why.
    let body =
        json!({"event_type": "create", "Id": "d", "Title": "Disk 91% full", "check": "disk"});
    let r4 = result(d.http, "checks", body).await;
    assert_eq!(
        r4["outcome"], "created",
        "no other alert has this title as its key"
    );
    let log = &d.logs("checks").await[0];
    let error = log["error"].as_str().unwrap();
    assert!(error.starts_with("aggregate_key: "), "{error}");
    assert!(
        error.ends_with("; the title was compared instead"),
        "{error}"
    );
    d.stop().await;
}

#[tokio::test]
async fn a_storm_folds_into_one_alert_and_one_page_and_resolves_with_its_members() {
    let mut hook = Receiver::start().await;
    let d = start(&format!(
        "[[integrations]]\nid = \"zabbix\"\ntype = \"webhook\"\ndestinations = [\"pager\"]\n\
         storm = {{ alerts = 3, within = \"1m\" }}\n{}",
        hook.destination("pager")
    ))
    .await;
    let create = |n: usize| json!({"event_type": "create", "Id": format!("p{n}"), "Title": format!("Host {n} down")});
    let mut results = Vec::new();
    for n in 1..=10 {
        results.push(result(d.http, "zabbix", create(n)).await);
    }
    for r in &results[..3] {
        assert_eq!(r["outcome"], "created", "{r}");
    }
    let storm_id = results[3]["alert_id"].clone();
    for r in &results[3..] {
        assert_eq!(
            (&r["outcome"], &r["alert_id"]),
            (&json!("aggregated"), &storm_id),
            "{r}"
        );
    }
    let storm = alert(&d, &storm_id).await;
    assert_eq!(storm["title"], "Storm: 7 alerts from zabbix in 1m");
    assert_eq!(storm["thirdparty_id"], "siren:storm");
    assert_eq!(
        (&storm["status"], &storm["dedup_count"]),
        (&json!("open"), &json!(6))
    );
    // A member that repeats is no new member.
    let again = result(d.http, "zabbix", create(5)).await;
    assert_eq!(again["alert_id"], storm_id);
    assert_eq!(
        alert(&d, &storm_id).await["title"],
        "Storm: 7 alerts from zabbix in 1m"
    );
    // Four pages: the three alerts before the storm, and the storm.
    let mut pages = Vec::new();
    for _ in 0..4 {
        let got = hook.next().await;
        assert_eq!(
            got["event"], "create",
            "no aggregate event for folded alerts: {got}"
        );
        pages.push(got["alert"]["title"].as_str().unwrap().to_string());
    }
    assert_eq!(pages[..3], ["Host 1 down", "Host 2 down", "Host 3 down"]);
    assert_eq!(pages[3], "Storm: 1 alert from zabbix in 1m");
    // Members resolve; the storm alert stays open until the last of them has.
    let resolve = |n: usize| json!({"event_type": "resolve", "Id": format!("p{n}")});
    for n in 4..10 {
        let r = result(d.http, "zabbix", resolve(n)).await;
        assert_eq!(
            (&r["outcome"], &r["alert_id"]),
            (&json!("resolved"), &storm_id),
            "{r}"
        );
        assert_eq!(alert(&d, &storm_id).await["status"], "open");
    }
    // A second resolve of one member counts once.
    result(d.http, "zabbix", resolve(9)).await;
    assert_eq!(alert(&d, &storm_id).await["status"], "open");
    result(d.http, "zabbix", resolve(10)).await;
    let storm = alert(&d, &storm_id).await;
    assert_eq!(
        (&storm["status"], &storm["resolved_by"]),
        (&json!("resolved"), &json!("integration"))
    );
    let got = hook.next().await;
    assert_eq!(
        (&got["event"], &got["alert"]["id"]),
        (&json!("resolve"), &storm_id),
        "{got}"
    );
    d.stop().await;
}

fn request(tp: &str, storm: Storm) -> NewLog {
    NewLog {
        integration: "zabbix".into(),
        received_at: siren::clock::now(),
        source: Source::Http,
        remote_addr: "127.0.0.1:1".into(),
        data: json!({}),
        alert: Some(AlertRequest {
            action: Action::Create,
            thirdparty_id: tp.into(),
            dedup_keys: Vec::new(),
            title: format!("{tp} down"),
            description: String::new(),
            urgency: Urgency::High,
            aggregate: None,
            auto_resolve: None,
            fold: Fold {
                storm: Some(storm),
                ..Fold::default()
            },
        }),
        outcome: None,
        error: None,
        raw: Arc::from(&b"{}"[..]),
        email: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_storm_ends_when_the_rate_falls_and_its_alert_resolves_after_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let retention = LogsConfig {
        max_entries: 10_000,
        max_age: Duration::from_secs(86400),
    };
    let (writer, handle) =
        Writer::spawn(store.clone(), retention, None, Default::default()).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let resolver = tokio::spawn(siren::resolver::run(handle.clone(), stop.clone()));
    let storm = Storm {
        alerts: 2,
        within: Duration::from_secs(60),
    };
    let send = |tp: &str| {
        let (handle, log) = (handle.clone(), request(tp, storm));
        async move { handle.commit(vec![log]).await.unwrap().remove(0) }
    };
    assert_eq!(send("a").await.outcome, Some(Outcome::Created));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(send("b").await.outcome, Some(Outcome::Created));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let storm_id = send("c").await.alert_id.unwrap();
    assert_eq!(send("d").await.alert_id, Some(storm_id));
    // 55 s later "a" and "b" have left the window but "c" and "d" have not: still a storm.
    tokio::time::sleep(Duration::from_secs(55)).await;
    assert_eq!(send("e").await.alert_id, Some(storm_id));
    // Quiet for a window: the rate fell, new alerts are alerts again ...
    tokio::time::sleep(Duration::from_secs(61)).await;
    let f = send("f").await;
    assert_eq!(f.outcome, Some(Outcome::Created));
    // ... and the storm alert resolved itself a window after its last member.
    let s = store.alert(storm_id).unwrap().unwrap();
    assert_eq!(
        (s.status, s.resolved_by),
        (Status::Resolved, Some(ResolvedBy::Auto))
    );
    assert_eq!(s.title, "Storm: 3 alerts from zabbix in 1m");
    stop.cancel();
    resolver.await.unwrap();
    writer.join().await;
}

#[test]
fn folding_keys_are_checked_with_the_key_and_what_is_allowed() {
    let parse = |keys: &str| {
        let text = format!(
            "[[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@x\"]\n{keys}\n"
        );
        siren::Config::parse(&text, std::path::Path::new("t.toml"))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        ("normalize = true",
            "t.toml: integrations[ops].normalize: needs aggregate: normalizing shapes what the aggregate window compares (e.g. aggregate = \"1h\")"),
        ("aggregate_key = \"{{data.subject}}\"",
            "t.toml: integrations[ops].aggregate_key: needs aggregate: the key is what the aggregate window compares (e.g. aggregate = \"1h\")"),
        ("aggregate = \"1h\"\naggregate_key = \" \"",
            "t.toml: integrations[ops].aggregate_key: must not be empty; leave it out to compare titles"),
        ("storm = { alerts = 0, within = \"1m\" }",
            "t.toml: integrations[ops].storm.alerts: 0 is out of range; allowed: 1 to 10000"),
        ("storm = { alerts = 50, within = \"2d\" }",
            "t.toml: integrations[ops].storm.within: \"2d\" is out of range; allowed: 1s to 1d"),
    ];
    for (keys, want) in cases {
        assert_eq!(parse(keys).unwrap_err(), *want, "{keys}");
    }
    let err = parse("aggregate = \"1h\"\naggregate_key = \"{{#if}}\"").unwrap_err();
    assert!(
        err.starts_with("t.toml: integrations[ops].aggregate_key: "),
        "{err}"
    );
    let err = parse("storm = { alerts = 5 }").unwrap_err();
    assert!(err.contains("missing field `within`"), "{err}");
    assert!(
        parse("aggregate = \"1h\"\nnormalize = true\nstorm = { alerts = 50, within = \"1m\" }")
            .is_ok()
    );
}
