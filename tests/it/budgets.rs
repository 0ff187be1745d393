//! What a session may cost (issue 12 items 3, 5 and 8): AUTH and RCPT failures are delayed and
//! capped, AUTH failures are also budgeted per client address across sessions, junk commands
//! are capped, an HTTP request closes the session, messages in flight share a memory budget,
//! a recipient named twice is kept once, and addresses over RFC 5321's limits are refused.
//! Waits and decay run on paused time over in-memory sessions (`script`); each item also has
//! a test on real sockets.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::time::Instant;

use crate::fairness::connect_from;
use crate::helpers::{Daemon, Smtp, deliver, message};
use crate::script::{Harness, Script};

/// `[[smtp.users]]` for the AUTH tests: one user, `am` / `right`.
const USER: &str = "[[smtp.users]]\nname = \"am\"\npassword = \"right\"\n";

fn plain(password: &str) -> String {
    format!("AUTH PLAIN {}", B64.encode(format!("\0am\0{password}")))
}

/// A session from `peer` inside TLS, after its second EHLO.
async fn tls_session(
    h: &Harness,
    cert: &rustls::pki_types::CertificateDer<'static>,
    peer: &str,
) -> Script<tokio_rustls::client::TlsStream<tokio::io::DuplexStream>> {
    let mut s = h.session_from(peer.parse().unwrap());
    s.expect("220").await;
    s.send("EHLO client.test").expect("250").await;
    let mut s = s.starttls(cert).await;
    s.send("EHLO client.test").expect("250").await;
    s
}

#[tokio::test(start_paused = true)]
async fn failed_auth_waits_and_the_third_ends_the_session() {
    let (h, cert) = Harness::with_tls(USER).await;
    let mut s = tls_session(&h, &cert, "127.0.0.2:1").await;
    let start = Instant::now();
    for _ in 0..2 {
        s.send(&plain("wrong")).expect("535 5.7.8").await;
    }
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(10),
        "5 s before each 535"
    );
    s.send(&plain("wrong")).expect("535 5.7.8").await;
    s.expect("421 4.7.0 Error: too many failed authentication attempts")
        .await;
    assert!(s.closed().await);
    // A right password after a wrong one is taken.
    let mut s = tls_session(&h, &cert, "127.0.0.2:2").await;
    s.send(&plain("wrong")).expect("535").await;
    s.send(&plain("right")).expect("235 2.7.0").await;
    assert_eq!(h.rejected("auth_failed"), 4.0);
    assert_eq!(h.rejected("too_many_errors"), 1.0);
    h.close().await;
}

/// Guessing from one address across sessions: a burst of
/// `max_auth_error_rate_per_client` (10) failures, then 454 until the count drains, at 10 a
/// minute; another address is not held back.
#[tokio::test(start_paused = true)]
async fn auth_failures_from_one_address_are_held_to_the_rate_across_sessions() {
    let (h, cert) = Harness::with_tls(&format!("auth_errors_wait = \"0s\"\n{USER}")).await;
    let mut guesses = 0;
    for session in 0..4 {
        let mut s = tls_session(&h, &cert, &format!("127.0.0.2:{session}")).await;
        for _ in 0..3 {
            let r = s.send(&plain("guess")).reply().await;
            if r.starts_with("535") {
                guesses += 1;
            } else {
                assert!(r.starts_with("454 4.7.0"), "{r}");
            }
        }
        s.expect("421 4.7.0").await;
    }
    assert_eq!(guesses, 10, "the burst");
    // Even the right password is refused while the count is full: nothing is checked.
    let mut s = tls_session(&h, &cert, "127.0.0.2:9").await;
    s.send(&plain("right")).expect("454 4.7.0").await;
    let mut other = tls_session(&h, &cert, "127.0.0.3:1").await;
    other.send(&plain("right")).expect("235").await;
    // One more attempt every 6 s.
    tokio::time::advance(Duration::from_secs(6)).await;
    s.send(&plain("right")).expect("235 2.7.0").await;
    assert_eq!(h.rejected("auth_throttled"), 3.0);
    h.close().await;
}

#[tokio::test(start_paused = true)]
async fn refused_recipients_wait_and_are_capped() {
    let h = Harness::new("").await;
    let mut s = h.session();
    s.transaction("ops@alerts.localhost").await;
    let start = Instant::now();
    for i in 0..9 {
        s.send(&format!("RCPT TO:<n{i}@alerts.localhost>"))
            .expect("550 5.1.1")
            .await;
    }
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(9),
        "1 s before each 550"
    );
    s.send("RCPT TO:<n9@alerts.localhost>")
        .expect("550 5.1.1")
        .await;
    s.expect("421 4.7.0 Error: too many refused recipients")
        .await;
    assert!(s.closed().await);
    assert_eq!(h.rejected("unknown_recipient"), 10.0);
    h.close().await;
}

#[tokio::test]
async fn junk_commands_are_capped_until_a_message_is_delivered() {
    let h = Harness::new("junk_commands_max = 4").await;
    let mut s = h.session();
    s.expect("220").await;
    for cmd in ["NOOP", "RSET", "VRFY x", "HELP"] {
        s.send(cmd).reply().await;
    }
    s.send("EHLO client.test").expect("250").await;
    s.send("MAIL FROM:<a@example.com>").expect("250").await;
    s.send("RCPT TO:<ops@alerts.localhost>").expect("250").await;
    s.send("DATA").expect("354").await;
    s.send_raw(&message("j", "junk@x"))
        .send(".")
        .expect("250 2.0.0")
        .await;
    // The count starts again after a delivered message.
    for _ in 0..4 {
        s.send("NOOP").expect("250").await;
    }
    s.send("NOOP")
        .expect("421 4.7.0 Error: too many commands without a message")
        .await;
    assert!(s.closed().await);
    assert_eq!(h.rejected("junk_commands"), 1.0);
    h.close().await;
}

#[tokio::test]
async fn an_http_request_closes_the_session_at_once() {
    let h = Harness::new("").await;
    let mut s = h.session();
    s.expect("220").await;
    s.send("EHLO client.test").expect("250").await;
    s.send("POST /webhooks/ops HTTP/1.1")
        .send("Host: 127.0.0.1")
        .send("");
    s.expect("500 5.5.1 Error: this is an SMTP server, not HTTP")
        .await;
    assert!(s.closed().await, "no reply to the header lines");
    assert_eq!(h.rejected("http_command"), 1.0);
    h.close().await;
}

/// Lets the sessions run until `siren_smtp_inflight_bytes` reads `want`.
async fn inflight_reaches(h: &Harness, want: f64) {
    for _ in 0..10_000 {
        if h.metric("siren_smtp_inflight_bytes") == want {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("in-flight bytes never reached {want}");
}

#[tokio::test]
async fn messages_in_flight_share_a_budget() {
    let h = Harness::new("max_message_size = 10000\nmax_inflight_bytes = 10000").await;
    let line = format!("{}\r\n", "x".repeat(998));
    let mut a = h.session();
    a.transaction("ops@alerts.localhost").await;
    a.send("DATA").expect("354").await;
    a.send_raw(line.repeat(9).as_bytes()).flush().await;
    inflight_reaches(&h, 9000.0).await;
    // B declares more than is left: refused at DATA.
    let mut b = h.session();
    b.expect("220").await;
    b.send("EHLO client.test").expect("250").await;
    b.send("MAIL FROM:<b@example.com> SIZE=2000")
        .expect("250")
        .await;
    b.send("RCPT TO:<ops@alerts.localhost>").expect("250").await;
    b.send("DATA")
        .expect("452 4.3.1 Error: insufficient system storage")
        .await;
    // C declares nothing: it starts, runs out of room, and is refused after its dot.
    let mut c = h.session();
    c.transaction("ops@alerts.localhost").await;
    c.send("DATA").expect("354").await;
    c.send_raw(line.repeat(2).as_bytes())
        .send(".")
        .expect("452 4.3.1")
        .await;
    // A fills the budget: now even DATA without SIZE= waits.
    a.send_raw(line.as_bytes()).flush().await;
    inflight_reaches(&h, 10000.0).await;
    c.send("MAIL FROM:<c@example.com>").expect("250").await;
    c.send("RCPT TO:<ops@alerts.localhost>").expect("250").await;
    c.send("DATA").expect("452 4.3.1").await;
    // A's commit gives its share back; B and C are served.
    a.send(".").expect("250 2.0.0").await;
    inflight_reaches(&h, 0.0).await;
    b.send("DATA").expect("354").await;
    b.send_raw(&message("b", "b@x"))
        .send(".")
        .expect("250 2.0.0")
        .await;
    c.send("DATA").expect("354").await;
    c.send_raw(&message("c", "c@x"))
        .send(".")
        .expect("250 2.0.0")
        .await;
    assert_eq!(h.logs("ops").len(), 3);
    assert_eq!(h.rejected("inflight"), 3.0);
    h.close().await;
}

#[tokio::test]
async fn a_recipient_named_twice_is_kept_once() {
    let h = Harness::new("max_recipients = 2").await;
    let mut s = h.session();
    s.transaction("ops@alerts.localhost").await;
    s.send("RCPT TO:<ops@alerts.localhost>")
        .expect("250 2.1.5")
        .await;
    s.send("RCPT TO:<OPS@alerts.localhost>")
        .expect("250 2.1.5")
        .await;
    s.send("RCPT TO:<db@alerts.localhost>")
        .expect("250 2.1.5")
        .await;
    s.send("DATA").expect("354").await;
    s.send_raw(&message("twice", "twice@x"))
        .send(".")
        .expect("250")
        .await;
    let ops = h.logs("ops");
    assert_eq!(ops.len(), 1);
    assert_eq!(
        ops[0].data["envelope"]["rcpt_to"],
        serde_json::json!(["ops@alerts.localhost"])
    );
    h.close().await;
}

// The same budgets on real sockets.

#[tokio::test]
async fn sockets_auth_failures_end_the_session_after_three() {
    let dir = tempfile::tempdir().unwrap();
    let cert = crate::tls::write_certificate(dir.path());
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\nauth_errors_wait = \"100ms\"\n{USER}\
         [http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n",
        dir.path().join("store").display()
    );
    let config = siren::Config::parse(&text, &dir.path().join("siren.toml")).unwrap();
    let d = Daemon::start_config(config).await;
    let mut s = crate::tls::starttls(d.smtp, &cert).await;
    crate::tls::cmd(&mut s, "EHLO client.test", "250").await;
    let start = std::time::Instant::now();
    for _ in 0..3 {
        crate::tls::cmd(&mut s, &plain("wrong"), "535 5.7.8").await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "each 535 waited"
    );
    assert!(crate::tls::reply(&mut s).await.starts_with("421 4.7.0"));
    assert_eq!(crate::tls::reply(&mut s).await, "", "closed");
    d.stop().await;
}

#[tokio::test]
async fn sockets_rcpt_junk_http_and_address_limits() {
    let d =
        Daemon::start_with("rcpt_errors_max = 3\nrcpt_errors_wait = \"0s\"\njunk_commands_max = 5")
            .await;
    // Refused recipients.
    let mut c = connect_from("127.0.0.2", d.smtp).await;
    c.expect("220").await;
    c.cmd("EHLO client.test", "250").await;
    c.cmd("MAIL FROM:<a@example.com>", "250").await;
    c.cmd("RCPT TO:<a@nowhere.example>", "550 5.1.1").await;
    c.cmd("RCPT TO:<b@nowhere.example>", "550 5.1.1").await;
    c.cmd("RCPT TO:<c@nowhere.example>", "550 5.1.1").await;
    c.expect("421 4.7.0").await;
    assert!(c.closed().await);
    // Junk.
    let mut c = Smtp::greeted(d.smtp).await;
    for _ in 0..5 {
        c.cmd("NOOP", "250").await;
    }
    c.cmd("NOOP", "421 4.7.0").await;
    assert!(c.closed().await);
    // An HTTP client.
    let err = reqwest::get(format!("http://{}/", d.smtp)).await;
    assert!(err.is_err(), "an SMTP port is no HTTP server: {err:?}");
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("GET / HTTP/1.1", "500 5.5.1").await;
    assert!(c.closed().await);
    // Addresses.
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("EHLO client.test", "250").await;
    c.send_raw(b"MAIL FROM:<a\x00b@example.com>\r\n").await;
    c.expect("501 5.1.7").await;
    c.cmd("MAIL FROM:<a@example.com>", "250").await;
    let local = "l".repeat(65);
    c.cmd(&format!("RCPT TO:<{local}@alerts.localhost>"), "553 5.1.3")
        .await;
    let domain = "d".repeat(260);
    c.cmd(&format!("RCPT TO:<ops@{domain}>"), "501 5.1.3").await;
    c.send_raw(b"RCPT TO:<ops\x1b[2J@alerts.localhost>\r\n")
        .await;
    c.expect("501 5.1.3").await;
    c.cmd("RCPT TO:<ops@alerts.localhost>", "250").await;
    c.cmd("RCPT TO:<ops@alerts.localhost>", "250").await;
    c.cmd("DATA", "354").await;
    c.send_raw(&message("addr", "addr@x")).await;
    c.cmd(".", "250 2.0.0").await;
    let logs = d.logs("ops").await;
    assert_eq!(logs.len(), 1);
    assert_eq!(
        logs[0]["data"]["envelope"]["rcpt_to"],
        serde_json::json!(["ops@alerts.localhost"])
    );
    d.stop().await;
}

/// Two messages that together pass `max_inflight_bytes`: whichever comes second finds no
/// room and gets `452 4.3.1`; the budget comes back after the first one's commit.
#[tokio::test]
async fn sockets_messages_in_flight_share_a_budget() {
    let d = Daemon::start_with("max_message_size = 10000\nmax_inflight_bytes = 10000").await;
    let line = format!("{}\r\n", "x".repeat(998));
    let mut a = Smtp::greeted(d.smtp).await;
    a.start_data("ops@alerts.localhost").await;
    a.send_raw(line.repeat(6).as_bytes()).await;
    let mut b = Smtp::greeted(d.smtp).await;
    b.start_data("ops@alerts.localhost").await;
    b.send_raw(line.repeat(6).as_bytes()).await;
    b.send_raw(b".\r\n").await;
    a.send_raw(b".\r\n").await;
    let mut replies = [a.reply().await, b.reply().await];
    replies.sort();
    assert!(replies[0].starts_with("250 2.0.0"), "{replies:?}");
    assert!(replies[1].starts_with("452 4.3.1"), "{replies:?}");
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("after", "inflight-after@x"),
    )
    .await;
    assert_eq!(d.logs("ops").await.len(), 2);
    d.stop().await;
}
