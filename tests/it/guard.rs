//! The loop and auto-reply guard over SMTP: auto-replies, delivery status and disposition
//! notifications and Siren's own pages are logged as `ignored` with the reason and make no
//! alert; cron's `auto-generated` mail is an alert; `accept_auto_replies` turns the guard off
//! for auto-replies; and a page an e-mail destination sent that comes back (a relay forwarding
//! it to an address Siren claims) is stopped by the loop header.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use lettre::address::Envelope;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;
use siren::Config;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::helpers::Daemon;

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("samples")
            .join(name),
    )
    .unwrap()
}

fn config(store: &Path, hostname: &str, extra: &str) -> Config {
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"{hostname}\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [store]\npath = \"{}\"\n[[integrations]]\nid = \"ops\"\ntype = \"email\"\n\
         addresses = [\"ops@alerts.localhost\"]\n{extra}",
        store.display()
    );
    Config::parse(&text, Path::new("guard.toml")).expect("valid config")
}

async fn start(hostname: &str, extra: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_config(config(&dir.path().join("store"), hostname, extra)).await;
    d.dir = Some(dir);
    d
}

/// Sends `raw` with envelope sender `from` (None: the null sender) to ops; answers its log entry.
async fn send(d: &Daemon, from: Option<&str>, raw: &[u8]) -> Value {
    send_to(d.smtp, from, "ops@alerts.localhost", raw)
        .await
        .unwrap();
    d.logs("ops").await.remove(0)
}

async fn send_to(
    smtp: SocketAddr,
    from: Option<&str>,
    to: &str,
    raw: &[u8],
) -> Result<String, String> {
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp.port())
        .build();
    let from = from.map(|f| f.parse::<Address>().unwrap());
    let envelope = Envelope::new(from, vec![to.parse().unwrap()]).unwrap();
    mailer
        .send_raw(&envelope, raw)
        .await
        .map(|r| r.message().collect::<Vec<_>>().join(" "))
        .map_err(|e| e.to_string())
}

async fn alerts(d: &Daemon) -> Vec<Value> {
    let (status, body) = d.get("/api/v1/alerts?integration=ops").await;
    assert_eq!(status, 200, "{body}");
    body["alerts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn auto_replies_reports_and_own_pages_are_ignored_with_the_reason() {
    let d = start("siren.localhost", "").await;
    #[rustfmt::skip]
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("autoreply-vacation.eml", Some("j.doe@example.com"),
            "not an alert: an auto-reply (Auto-Submitted: auto-replied (vacation))"),
        ("bounce-dsn.eml", None,
            "not an alert: a delivery status notification (multipart/report; report-type=delivery-status), from the null sender"),
        ("read-receipt-mdn.eml", Some("j.roe@example.com"),
            "not an alert: a disposition notification (read receipt) (multipart/report; report-type=disposition-notification)"),
        ("siren-loop.eml", Some("siren@alerts.localhost"),
            "not an alert: sent by this Siren (X-Siren-Loop: siren.localhost): a loop"),
    ];
    for &(file, from, reason) in cases {
        let log = send(&d, from, &sample(file)).await;
        assert_eq!(log["outcome"], "ignored", "{file}: {log}");
        assert_eq!(log["alert_id"], Value::Null, "{file}");
        assert_eq!(log["error"], reason, "{file}");
        // Still logged in full, for the detail view.
        assert!(
            !log["data"]["subject"].as_str().unwrap().is_empty(),
            "{file}"
        );
    }
    assert!(alerts(&d).await.is_empty());
    // What cron and monitoring tools send (auto-generated, bulk) is an alert as usual.
    let log = send(
        &d,
        Some("root@db01.example.com"),
        &sample("anacron-daily.eml"),
    )
    .await;
    assert_eq!(log["outcome"], "created", "{log}");
    assert_eq!(log["error"], Value::Null);
    assert_eq!(alerts(&d).await.len(), 1);
    d.stop().await;
}

#[tokio::test]
async fn accept_auto_replies_makes_them_alerts_but_never_siren_s_own_pages() {
    let d = start("siren.localhost", "accept_auto_replies = true\n").await;
    let log = send(
        &d,
        Some("j.doe@example.com"),
        &sample("autoreply-vacation.eml"),
    )
    .await;
    assert_eq!(log["outcome"], "created", "{log}");
    let log = send(&d, None, &sample("bounce-dsn.eml")).await;
    assert_eq!(log["outcome"], "created", "{log}");
    let log = send(
        &d,
        Some("siren@alerts.localhost"),
        &sample("siren-loop.eml"),
    )
    .await;
    assert_eq!(log["outcome"], "ignored", "{log}");
    assert_eq!(alerts(&d).await.len(), 2);
    d.stop().await;
}

#[test]
fn accept_auto_replies_is_for_email_integrations() {
    let text = "[[integrations]]\nid = \"hook\"\ntype = \"webhook\"\naccept_auto_replies = true\n";
    let err = Config::parse(text, Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "t.toml: integrations[hook].accept_auto_replies: only email integrations receive auto-replies"
    );
}

/// A relay (as a mail server forwarding to an address Siren claims would): takes each message
/// and sends it on to `siren` for `to` with a real client, reporting Siren's answer.
async fn relay(
    siren: Arc<OnceLock<SocketAddr>>,
    to: &'static str,
) -> (SocketAddr, mpsc::UnboundedReceiver<Result<String, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, siren) = (tx.clone(), siren.clone());
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut lines = BufReader::new(rd).lines();
                wr.write_all(b"220 relay.test ESMTP\r\n").await.unwrap();
                let mut data: Option<Vec<u8>> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(d) = data.as_mut() {
                        if line != "." {
                            d.extend_from_slice(line.strip_prefix('.').unwrap_or(&line).as_bytes());
                            d.extend_from_slice(b"\r\n");
                            continue;
                        }
                        let message = data.take().unwrap();
                        let addr = *siren.get().expect("Siren's address is known");
                        let answer = send_to(addr, Some("relay@relay.test"), to, &message).await;
                        let _ = tx.send(answer);
                        wr.write_all(b"250 2.0.0 relayed\r\n").await.unwrap();
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 relay.test\r\n",
                        "DATA" => {
                            data = Some(Vec::new());
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

#[tokio::test]
async fn a_page_that_comes_back_is_ignored_instead_of_paging_again() {
    let siren = Arc::new(OnceLock::new());
    let (smarthost, mut relayed) = relay(siren.clone(), "ops@alerts.localhost").await;
    let destination = format!(
        "destinations = [\"mail\"]\n[[destinations]]\nid = \"mail\"\ntype = \"email\"\n\
         smarthost = \"{smarthost}\"\nfrom = \"siren@alerts.localhost\"\nto = [\"oncall@example.com\"]\n"
    );
    let d = start("siren.test", &destination).await;
    siren.set(d.smtp).unwrap();
    let first = send(
        &d,
        Some("nagios@monitor.example.com"),
        &sample("nagios-problem.eml"),
    )
    .await;
    assert_eq!(first["outcome"], "created");
    // The page went out through the relay and came back; Siren answered it.
    let answer = relayed.recv().await.expect("the relay forwarded the page");
    assert!(answer.is_ok(), "Siren took the page back: {answer:?}");
    let logs = d.logs("ops").await;
    assert_eq!(logs.len(), 2, "{logs:?}");
    let back = &logs[0];
    assert_eq!(back["outcome"], "ignored", "{back}");
    assert_eq!(
        back["error"],
        "not an alert: sent by this Siren (X-Siren-Loop: siren.test): a loop"
    );
    assert_eq!(back["data"]["headers"]["Auto-Submitted"], "auto-generated");
    assert!(
        back["data"]["subject"]
            .as_str()
            .unwrap()
            .starts_with("[OPEN] ** PROBLEM Service Alert"),
        "{back}"
    );
    assert_eq!(alerts(&d).await.len(), 1, "one page, not a loop of them");
    d.stop().await;
}
