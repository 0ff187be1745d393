//! `GET /metrics` and `GET /readyz` on a running daemon: counters move as mail and webhooks are
//! accepted and refused (for several reasons each), alert counters follow alert changes by
//! integration, user and auto, histograms count what they time, and readiness turns 503 as
//! soon as shutdown begins.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Daemon, Smtp, deliver, message};

/// One scrape of `/metrics`.
struct Scrape(String);

impl Scrape {
    async fn of(d: &Daemon) -> Scrape {
        let resp = reqwest::get(format!("http://{}/metrics", d.http))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        Scrape(resp.text().await.unwrap())
    }

    /// The value of one series, written exactly as exposed (`name{labels}`); it must exist.
    fn get(&self, series: &str) -> f64 {
        let prefix = format!("{series} ");
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no series {series} in:\n{}", self.0))
            .parse()
            .unwrap()
    }

    fn rejected(&self, protocol: &str, reason: &str) -> f64 {
        self.get(&format!(
            "siren_messages_rejected_total{{protocol=\"{protocol}\",reason=\"{reason}\"}}"
        ))
    }
}

/// A daemon with e-mail integrations and one webhook integration, `hook` (token "secret").
async fn daemon(extra_smtp: &str, extra_http: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
{extra_smtp}
[http]
listen = "127.0.0.1:0"
{extra_http}
[store]
path = "{}"
[[integrations]]
id = "ops"
type = "email"
addresses = ["ops@alerts.localhost"]
[[integrations]]
id = "db"
type = "email"
addresses = ["db@alerts.localhost"]
[[integrations]]
id = "zabbix"
type = "email"
addresses = ["zabbix@alerts.localhost"]
[[integrations]]
id = "hook"
type = "webhook"
token = "secret"
"#,
        dir.path().join("store").display()
    );
    let config = siren::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let mut d = Daemon::start_config(config).await;
    d.dir = Some(dir);
    d
}

async fn post(d: &Daemon, path: &str, token: Option<&str>, ct: &str, body: Vec<u8>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}{path}", d.http))
        .header("content-type", ct)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn hook(d: &Daemon, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/webhooks/hook", d.http))
        .bearer_auth("secret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn smtp_counters_move_as_mail_is_accepted_and_refused() {
    let d = daemon(
        "max_recipients = 2\nmax_message_size = 4096\nmax_line_length = 2000",
        "",
    )
    .await;
    let before = Scrape::of(&d).await;
    assert_eq!(
        before.get("siren_messages_accepted_total{protocol=\"smtp\"}"),
        0.0
    );
    assert_eq!(before.rejected("smtp", "unknown_recipient"), 0.0);

    // Two accepted on one session.
    let mut a = Smtp::greeted(d.smtp).await;
    for i in 0..2 {
        let msg = message(&format!("ok {i}"), &format!("ok{i}@x"));
        let r = a
            .mail("m@example.com", &["ops@alerts.localhost"], &msg)
            .await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
    }
    a.cmd("QUIT", "221").await;

    // Refused recipients, an oversize message, a bad command, an oversize SIZE=.
    let mut b = Smtp::greeted(d.smtp).await;
    b.cmd("EHLO client.test", "250").await;
    b.cmd("MAIL FROM:<m@example.com>", "250").await;
    b.cmd("RCPT TO:<nobody@nowhere.test>", "550 5.1.1").await;
    b.cmd("RCPT TO:<ops@alerts.localhost>", "250").await;
    b.cmd("RCPT TO:<db@alerts.localhost>", "250").await;
    b.cmd("RCPT TO:<zabbix@alerts.localhost>", "452 4.5.3")
        .await;
    b.cmd("DATA", "354").await;
    let line = format!("{}\r\n", "x".repeat(998));
    b.send_raw(line.repeat(6).as_bytes()).await;
    b.cmd(".", "552 5.3.4").await;
    b.cmd("FROB", "500 5.5.2").await;
    b.cmd("MAIL FROM:<m@example.com> SIZE=999999", "552 5.3.4")
        .await;
    b.cmd("QUIT", "221").await;

    // Bare LF in DATA.
    let mut c = Smtp::greeted(d.smtp).await;
    c.start_data("ops@alerts.localhost").await;
    c.send_raw(b"Subject: smuggle\r\n\r\nbody\n.\r\n").await;
    c.expect("521 5.5.2").await;

    // A line over max_line_length.
    let mut e = Smtp::greeted(d.smtp).await;
    e.send_raw("y".repeat(3000).as_bytes()).await;
    e.expect("500 5.5.2").await;

    // One session still open while scraping.
    let _open = Smtp::greeted(d.smtp).await;
    let m = Scrape::of(&d).await;
    // 354 was answered four times: two accepted, one too big, one with a bare LF.
    assert_eq!(
        m.get("siren_messages_received_total{protocol=\"smtp\"}"),
        4.0
    );
    assert_eq!(
        m.get("siren_messages_accepted_total{protocol=\"smtp\"}"),
        2.0
    );
    assert_eq!(m.rejected("smtp", "unknown_recipient"), 1.0);
    assert_eq!(m.rejected("smtp", "recipients"), 1.0);
    assert_eq!(m.rejected("smtp", "size"), 2.0);
    assert_eq!(m.rejected("smtp", "protocol"), 1.0);
    assert_eq!(m.rejected("smtp", "bare_lf"), 1.0);
    assert_eq!(m.rejected("smtp", "line_length"), 1.0);
    assert_eq!(m.rejected("smtp", "store_failure"), 0.0);
    assert_eq!(m.get("siren_smtp_data_reply_seconds_count"), 2.0);
    assert!(m.get("siren_smtp_data_reply_seconds_sum") > 0.0);
    assert_eq!(
        m.get("siren_smtp_data_reply_seconds_bucket{le=\"+Inf\"}"),
        2.0
    );
    assert_eq!(m.get("siren_smtp_sessions_total"), 5.0);
    assert!(m.get("siren_smtp_sessions_open") >= 1.0);
    // The writer timed its groups: the two messages, and the resolver's pass at start.
    let commits = m.get("siren_store_commit_seconds_count");
    assert!(commits >= 1.0);
    assert_eq!(m.get("siren_store_commit_group_size_count"), commits);
    assert!(m.get("siren_store_commit_group_size_sum") >= 2.0);
    assert_eq!(
        m.get("siren_alerts_created_total{integration=\"ops\"}"),
        2.0
    );
    d.stop().await;
}

#[tokio::test]
async fn webhook_counters_move_as_requests_are_accepted_and_refused() {
    let d = daemon("", "max_body_size = 1024").await;
    let json = "application/json";
    hook(
        &d,
        json!({"event_type": "create", "Id": "w1", "Title": "one"}),
    )
    .await;
    let body = br#"{"event_type": "create""#.to_vec();
    assert_eq!(
        post(&d, "/webhooks/hook", Some("secret"), json, body).await,
        400
    );
    // A payload the adapter cannot read (an array as Id; a non-string event_type is `other`
    // since issue 14, as PagerTree reads it).
    let body = br#"{"event_type": "create", "Id": [5]}"#.to_vec();
    assert_eq!(
        post(&d, "/webhooks/hook", Some("secret"), json, body).await,
        400
    );
    assert_eq!(
        post(&d, "/webhooks/hook", Some("wrong"), json, b"{}".to_vec()).await,
        401
    );
    assert_eq!(
        post(&d, "/webhooks/nope", Some("secret"), json, b"{}".to_vec()).await,
        404
    );
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(2000)).into_bytes();
    assert_eq!(
        post(&d, "/webhooks/hook", Some("secret"), json, big).await,
        413
    );
    let text = b"hello".to_vec();
    assert_eq!(
        post(&d, "/webhooks/hook", Some("secret"), "text/plain", text).await,
        415
    );

    let m = Scrape::of(&d).await;
    assert_eq!(
        m.get("siren_messages_received_total{protocol=\"http\"}"),
        7.0
    );
    assert_eq!(
        m.get("siren_messages_accepted_total{protocol=\"http\"}"),
        1.0
    );
    assert_eq!(m.rejected("http", "bad_json"), 1.0);
    assert_eq!(m.rejected("http", "bad_payload"), 1.0);
    assert_eq!(m.rejected("http", "unauthorized"), 1.0);
    assert_eq!(m.rejected("http", "not_found"), 1.0);
    assert_eq!(m.rejected("http", "too_large"), 1.0);
    assert_eq!(m.rejected("http", "unsupported_media_type"), 1.0);
    assert_eq!(m.get("siren_webhook_reply_seconds_count"), 1.0);
    assert!(m.get("siren_webhook_reply_seconds_sum") > 0.0);
    assert_eq!(
        m.get("siren_messages_received_total{protocol=\"smtp\"}"),
        0.0
    );
    d.stop().await;
}

#[tokio::test]
async fn alert_counters_follow_creates_aggregation_and_who_resolved() {
    let d = daemon("", "").await;
    // E-mail: the same Message-ID twice is one alert, aggregated once.
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("disk", "disk@x"),
    )
    .await;
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("disk", "disk@x"),
    )
    .await;
    let (_, list) = d.get("/api/v1/alerts?integration=ops").await;
    let id = list["alerts"][0]["id"].as_str().unwrap().to_string();
    // A user acknowledges, then resolves it.
    let client = reqwest::Client::new();
    for action in ["acknowledge", "resolve"] {
        let resp = client
            .post(format!("http://{}/api/v1/alerts/{id}/{action}", d.http))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    // A webhook creates, acknowledges and resolves its own alert; a resolve for an unknown id
    // changes nothing and counts nothing.
    for event in ["create", "acknowledge", "resolve"] {
        hook(&d, json!({"event_type": event, "Id": "w1", "Title": "w"})).await;
    }
    let r = hook(&d, json!({"event_type": "resolve", "Id": "unknown"})).await;
    assert_eq!(r["results"][0]["outcome"], "ignored");

    let m = Scrape::of(&d).await;
    assert_eq!(
        m.get("siren_alerts_created_total{integration=\"ops\"}"),
        1.0
    );
    assert_eq!(
        m.get("siren_alerts_aggregated_total{integration=\"ops\"}"),
        1.0
    );
    assert_eq!(
        m.get("siren_alerts_acknowledged_total{integration=\"ops\",by=\"user\"}"),
        1.0
    );
    assert_eq!(
        m.get("siren_alerts_resolved_total{integration=\"ops\",by=\"user\"}"),
        1.0
    );
    assert_eq!(
        m.get("siren_alerts_created_total{integration=\"hook\"}"),
        1.0
    );
    assert_eq!(
        m.get("siren_alerts_acknowledged_total{integration=\"hook\",by=\"integration\"}"),
        1.0
    );
    assert_eq!(
        m.get("siren_alerts_resolved_total{integration=\"hook\",by=\"integration\"}"),
        1.0
    );
    assert!(
        !m.0.contains("by=\"auto\""),
        "nothing was auto-resolved:\n{}",
        m.0
    );
    d.stop().await;
}

/// An overdue alert resolved by the writer's auto-resolve job (what the resolver timer sends at
/// the deadline; its timing is tested in `alerts`) counts as resolved by `auto`.
#[tokio::test]
async fn auto_resolve_is_counted_by_auto() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\nauto_resolve = \"15m\"\n",
        dir.path().join("store").display()
    );
    let config = siren::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let mut d = Daemon::start_config(config).await;
    d.dir = Some(dir);
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("stale", "stale@x"),
    )
    .await;
    let series = "siren_alerts_resolved_total{integration=\"ops\",by=\"auto\"}";
    assert!(!Scrape::of(&d).await.0.contains(series));
    let later = std::time::SystemTime::now() + Duration::from_secs(16 * 60);
    d.writer.auto_resolve(later).await.unwrap();
    assert_eq!(Scrape::of(&d).await.get(series), 1.0);
    let (_, body) = d.get("/api/v1/alerts").await;
    assert_eq!(body["alerts"][0]["resolved_by"], "auto");
    d.stop().await;
}

#[tokio::test]
async fn store_failures_are_counted() {
    let d = daemon("", "").await;
    d.writer.inject_failure(true);
    let mut c = Smtp::greeted(d.smtp).await;
    let r = c
        .mail(
            "m@example.com",
            &["ops@alerts.localhost"],
            &message("x", "f@x"),
        )
        .await;
    assert!(r.starts_with("451 4.3.0"), "{r}");
    let body = json!({"event_type": "create", "Id": "f"})
        .to_string()
        .into_bytes();
    let status = post(
        &d,
        "/webhooks/hook",
        Some("secret"),
        "application/json",
        body,
    )
    .await;
    assert_eq!(status, 503);
    let m = Scrape::of(&d).await;
    assert_eq!(m.get("siren_store_writable"), 0.0, "writes are failing");
    d.writer.inject_failure(false);
    let m = Scrape::of(&d).await;
    assert_eq!(m.rejected("smtp", "store_failure"), 1.0);
    assert_eq!(m.rejected("http", "store_failure"), 1.0);
    // The first failed commit; the webhook after it was refused before a commit was tried.
    assert!(m.get("siren_store_commit_failures_total") >= 1.0);
    assert_eq!(
        m.get("siren_messages_accepted_total{protocol=\"smtp\"}"),
        0.0
    );
    d.stop().await;
}

#[tokio::test]
async fn sessions_over_the_cap_are_counted() {
    let d = daemon("max_sessions = 1", "").await;
    let _held = Smtp::greeted(d.smtp).await;
    let mut over = Smtp::connect(d.smtp).await;
    over.expect("421 4.3.2").await;
    let m = Scrape::of(&d).await;
    assert_eq!(m.rejected("smtp", "session_cap"), 1.0);
    assert_eq!(m.get("siren_smtp_sessions_open"), 1.0);
    d.stop().await;
}

#[tokio::test]
async fn metrics_and_readyz_need_no_token_while_the_api_does() {
    let d = daemon("", "api_token = \"api-secret\"").await;
    let (status, _) = d.get("/api/v1/alerts").await;
    assert_eq!(status, 401);
    let (status, body) = d.get("/readyz").await;
    assert_eq!((status, body), (200, json!({"ready": true})));
    let m = Scrape::of(&d).await;
    assert_eq!(m.get("siren_outbox_depth"), 0.0);
    d.stop().await;
}

#[tokio::test]
async fn readyz_turns_503_once_shutdown_begins_and_metrics_stay_up_while_draining() {
    let mut d = daemon("", "").await;
    let (status, body) = d.get("/readyz").await;
    assert_eq!((status, body), (200, json!({"ready": true})));

    // One client mid-transaction keeps the drain going; an idle one is told 421 when the
    // shutdown begins, which is the moment to look.
    let mut busy = Smtp::greeted(d.smtp).await;
    busy.start_data("ops@alerts.localhost").await;
    let mut idle = Smtp::greeted(d.smtp).await;
    idle.cmd("EHLO client.test", "250").await;
    d.begin_stop();
    idle.expect("421 4.3.0").await;

    let (status, body) = d.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    let m = Scrape::of(&d).await;
    assert_eq!(m.rejected("smtp", "shutdown"), 1.0);

    // The transaction in flight still completes, and the daemon then stops.
    busy.send_raw(&message("last", "last@x")).await;
    busy.cmd(".", "250 2.0.0").await;
    d.finished().await;
    assert!(
        std::net::TcpStream::connect(d.http).is_err(),
        "HTTP closed after the drain"
    );
}

/// Issue 12: while writes fail, `/readyz` says so with the reason (SMTP 451, HTTP 503), and
/// it is ready again by itself once writes work: no restart.
#[tokio::test]
async fn readyz_is_503_with_the_reason_while_writes_fail_and_ready_again_once_healed() {
    let d = daemon("", "").await;
    d.writer.inject_failure(true);
    let mut c = Smtp::greeted(d.smtp).await;
    let r = c
        .mail(
            "m@example.com",
            &["ops@alerts.localhost"],
            &message("x", "h1@x"),
        )
        .await;
    assert!(r.starts_with("451 4.3.0"), "{r}");
    let (status, body) = d.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("store cannot write"),
        "{body}"
    );
    assert_eq!(Scrape::of(&d).await.get("siren_store_writable"), 0.0);
    d.writer.inject_failure(false);
    // The writer tries to heal every second, and at once when a write comes.
    c.cmd("RSET", "250").await;
    let r = c
        .mail(
            "m@example.com",
            &["ops@alerts.localhost"],
            &message("x", "h2@x"),
        )
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let (status, body) = d.get("/readyz").await;
    assert_eq!((status, body), (200, json!({"ready": true})));
    assert_eq!(Scrape::of(&d).await.get("siren_store_writable"), 1.0);
    d.stop().await;
}

/// Issue 7: a webhook request failing authentication is counted, and costs nothing durable.
#[tokio::test]
async fn unauthenticated_webhooks_are_counted_and_not_stored() {
    let d = daemon("", "").await;
    for _ in 0..3 {
        let status = post(
            &d,
            "/webhooks/hook",
            Some("wrong"),
            "application/json",
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(status, 401);
    }
    assert_eq!(Scrape::of(&d).await.rejected("http", "unauthorized"), 3.0);
    assert!(d.logs("hook").await.is_empty(), "no log entry");
    d.stop().await;
}
