//! Destinations (spec step 8) against real receivers on loopback: an HTTP server (webhook and
//! Slack), an SMTP server (the e-mail smarthost), and a program reading stdin (command).
//! Created and resolved events arrive with the alert; a receiver that is down gets everything
//! once it is back, each alert's events in order; one that always answers 4xx ends
//! dead-lettered after its attempts; a SIGKILLed daemon delivers its pending events after
//! restart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use siren::Config;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::helpers::{Daemon, deliver, http_get, message};
use crate::process::start;

/// One request an HTTP receiver got, and the status it answered.
#[derive(Debug)]
struct Received {
    path: String,
    status: u16,
    headers: HeaderMap,
    body: Value,
}

/// A real HTTP server that records every request and answers `status` (changeable).
struct Receiver {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    got: mpsc::UnboundedReceiver<Received>,
}

#[derive(Clone)]
struct ReceiverState {
    status: Arc<AtomicU16>,
    tx: mpsc::UnboundedSender<Received>,
}

async fn record(
    State(s): State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = s.status.load(Ordering::SeqCst);
    let _ = s.tx.send(Received {
        path: uri.path().to_string(),
        status,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start(status: u16) -> Receiver {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), status)
    }

    fn start_on(listener: TcpListener, status: u16) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let (tx, got) = mpsc::unbounded_channel();
        let status = Arc::new(AtomicU16::new(status));
        let app = Router::new()
            .route("/{*path}", post(record))
            .with_state(ReceiverState {
                status: status.clone(),
                tx,
            });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, status, got }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(30), self.got.recv())
            .await
            .expect("a delivery within 30 s")
            .expect("receiver running")
    }

    /// The next request that was answered with success.
    async fn next_ok(&mut self) -> Received {
        loop {
            let r = self.next().await;
            if r.status < 300 {
                return r;
            }
        }
    }
}

/// A real SMTP server (the smarthost of an e-mail destination): takes every message and
/// hands over its DATA.
async fn smtp_sink() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut lines = BufReader::new(rd).lines();
                wr.write_all(b"220 sink.test ESMTP\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(d) = data.as_mut() {
                        if line == "." {
                            let _ = tx.send(data.take().unwrap());
                            wr.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
                        } else {
                            d.push_str(line.strip_prefix('.').unwrap_or(&line));
                            d.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink.test\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = wr.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    wr.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (addr, rx)
}

/// The test configuration with `ops` (e-mail) sending to `destinations`, defined by `defs`.
fn config_with(store: &Path, destinations: &[&str], defs: &str) -> Config {
    let list = destinations
        .iter()
        .map(|d| format!("\"{d}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"siren.test\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [store]\npath = \"{}\"\n[[integrations]]\nid = \"ops\"\ntype = \"email\"\n\
         addresses = [\"ops@alerts.localhost\"]\nurgency = \"high\"\ndestinations = [{list}]\n{defs}",
        store.display()
    );
    Config::parse(&text, Path::new("test.toml")).expect("valid test config")
}

async fn scrape(addr: SocketAddr) -> String {
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    resp.text().await.unwrap()
}

/// Scrapes /metrics until every series is there, for figures set after a commit's sync.
async fn scrape_until(addr: SocketAddr, series: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = scrape(addr).await;
        let missing: Vec<_> = series
            .iter()
            .filter(|s| !metrics.lines().any(|l| l == **s))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing:?} never in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn post_api(addr: SocketAddr, path: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Waits (up to 10 s, looking every 10 ms) until the daemon's deliveries list in `state`
/// satisfies `done`; returns it.
async fn deliveries_until(
    http: SocketAddr,
    state: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(http, &format!("/api/v1/deliveries?state={state}")).await;
        assert_eq!(status, 200, "{body}");
        let list = body["deliveries"].as_array().unwrap().clone();
        if done(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries never became as expected: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn created_and_resolved_events_reach_webhook_slack_and_email() {
    let dir = tempfile::tempdir().unwrap();
    let mut hook = Receiver::start(202).await;
    let (smarthost, mut mails) = smtp_sink().await;
    let defs = format!(
        "[[destinations]]\nid = \"hook\"\ntype = \"webhook\"\nurl = \"http://{a}/alerts\"\n\
         secret = \"s3cret\"\nheaders = {{ X-Team = \"ops\" }}\n\
         [[destinations]]\nid = \"chat\"\ntype = \"slack\"\nurl = \"http://{a}/slack\"\n\
         [[destinations]]\nid = \"mail\"\ntype = \"email\"\nsmarthost = \"{smarthost}\"\n\
         from = \"siren@alerts.localhost\"\nto = [\"oncall@example.com\"]\n",
        a = hook.addr
    );
    let config = config_with(&dir.path().join("store"), &["hook", "chat", "mail"], &defs);
    let d = Daemon::start_config(config).await;

    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("disk full on db1", "p1@x"),
    )
    .await;
    let mut by_path = std::collections::HashMap::new();
    for _ in 0..2 {
        let r = hook.next_ok().await;
        by_path.insert(r.path.clone(), r);
    }
    let created = &by_path["/alerts"];
    assert_eq!(created.body["event"], "create");
    assert_eq!(created.body["destination"], "hook");
    let alert = &created.body["alert"];
    assert_eq!(alert["title"], "disk full on db1");
    assert_eq!(alert["status"], "open");
    assert_eq!(alert["urgency"], "high");
    assert_eq!(alert["integration"], "ops");
    assert_eq!(alert["thirdparty_id"], "p1@x");
    assert!(
        alert["description"]
            .as_str()
            .unwrap()
            .contains("body of disk full on db1")
    );
    let id = alert["id"].as_str().unwrap().to_string();
    assert_eq!(created.headers["x-team"], "ops");
    assert_eq!(created.headers["x-siren-event"], "create");
    let signature = created.headers["x-siren-signature"].to_str().unwrap();
    assert!(
        signature.starts_with("sha256=") && signature.len() == 71,
        "{signature}"
    );
    let slack = by_path["/slack"].body["text"].as_str().unwrap().to_string();
    assert!(slack.starts_with("*[OPEN]* disk full on db1"), "{slack}");
    assert!(slack.contains("urgency high"), "{slack}");
    assert!(
        slack.contains(&format!("/api/v1/alerts/{id}|alert {id}>")),
        "{slack}"
    );
    let mail = mails.recv().await.unwrap();
    assert!(mail.contains("Subject: [OPEN] disk full on db1"), "{mail}");
    assert!(mail.contains("To: oncall@example.com"), "{mail}");
    assert!(mail.contains("body of disk full on db1"), "{mail}");

    let resolved = post_api(d.http, &format!("/api/v1/alerts/{id}/resolve")).await;
    assert_eq!(resolved["status"], "resolved");
    let mut by_path = std::collections::HashMap::new();
    for _ in 0..2 {
        let r = hook.next_ok().await;
        by_path.insert(r.path.clone(), r);
    }
    let event = &by_path["/alerts"].body;
    assert_eq!(event["event"], "resolve");
    assert_eq!(event["alert"]["id"], id.as_str());
    assert_eq!(event["alert"]["status"], "resolved");
    assert_eq!(event["alert"]["resolved_by"], "user");
    assert!(event["alert"]["resolved_at"].is_string());
    assert!(
        by_path["/slack"].body["text"]
            .as_str()
            .unwrap()
            .starts_with("*[RESOLVED]*")
    );
    let mail = mails.recv().await.unwrap();
    assert!(
        mail.contains("Subject: [RESOLVED] disk full on db1"),
        "{mail}"
    );

    // Delivered means gone from the outbox.
    deliveries_until(d.http, "pending", |l| l.is_empty()).await;
    d.stop().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_everything_in_order_once_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut hook = Receiver::start(503).await;
    let defs = format!(
        "[[destinations]]\nid = \"hook\"\ntype = \"webhook\"\nurl = \"http://{}/alerts\"\n\
         events = [\"create\", \"aggregate\", \"resolve\"]\n\
         retry_initial = \"20ms\"\nretry_max = \"100ms\"\nmax_attempts = 100\n",
        hook.addr
    );
    let d = Daemon::start_config(config_with(&dir.path().join("store"), &["hook"], &defs)).await;
    for n in 0..3 {
        let id = format!("a{n}@x");
        deliver(
            d.smtp,
            &["ops@alerts.localhost"],
            &message(&format!("alert {n}"), &id),
        )
        .await;
    }
    // A repeat of a0 (aggregate), then resolve a0 through the API.
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("alert 0", "a0@x"),
    )
    .await;
    let (_, list) = d.get("/api/v1/alerts?limit=10").await;
    let first = list["alerts"].as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    post_api(d.http, &format!("/api/v1/alerts/{first}/resolve")).await;

    // Down: several attempts fail, and the failures show in the outbox.
    for _ in 0..6 {
        assert_eq!(hook.next().await.status, 503);
    }
    let pending = deliveries_until(d.http, "pending", |l| {
        l.len() == 5 && l.iter().any(|x| x["attempts"].as_u64() >= Some(1))
    })
    .await;
    assert!(
        pending
            .iter()
            .any(|x| x["last_error"].as_str().is_some_and(|e| e.contains("503")))
    );

    let metrics = scrape(d.http).await;
    assert!(
        metrics.lines().any(|l| l == "siren_outbox_depth 5"),
        "{metrics}"
    );
    hook.status.store(202, Ordering::SeqCst);
    let mut got = Vec::new();
    while got.len() < 5 {
        let r = hook.next_ok().await;
        got.push((
            r.body["alert"]["thirdparty_id"]
                .as_str()
                .unwrap()
                .to_string(),
            r.body["event"].as_str().unwrap().to_string(),
            r.body["delivery_id"].as_str().unwrap().to_string(),
        ));
    }
    let events_of = |tp: &str| -> Vec<String> {
        got.iter()
            .filter(|(t, _, _)| t == tp)
            .map(|(_, e, _)| e.clone())
            .collect()
    };
    assert_eq!(
        events_of("a0@x"),
        ["create", "aggregate", "resolve"],
        "{got:?}"
    );
    assert_eq!(events_of("a1@x"), ["create"]);
    assert_eq!(events_of("a2@x"), ["create"]);
    deliveries_until(d.http, "pending", |l| l.is_empty()).await;
    // Nothing delivered twice: every later request (if any) would be a repeat.
    assert!(hook.got.try_recv().is_err(), "a delivery came twice");
    d.stop().await;
}

#[tokio::test]
async fn a_destination_that_always_answers_4xx_ends_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let mut hook = Receiver::start(400).await;
    let defs = format!(
        "[[destinations]]\nid = \"hook\"\ntype = \"webhook\"\nurl = \"http://{}/alerts\"\n\
         retry_initial = \"10ms\"\nretry_max = \"20ms\"\nmax_attempts = 3\n",
        hook.addr
    );
    let d = Daemon::start_config(config_with(&dir.path().join("store"), &["hook"], &defs)).await;
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("never heard", "dead@x"),
    )
    .await;
    for _ in 0..3 {
        let r = hook.next().await;
        assert_eq!((r.status, r.body["event"].as_str()), (400, Some("create")));
    }
    let dead = deliveries_until(d.http, "dead", |l| l.len() == 1).await;
    assert_eq!(dead[0]["destination"], "hook");
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["state"], "dead");
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("HTTP 400"),
        "{dead:?}"
    );
    assert!(dead[0]["dead_at"].is_string());
    deliveries_until(d.http, "pending", |l| l.is_empty()).await;
    // No fourth attempt.
    assert!(hook.got.try_recv().is_err());
    // The API reads the tree as soon as the dead letter is applied; the writer sets the
    // gauge only once that group's sync has returned, a moment later.
    scrape_until(
        d.http,
        &[
            "siren_deliveries_total{destination=\"hook\",outcome=\"failed\"} 2",
            "siren_deliveries_total{destination=\"hook\",outcome=\"dead\"} 1",
            "siren_outbox_depth 0",
        ],
    )
    .await;
    d.stop().await;
}

#[tokio::test]
async fn a_command_destination_reads_the_event_json_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("events.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // argv, no shell in Siren: the program is sh, which writes its stdin into the FIFO.
    let defs = format!(
        "[[destinations]]\nid = \"pager\"\ntype = \"command\"\n\
         command = [\"/bin/sh\", \"-c\", \"cat > \\\"$0\\\"\", \"{}\"]\n",
        fifo.display()
    );
    let d = Daemon::start_config(config_with(&dir.path().join("store"), &["pager"], &defs)).await;
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("pager test", "cmd@x"),
    )
    .await;
    let read = fifo.clone();
    let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(read).unwrap())
        .await
        .unwrap();
    let event: Value = serde_json::from_str(&text).expect("one JSON document on stdin");
    assert_eq!(event["event"], "create");
    assert_eq!(event["destination"], "pager");
    assert_eq!(event["alert"]["title"], "pager test");
    assert_eq!(event["alert"]["thirdparty_id"], "cmd@x");
    deliveries_until(d.http, "pending", |l| l.is_empty()).await;
    d.stop().await;
}

/// The real binary, SIGKILLed while deliveries wait for a receiver that is down, delivers
/// every one of them after a restart, once each.
#[tokio::test]
async fn pending_deliveries_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut hook = Receiver::start_on(listener, 503);
    let config = crate::process::write_config(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        "addresses = [\"ops@alerts.localhost\"]\n",
        "addresses = [\"ops@alerts.localhost\"]\ndestinations = [\"hook\"]\n",
    );
    text.push_str(&format!(
        "[[destinations]]\nid = \"hook\"\ntype = \"webhook\"\nurl = \"http://{}/alerts\"\n\
         retry_initial = \"50ms\"\nretry_max = \"200ms\"\nmax_attempts = 100\n",
        hook.addr
    ));
    std::fs::write(&config, text).unwrap();

    let mut p = start(&config).await;
    for n in 0..5 {
        deliver(
            p.smtp,
            &["ops@alerts.localhost"],
            &message(&format!("k{n}"), &format!("k{n}@x")),
        )
        .await;
    }
    for _ in 0..5 {
        assert_eq!(hook.next().await.status, 503);
    }
    p.child.kill().unwrap();
    p.child.wait().unwrap();

    hook.status.store(202, Ordering::SeqCst);
    let mut p = start(&config).await;
    // An attempt the killed process had already sent may reach the receiver after the switch
    // to 202: the receiver has it, the dead sender never learned so, and the restarted one
    // sends it again. That is the promise after a crash: every delivery at least once, and at
    // most once more, with the same delivery id so the receiver can tell.
    let mut delivered = std::collections::HashMap::new();
    let count =
        |r: Received, delivered: &mut std::collections::HashMap<String, (String, usize)>| {
            if r.status >= 300 {
                return;
            }
            let tp = r.body["alert"]["thirdparty_id"]
                .as_str()
                .unwrap()
                .to_string();
            let id = r.headers["x-siren-delivery"].to_str().unwrap().to_string();
            let seen = delivered.entry(tp.clone()).or_insert((id.clone(), 0));
            assert_eq!(seen.0, id, "{tp} came again under another delivery id");
            seen.1 += 1;
            assert!(seen.1 <= 2, "{tp} delivered {} times", seen.1);
        };
    while delivered.len() < 5 {
        let r = hook.next_ok().await;
        count(r, &mut delivered);
    }
    deliveries_until(p.http, "pending", |l| l.is_empty()).await;
    while let Ok(r) = hook.got.try_recv() {
        count(r, &mut delivered);
    }
    let twice = delivered.values().filter(|(_, n)| *n == 2).count();
    assert!(
        twice <= 1,
        "{twice} deliveries came twice; one attempt at most was in flight"
    );
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

/// Regression (issue 12): the webhook destination followed redirects, so whoever answered the
/// configured URL could send the alert anywhere. A 3xx is now the destination's answer: a
/// failed attempt, retried at the same URL, and nothing reaches the redirect's target.
#[tokio::test]
async fn a_webhook_destination_follows_no_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let mut target = Receiver::start(200).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = listener.local_addr().unwrap();
    let location = format!("http://{}/stolen", target.addr);
    let app = Router::new().route(
        "/{*path}",
        post(move || {
            let location = location.clone();
            async move { (StatusCode::FOUND, [("location", location)]) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let defs = format!(
        "[[destinations]]\nid = \"hook\"\ntype = \"webhook\"\nurl = \"http://{redirector}/alerts\"\n\
         retry_initial = \"10ms\"\nretry_max = \"20ms\"\nmax_attempts = 2\n"
    );
    let d = Daemon::start_config(config_with(&dir.path().join("store"), &["hook"], &defs)).await;
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("redirected", "redirect@x"),
    )
    .await;
    let dead = deliveries_until(d.http, "dead", |l| l.len() == 1).await;
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("HTTP 302"),
        "{dead:?}"
    );
    assert!(
        target.got.try_recv().is_err(),
        "the redirect's target got the alert"
    );
    d.stop().await;
}
