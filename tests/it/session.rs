//! The SMTP session's replies and limits, scripted over an in-memory stream (see `script`):
//! each test reads as the exchange it checks. The same limits on real sockets are in `intake`.

use crate::helpers::message;
use crate::script::Harness;

#[tokio::test]
async fn a_message_is_accepted_and_stored_with_its_envelope() {
    let h = Harness::new("").await;
    let mut s = h.session();
    s.expect("220 siren.test ESMTP").await;
    let ehlo = s.send("EHLO client.test").expect("250-siren.test").await;
    assert!(ehlo.contains("250-SIZE 10485760\r\n"), "{ehlo}");
    assert!(
        !ehlo.contains("STARTTLS"),
        "no certificate, no STARTTLS: {ehlo}"
    );
    s.send("MAIL FROM:<> BODY=8BITMIME")
        .expect("250 2.1.0")
        .await;
    s.send("RCPT TO:<ops@alerts.localhost>")
        .expect("250 2.1.5")
        .await;
    s.send("RCPT TO:<Ops+Disk@Alerts.Localhost>")
        .expect("250 2.1.5")
        .await;
    s.send("RCPT TO:<db@alerts.localhost>")
        .expect("250 2.1.5")
        .await;
    s.send("DATA").expect("354").await;
    s.send_raw(b"Subject: s1\r\nMessage-ID: <s1@x>\r\n\r\n..dot\r\n.\r\n");
    s.expect("250 2.0.0 Ok: queued as").await;
    s.send("QUIT").expect("221 2.0.0").await;
    assert!(s.closed().await);
    let ops = h.logs("ops");
    assert_eq!(ops.len(), 1, "two recipients of one integration: one entry");
    assert_eq!(ops[0].data["envelope"]["mail_from"], "");
    assert_eq!(ops[0].data["envelope"]["helo"], "client.test");
    assert_eq!(ops[0].data["text"], ".dot\r\n");
    assert_eq!(h.logs("db").len(), 1);
    h.close().await;
}

#[tokio::test]
async fn refused_recipients_never_reach_the_transaction() {
    let h = Harness::new("max_recipients = 2").await;
    let mut s = h.session();
    s.expect("220").await;
    s.send("RCPT TO:<ops@alerts.localhost>")
        .expect("503 5.5.1")
        .await;
    s.send("EHLO client.test").expect("250").await;
    s.send("MAIL FROM:<a@example.com>")
        .expect("250 2.1.0")
        .await;
    s.send("RCPT TO:<nobody@alerts.localhost>")
        .expect("550 5.1.1 <nobody@alerts.localhost>")
        .await;
    s.send("DATA").expect("503 5.5.1").await;
    s.send("RCPT TO:<ops@alerts.localhost>").expect("250").await;
    s.send("RCPT TO:<db@alerts.localhost>").expect("250").await;
    s.send("RCPT TO:<zabbix@alerts.localhost>")
        .expect("452 4.5.3")
        .await;
    s.send("RSET").expect("250 2.0.0").await;
    s.send("DATA").expect("503 5.5.1").await;
    s.send("MAIL FROM:<a@example.com>").expect("250").await;
    s.send("RCPT TO:<zabbix@alerts.localhost>")
        .expect("250")
        .await;
    s.send("DATA").expect("354").await;
    s.send_raw(&message("r", "r@x"))
        .send(".")
        .expect("250 2.0.0")
        .await;
    assert!(h.logs("ops").is_empty() && h.logs("db").is_empty());
    assert_eq!(h.logs("zabbix").len(), 1);
    assert_eq!(h.rejected("unknown_recipient"), 1.0);
    assert_eq!(h.rejected("recipients"), 1.0);
    h.close().await;
}

#[tokio::test]
async fn mail_parameters_are_checked_before_mailin_sees_them() {
    let h = Harness::new("max_message_size = 1000").await;
    let mut s = h.session();
    s.expect("220").await;
    s.send("EHLO client.test").expect("250").await;
    s.send("MAIL FROM:<a@example.com> SIZE=1001")
        .expect("552 5.3.4")
        .await;
    s.send("MAIL FROM:<a@example.com> SMTPUTF8")
        .expect("555 5.5.4")
        .await;
    s.send("MAIL FROM:a@example.com").expect("501 5.1.7").await;
    s.send("MAIL FROMAGE").expect("500 5.5.2").await;
    s.send("MAIL FROM:<a@example.com> SIZE=1000")
        .expect("250")
        .await;
    s.send("MAIL FROM:<b@example.com>")
        .expect("503 5.5.1")
        .await;
    s.send("RCPT TO:<ops@alerts.localhost> NOTIFY=NEVER")
        .expect("555 5.5.4")
        .await;
    s.send("RCPT TO:<>").expect("501").await;
    assert_eq!(h.rejected("size"), 1.0);
    assert_eq!(h.rejected("protocol"), 6.0);
    h.close().await;
}

#[tokio::test]
async fn a_message_over_the_size_cap_is_read_to_the_dot_and_refused() {
    let h = Harness::new("max_message_size = 1000").await;
    let mut s = h.session();
    s.transaction("ops@alerts.localhost").await;
    s.send("DATA").expect("354").await;
    for _ in 0..20 {
        s.send(&"x".repeat(100));
    }
    s.send(".").expect("552 5.3.4").await;
    // The session goes on.
    s.send("MAIL FROM:<a@example.com>").expect("250").await;
    s.send("RCPT TO:<ops@alerts.localhost>").expect("250").await;
    s.send("DATA").expect("354").await;
    s.send_raw(&message("small", "small@x"))
        .send(".")
        .expect("250 2.0.0")
        .await;
    assert_eq!(h.logs("ops").len(), 1);
    h.close().await;
}

#[tokio::test]
async fn bare_lf_in_data_closes_the_session_and_stores_nothing() {
    let h = Harness::new("").await;
    let mut s = h.session();
    s.transaction("ops@alerts.localhost").await;
    s.send("DATA").expect("354").await;
    s.send_raw(b"Subject: smuggled\r\n\r\nbody\n.\r\nMAIL FROM:<x@y>\r\n");
    s.expect("521 5.5.2").await;
    assert!(s.closed().await);
    assert!(h.logs("ops").is_empty());
    let mut s = h.session();
    s.expect("220").await;
    s.send_raw(b"EHLO client.test\n").expect("500 5.5.2").await;
    h.close().await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let h = Harness::new("").await;
    let mut s = h.session();
    s.expect("220").await;
    s.send("EHLO client.test")
        .send("MAIL FROM:<a@example.com>")
        .send("RCPT TO:<nobody@x.example>")
        .send("RCPT TO:<ops@alerts.localhost>")
        .send("DATA")
        .send_raw(&message("p", "p@x"))
        .send(".")
        .send("NOOP")
        .send("QUIT");
    for want in [
        "250-",
        "250 2.1.0",
        "550 5.1.1",
        "250 2.1.5",
        "354",
        "250 2.0.0",
        "250 2.0.0",
        "221",
    ] {
        s.expect(want).await;
    }
    assert!(s.closed().await);
    h.close().await;
}

#[tokio::test]
async fn the_twentieth_protocol_error_ends_the_session() {
    let h = Harness::new("rcpt_errors_max = 30\nrcpt_errors_wait = \"0s\"").await;
    let mut s = h.session();
    s.expect("220").await;
    // Refused recipients are not protocol errors.
    s.send("EHLO client.test").expect("250").await;
    s.send("MAIL FROM:<a@example.com>").expect("250").await;
    for i in 0..25 {
        s.send(&format!("RCPT TO:<n{i}@nowhere.example>"))
            .expect("550")
            .await;
    }
    for _ in 0..19 {
        s.send("XYZZY").expect("500 5.5.2").await;
    }
    s.send("XYZZY").expect("500 5.5.2").await;
    s.expect("421 4.7.0 Error: too many errors").await;
    assert!(s.closed().await);
    assert_eq!(h.rejected("too_many_errors"), 1.0);
    h.close().await;
}

#[tokio::test]
async fn auth_without_users_is_not_enabled() {
    let h = Harness::new("").await;
    let mut s = h.session();
    s.expect("220").await;
    s.send("EHLO client.test").expect("250").await;
    s.send("AUTH PLAIN AGFtAHNlY3JldA==")
        .expect("503 5.5.1 Error: authentication not enabled")
        .await;
    s.send("MAIL FROM:<a@example.com>").expect("250").await;
    h.close().await;
}

#[tokio::test]
async fn an_overlong_line_is_refused_and_the_session_closed() {
    let h = Harness::new("max_line_length = 2000").await;
    let mut s = h.session();
    s.expect("220").await;
    s.send(&"E".repeat(2001))
        .expect("500 5.5.2 Error: line too long")
        .await;
    assert!(s.closed().await);
    assert_eq!(h.rejected("line_length"), 1.0);
    h.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_gets_421_at_the_idle_timeout() {
    let h = Harness::new("idle_timeout = \"5m\"").await;
    let mut s = h.session();
    s.expect("220").await;
    s.send("EHLO client.test").expect("250").await;
    let start = tokio::time::Instant::now();
    s.expect("421 4.4.2 siren.test Error: timeout exceeded")
        .await;
    assert_eq!(start.elapsed().as_secs(), 300);
    assert!(s.closed().await);
    h.close().await;
}

#[tokio::test]
async fn stop_closes_idle_sessions_and_lets_a_transaction_finish() {
    let h = Harness::new("").await;
    let mut idle = h.session();
    idle.expect("220").await;
    let mut busy = h.session();
    busy.transaction("ops@alerts.localhost").await;
    h.stop.cancel();
    idle.expect("421 4.3.0").await;
    assert!(idle.closed().await);
    busy.send("DATA").expect("354").await;
    busy.send_raw(&message("last", "last@x"))
        .send(".")
        .expect("250 2.0.0")
        .await;
    busy.expect("421 4.3.0").await;
    assert!(busy.closed().await);
    assert_eq!(h.logs("ops").len(), 1);
    h.close().await;
}
