//! SMTP intake over real sockets: acceptance, every limit (its reply code, and that the next
//! client is still served), pipelining, graceful stop, and store failure.

use std::time::Duration;

use crate::helpers::{Daemon, Smtp, deliver, message};

/// Asserts that a fresh client can still deliver a message and it gets logged.
async fn still_serves(d: &Daemon, id: &str) {
    deliver(d.smtp, &["ops@alerts.localhost"], &message("after", id)).await;
    let logs = d.logs("ops").await;
    assert!(
        logs.iter().any(|l| l["data"]["message_id"] == id),
        "message {id} was not logged"
    );
}

#[tokio::test]
async fn accepted_message_is_logged_with_parsed_fields() {
    let d = Daemon::start().await;
    let mut c = Smtp::greeted(d.smtp).await;
    let ehlo = c.cmd("EHLO client.test", "250").await;
    for ext in [
        "PIPELINING",
        "8BITMIME",
        "SIZE 10485760",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(ext), "EHLO lacks {ext}: {ehlo}");
    }
    let r = c
        .mail(
            "monitor@example.com",
            &["ops@alerts.localhost"],
            &message("disk full", "m1@x"),
        )
        .await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    c.cmd("QUIT", "221 2.0.0").await;

    let logs = d.logs("ops").await;
    assert_eq!(logs.len(), 1);
    let log = &logs[0];
    assert_eq!(log["integration"], "ops");
    assert_eq!(log["source"], "smtp");
    assert_eq!(log["data"]["subject"], "disk full");
    assert_eq!(log["data"]["from"], "monitor@example.com");
    assert_eq!(log["data"]["to"], "ops@alerts.localhost");
    assert_eq!(log["data"]["message"], "body of disk full\r\n");
    assert_eq!(log["data"]["envelope"]["mail_from"], "monitor@example.com");
    assert_eq!(log["data"]["envelope"]["helo"], "client.test");
    assert!(
        log["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    let (status, detail) = d
        .get(&format!("/api/v1/logs/{}", log["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    assert!(
        detail["raw"]
            .as_str()
            .unwrap()
            .contains("Subject: disk full")
    );
    let (status, body) = d.get("/api/v1/logs/999999999").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = d.get("/api/v1/integrations/nope/logs").await;
    assert_eq!(status, 404);
    d.stop().await;
}

#[tokio::test]
async fn unclaimed_recipient_gets_550_and_session_goes_on() {
    let d = Daemon::start().await;
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("EHLO client.test", "250").await;
    c.cmd("MAIL FROM:<a@example.com>", "250").await;
    c.cmd("RCPT TO:<nobody@alerts.localhost>", "550 5.1.1")
        .await;
    c.cmd("RCPT TO:<ops@elsewhere.example>", "550 5.1.1").await;
    c.cmd("DATA", "503").await;
    c.cmd("RCPT TO:<OPS@Alerts.Localhost>", "250").await;
    c.cmd("DATA", "354").await;
    c.send_raw(&message("x", "m2@x")).await;
    c.send(".").await;
    c.expect("250 2.0.0").await;
    d.stop().await;
}

#[tokio::test]
async fn too_many_sessions_get_421_then_capacity_returns() {
    let d = Daemon::start_with("max_sessions = 2").await;
    let mut a = Smtp::greeted(d.smtp).await;
    let _b = Smtp::greeted(d.smtp).await;
    let mut c = Smtp::connect(d.smtp).await;
    c.expect("421 4.3.2").await;
    assert!(c.closed().await);
    a.cmd("QUIT", "221").await;
    assert!(a.closed().await);
    drop(a); // the client closes its side too, which ends the server's lingering close
    // The freed slot is released as the session task ends, just after the close.
    let mut served = false;
    for _ in 0..100 {
        let mut n = Smtp::connect(d.smtp).await;
        let r = n.reply().await;
        if r.starts_with("220") {
            served = true;
            break;
        }
        assert!(r.starts_with("421 4.3.2"), "{r}");
        tokio::task::yield_now().await;
    }
    assert!(served, "no session slot came free after a client quit");
    d.stop().await;
}

#[tokio::test]
async fn overlong_line_gets_500_and_close() {
    let d = Daemon::start_with("max_line_length = 2048").await;
    let mut c = Smtp::greeted(d.smtp).await;
    c.send_raw(&vec![b'A'; 100_000]).await;
    c.expect("500 5.5.2").await;
    assert!(c.closed().await);

    // The same in message data.
    let mut c = Smtp::greeted(d.smtp).await;
    c.start_data("ops@alerts.localhost").await;
    c.send_raw(&vec![b'B'; 10_000]).await;
    c.send_raw(b"\r\n.\r\n").await;
    c.expect("500 5.5.2").await;
    assert!(c.closed().await);
    assert!(
        d.logs("ops").await.is_empty(),
        "nothing of a cut-off message is stored"
    );
    still_serves(&d, "after-long@x").await;
    d.stop().await;
}

#[tokio::test]
async fn oversize_message_gets_552_and_nothing_is_stored() {
    let d = Daemon::start_with("max_message_size = 2000").await;
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("EHLO client.test", "250-").await;
    c.cmd("MAIL FROM:<a@example.com> SIZE=5000", "552 5.3.4")
        .await;
    c.cmd("MAIL FROM:<a@example.com> SIZE=1000", "250").await;
    c.cmd("RCPT TO:<ops@alerts.localhost>", "250").await;
    c.cmd("DATA", "354").await;
    for _ in 0..100 {
        c.send_raw(b"0123456789012345678901234567890123456789\r\n")
            .await;
    }
    c.cmd(".", "552 5.3.4").await;
    assert!(d.logs("ops").await.is_empty());
    // The session goes on and a message within the limit is accepted.
    c.cmd("MAIL FROM:<a@example.com>", "250").await;
    c.cmd("RCPT TO:<ops@alerts.localhost>", "250").await;
    c.cmd("DATA", "354").await;
    c.send_raw(&message("small", "small@x")).await;
    c.cmd(".", "250 2.0.0").await;
    still_serves(&d, "after-big@x").await;
    d.stop().await;
}

#[tokio::test]
async fn recipients_past_the_cap_get_452() {
    let d = Daemon::start_with("max_recipients = 3").await;
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("EHLO client.test", "250").await;
    c.cmd("MAIL FROM:<a@example.com>", "250").await;
    for i in 0..3 {
        c.cmd(&format!("RCPT TO:<h{i}@nagios.alerts.localhost>"), "250")
            .await;
    }
    c.cmd("RCPT TO:<h9@nagios.alerts.localhost>", "452 4.5.3")
        .await;
    c.cmd("DATA", "354").await;
    c.send_raw(&message("three", "three@x")).await;
    c.cmd(".", "250").await;
    let logs = d.logs("ops").await;
    assert_eq!(
        logs.len(),
        1,
        "three addresses of one integration make one entry"
    );
    assert_eq!(
        logs[0]["data"]["envelope"]["rcpt_to"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    still_serves(&d, "after-rcpt@x").await;
    d.stop().await;
}

#[tokio::test]
async fn bare_lf_in_data_is_refused_and_nothing_stored() {
    let d = Daemon::start().await;
    // A message whose lines end in bare LF, and the `<LF>.<LF>` smuggling sequences.
    let cases: [&[u8]; 3] = [
        b"Subject: a\n\nbody\n.\n",
        b"Subject: b\r\n\r\nbody\n.\nMAIL FROM:<evil@x>\r\n",
        b"Subject: c\r\n\r\nbody\r\n.\nRCPT TO:<x@y>\r\n",
    ];
    for data in cases {
        let mut c = Smtp::greeted(d.smtp).await;
        c.start_data("ops@alerts.localhost").await;
        c.send_raw(data).await;
        c.expect("521 5.5.2").await;
        assert!(c.closed().await);
    }
    assert!(d.logs("ops").await.is_empty());
    still_serves(&d, "after-lf@x").await;
    d.stop().await;
}

#[tokio::test]
async fn garbage_commands_get_errors_then_421_after_too_many() {
    let d = Daemon::start().await;
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("HELLO THERE", "500 5.5.2").await;
    c.cmd("MAIL FROM:<a@example.com>", "503 5.5.1").await;
    c.send_raw(b"\x00\x01\x02\xff\r\n").await;
    c.expect("500").await;
    for _ in 0..17 {
        c.cmd("XYZZY", "500").await;
    }
    c.send("XYZZY").await;
    let last = c.reply().await;
    assert!(last.contains("421 4.7.0"), "{last}");
    assert!(c.closed().await);
    still_serves(&d, "after-garbage@x").await;
    d.stop().await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let d = Daemon::start().await;
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("EHLO client.test", "250").await;
    c.send_raw(b"MAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<ops@alerts.localhost>\r\nRCPT TO:<nobody@x.example>\r\nDATA\r\n")
        .await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("550 5.1.1").await;
    c.expect("354").await;
    c.send_raw(b"Subject: bounce\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n")
        .await;
    c.expect("250 2.0.0").await;
    c.expect("221").await;
    let logs = d.logs("ops").await;
    assert_eq!(
        logs[0]["data"]["envelope"]["mail_from"], "",
        "null sender kept as empty"
    );
    assert_eq!(
        logs[0]["data"]["text"], ".leading dot\r\n",
        "dot-stuffing undone"
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn idle_client_is_cut_by_the_idle_timeout() {
    let d = Daemon::start_with("idle_timeout = \"5m\"").await;
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("EHLO client.test", "250").await;
    // Nothing more is sent: paused time runs ahead to the server's idle deadline.
    c.expect("421 4.4.2").await;
    assert!(c.closed().await);
    // Back to real time: with a paused clock, tokio moves time ahead at every park of the
    // runtime, even when socket I/O is what woke it.
    tokio::time::resume();
    still_serves(&d, "after-timeout@x").await;
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn trickling_client_is_cut_by_the_session_timeout() {
    let d = Daemon::start_with("idle_timeout = \"5m\"\nsession_timeout = \"10m\"").await;
    let mut c = Smtp::greeted(d.smtp).await;
    // Each command comes within the idle timeout, but the session as a whole runs too long.
    let mut last = String::new();
    for _ in 0..5 {
        c.send("NOOP").await;
        last = c.reply().await;
        if !last.starts_with("250") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(4 * 60)).await;
    }
    assert!(
        last.starts_with("421 4.4.2") && last.contains("session time limit"),
        "{last}"
    );
    // Back to real time: with a paused clock, tokio moves time ahead at every park of the
    // runtime, even when socket I/O is what woke it.
    tokio::time::resume();
    still_serves(&d, "after-timeout@x").await;
    d.stop().await;
}

#[tokio::test]
async fn store_failure_answers_451_and_recovers() {
    let d = Daemon::start().await;
    d.writer.inject_failure(true);
    let mut c = Smtp::greeted(d.smtp).await;
    let r = c
        .mail(
            "a@example.com",
            &["ops@alerts.localhost"],
            &message("x", "fail@x"),
        )
        .await;
    assert!(r.starts_with("451 4.3.0"), "{r}");
    assert!(d.logs("ops").await.is_empty(), "nothing half-committed");
    d.writer.inject_failure(false);
    // The sender's retry on the same session succeeds.
    c.cmd("MAIL FROM:<a@example.com>", "250").await;
    c.cmd("RCPT TO:<ops@alerts.localhost>", "250").await;
    c.cmd("DATA", "354").await;
    c.send_raw(&message("x", "fail@x")).await;
    c.cmd(".", "250").await;
    assert_eq!(d.logs("ops").await.len(), 1);
    d.stop().await;
}

#[tokio::test]
async fn graceful_stop_finishes_open_transactions_and_refuses_the_rest() {
    let mut d = Daemon::start().await;
    // One client mid-message, one idle between transactions.
    let mut busy = Smtp::greeted(d.smtp).await;
    busy.start_data("ops@alerts.localhost").await;
    busy.send_raw(b"Subject: in flight\r\nMessage-ID: <flight@x>\r\n\r\npart one\r\n")
        .await;
    let mut idle = Smtp::greeted(d.smtp).await;
    idle.cmd("EHLO client.test", "250").await;

    d.begin_stop();
    idle.expect("421 4.3.0").await;
    assert!(idle.closed().await);
    // The message in flight is finished and committed before the daemon exits.
    busy.send_raw(b"part two\r\n.\r\n").await;
    busy.expect("250 2.0.0").await;
    busy.send("MAIL FROM:<a@example.com>").await;
    busy.expect("421 4.3.0").await;
    d.finished().await;
    assert!(
        std::net::TcpStream::connect(d.smtp).is_err(),
        "listener closed after stop"
    );

    // Restarted on the same store, the message is there.
    let dir = d.dir.take().unwrap();
    let config = crate::helpers::test_config(&dir.path().join("store"), "");
    let d2 = Daemon::start_config(config).await;
    let logs = d2.logs("ops").await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["data"]["message_id"], "flight@x");
    d2.stop().await;
}

#[tokio::test(start_paused = true)]
async fn drain_deadline_closes_stuck_transactions_with_421() {
    let mut d = Daemon::start_with("drain_timeout = \"10s\"").await;
    let mut stuck = Smtp::greeted(d.smtp).await;
    stuck.start_data("ops@alerts.localhost").await;
    stuck.send_raw(b"Subject: never finished\r\n\r\n").await;
    d.begin_stop();
    stuck.expect("421 4.3.0").await;
    d.finished().await;
}

/// Regression: 40 KB Message-IDs went into index keys whole, and sled wrote the page to a blob
/// file it never syncs. Large values of any kind must stay in sled's synced log.
#[tokio::test]
async fn large_inputs_stay_out_of_sleds_unsynced_blob_files() {
    let d = Daemon::start().await;
    for i in 0..4 {
        let id = format!("{}-{i}@x", "m".repeat(40_000));
        deliver(
            d.smtp,
            &["ops@alerts.localhost"],
            &message(&format!("long id {i}"), &id),
        )
        .await;
    }
    let mut big = message("big", "big@x");
    for n in 0..40_000 {
        big.extend_from_slice(
            format!("line {n:06} of a three megabyte message, padded out to eighty chars\r\n")
                .as_bytes(),
        );
    }
    deliver(d.smtp, &["ops@alerts.localhost"], &big).await;
    let (_, alerts) = d.get("/api/v1/alerts").await;
    assert_eq!(
        alerts["alerts"].as_array().unwrap().len(),
        5,
        "long ids stay distinct"
    );
    let dir = d.stop().await.unwrap();
    let blobs: Vec<_> = std::fs::read_dir(dir.path().join("store/blobs"))
        .unwrap()
        .collect();
    let sizes: Vec<u64> = blobs
        .iter()
        .map(|b| b.as_ref().unwrap().metadata().unwrap().len())
        .collect();
    assert!(blobs.is_empty(), "sled wrote blob files: {sizes:?}");
}

/// QUIT: the 221 arrives whole and the server closes its end without waiting for the
/// client's, whether or not the client wrote anything after QUIT (it then gets the lingering
/// close, which reads that input instead of answering it with a reset).
#[tokio::test]
async fn quit_closes_the_connection_after_a_whole_221() {
    let d = Daemon::start().await;
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("EHLO client.test", "250").await;
    c.cmd("QUIT", "221 2.0.0").await;
    assert!(
        c.closed().await,
        "the server did not close cleanly after QUIT"
    );

    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("EHLO client.test", "250").await;
    c.send_raw(b"QUIT\r\nNOOP\r\n").await;
    c.expect("221 2.0.0").await;
    assert!(
        c.closed().await,
        "input after QUIT got a reset instead of a clean close"
    );
    still_serves(&d, "after-quit@x").await;
}
