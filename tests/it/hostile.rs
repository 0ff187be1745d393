//! Hostile SMTP clients (spec "Bad input"): each case checks the reply and that a normal client
//! is still served. Memory and idle-connection cases run against the real binary, so that the
//! daemon's own RSS can be read from /proc.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::helpers::{Daemon, Smtp, deliver, message};
use crate::process::{all_logs, start, write_config_with};

/// 2,000 connections need more descriptors than a default soft limit of 1024 allows, in this
/// process and in the daemon it starts (which inherits the limit): raise the soft limit.
pub fn raise_open_file_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_megabytes_without_a_newline() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(&write_config_with(dir.path(), "")).await;
    // Warm up the daemon's allocations with one normal message first.
    deliver(
        p.smtp,
        &["ops@alerts.localhost"],
        &message("warm", "warm@x"),
    )
    .await;
    let before = rss_kib(p.child.id());

    let stream = tokio::net::TcpStream::connect(p.smtp).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut reader = Smtp::from_read_half(rd);
    reader.expect("220").await;
    let writer = tokio::spawn(async move {
        let chunk = vec![b'A'; 1 << 20];
        let mut sent = 0usize;
        while sent < 300 << 20 {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    reader.expect("500 5.5.2").await;
    let sent = writer.await.unwrap();
    let after = rss_kib(p.child.id());
    let growth = after.saturating_sub(before);
    println!(
        "300 MB without newline: client sent {} MiB before the cut; daemon RSS {before} KiB -> {after} KiB (+{growth} KiB)",
        sent >> 20
    );
    assert!(growth < 32 * 1024, "RSS grew by {growth} KiB");

    deliver(
        p.smtp,
        &["ops@alerts.localhost"],
        &message("after", "after@x"),
    )
    .await;
    assert_eq!(all_logs(p.http).await.len(), 2);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_do_not_hold_up_a_real_client() {
    raise_open_file_limit(8192);
    let dir = tempfile::tempdir().unwrap();
    // All 2,000 come from 127.0.0.1: trusted, as a local relay would be, so that
    // max_sessions_per_client does not apply (a client over it has its own test in `fairness`).
    let keys = "max_sessions = 4096\ntrusted_clients = [\"127.0.0.1/32\"]";
    let mut p = start(&write_config_with(dir.path(), keys)).await;
    let mut idle = Vec::with_capacity(2000);
    for _ in 0..2000 {
        idle.push(Smtp::greeted(p.smtp).await);
    }
    let rss = rss_kib(p.child.id());
    let t = Instant::now();
    let mailer =
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(p.smtp.port())
            .build();
    let envelope = lettre::address::Envelope::new(
        Some("monitor@example.com".parse().unwrap()),
        vec!["ops@alerts.localhost".parse().unwrap()],
    )
    .unwrap();
    let resp = lettre::AsyncTransport::send_raw(&mailer, &envelope, &message("busy", "busy@x"))
        .await
        .unwrap();
    let latency = t.elapsed();
    println!(
        "with 2000 idle sessions open (daemon RSS {rss} KiB): a real client's message got {} in {latency:?}",
        resp.code()
    );
    assert!(resp.is_positive());
    assert!(latency < Duration::from_secs(5), "{latency:?}");
    // The idle ones are still there and still answer.
    idle[1999].cmd("NOOP", "250").await;
    drop(idle);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

/// Real time (a paused clock jumps ahead at every socket wait): a session deadline of 4 s.
#[tokio::test]
async fn a_client_trickling_a_byte_a_second_is_cut_by_the_session_deadline() {
    let d = Daemon::start_with("idle_timeout = \"10s\"\nsession_timeout = \"4s\"").await;
    let stream = tokio::net::TcpStream::connect(d.smtp).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    let mut c = Smtp::from_read_half(rd);
    c.expect("220").await;
    let start = Instant::now();
    // The trickle goes on in the background; the reply comes when the deadline passes.
    let trickle = tokio::spawn(async move {
        for b in b"NOOP\r\n".iter().cycle().take(60) {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut reply = c.reply().await;
    while reply.starts_with("250") {
        reply = c.reply().await;
    }
    let elapsed = start.elapsed();
    trickle.abort();
    println!(
        "trickling client cut after {elapsed:?}: {}",
        reply.trim_end()
    );
    assert!(
        reply.starts_with("421 4.4.2") && reply.contains("session time limit"),
        "{reply}"
    );
    assert!(elapsed < Duration::from_secs(30), "cut after {elapsed:?}");
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("after", "after-trickle@x"),
    )
    .await;
    d.stop().await;
}

#[tokio::test]
async fn a_thousand_recipients_get_452_past_the_cap_and_the_message_still_goes() {
    let d = Daemon::start().await;
    let mut c = Smtp::greeted(d.smtp).await;
    c.cmd("EHLO client.test", "250").await;
    c.cmd("MAIL FROM:<a@example.com>", "250").await;
    let mut batch = String::new();
    for i in 0..1000 {
        batch.push_str(&format!("RCPT TO:<h{i}@nagios.alerts.localhost>\r\n"));
    }
    c.send_raw(batch.as_bytes()).await;
    let (mut ok, mut full) = (0, 0);
    for _ in 0..1000 {
        let r = c.reply().await;
        if r.starts_with("250 2.1.5") {
            ok += 1;
        } else if r.starts_with("452 4.5.3") {
            full += 1;
        } else {
            panic!("unexpected reply {r:?}");
        }
    }
    assert_eq!((ok, full), (100, 900));
    c.cmd("DATA", "354").await;
    c.send_raw(&message("many", "many@x")).await;
    c.cmd(".", "250 2.0.0").await;
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("next", "next-client@x"),
    )
    .await;
    assert_eq!(d.logs("ops").await.len(), 2);
    d.stop().await;
}

#[tokio::test]
async fn a_disconnect_in_the_middle_of_data_stores_nothing() {
    let d = Daemon::start().await;
    {
        let mut c = Smtp::greeted(d.smtp).await;
        c.start_data("ops@alerts.localhost").await;
        c.send_raw(b"Subject: half\r\nMessage-ID: <half@x>\r\n\r\nhalf a bo")
            .await;
    }
    // A later message on another connection is the only one stored.
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("whole", "whole@x"),
    )
    .await;
    let logs = d.logs("ops").await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["data"]["message_id"], "whole@x");
    let (_, alerts) = d.get("/api/v1/alerts").await;
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1);
    d.stop().await;
}

#[tokio::test]
async fn overlong_and_binary_commands_get_errors_not_a_crash() {
    let d = Daemon::start().await;
    let cases: [&[u8]; 5] = [
        b"MAIL FROM:<\x00\xff@x>\r\n",
        b"RCPT TO:<<<>>>\r\n",
        b"EHLO \xc3\x28\r\n",
        b"DATA DATA DATA\r\n",
        b"\r\n",
    ];
    let mut c = Smtp::greeted(d.smtp).await;
    for case in cases {
        c.send_raw(case).await;
        let r = c.reply().await;
        assert!(r.starts_with('5'), "{case:?} -> {r:?}");
    }
    let mut long = b"EHLO ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 70_000));
    long.extend_from_slice(b"\r\n");
    c.send_raw(&long).await;
    c.expect("500 5.5.2").await;
    assert!(c.closed().await);
    deliver(
        d.smtp,
        &["ops@alerts.localhost"],
        &message("fine", "fine@x"),
    )
    .await;
    d.stop().await;
}
