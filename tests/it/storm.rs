//! Measurements for issue 12's SMTP targets, on the real binary; ignored by `cargo test` and
//! run by `bench/storm-smtp` (release build, raised descriptor limit). They print figures and
//! assert only what must hold whatever the machine: the targets are read from the
//! output, never asserted on time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::AsyncWriteExt;

use crate::fairness::connect_from;
use crate::helpers::{Smtp, message};
use crate::hostile::raise_open_file_limit;
use crate::process::{start, write_config_with};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A client at 127.0.0.2 opens 1,500 idle SMTP connections against the default
/// configuration; a client at 127.0.0.1 then delivers 20 messages, one connection each, first
/// with 127.0.0.2 idle, then while 127.0.0.2 also reconnects as fast as it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by bench/storm-smtp"]
async fn storm_idle_connections_from_one_address() {
    raise_open_file_limit(16384);
    let dir = tempfile::tempdir().unwrap();
    let p = start(&write_config_with(dir.path(), "")).await;
    let (mut held, mut refused) = (Vec::new(), 0);
    for _ in 0..1500 {
        let mut c = connect_from("127.0.0.2", p.smtp).await;
        if c.reply().await.starts_with("220") {
            held.push(c);
        } else {
            refused += 1;
        }
    }
    println!(
        "storm idle: 127.0.0.2 opened 1500 connections: {} held, {refused} refused with 421 4.7.0",
        held.len()
    );
    let round = |label: &'static str| {
        let smtp = p.smtp;
        async move {
            let mut times = Vec::new();
            for i in 0..20 {
                let t = Instant::now();
                let mut c = Smtp::greeted(smtp).await;
                let id = format!("{label}-{i}@storm");
                let r = c
                    .mail(
                        "monitor@example.com",
                        &["ops@alerts.localhost"],
                        &message(&id, &id),
                    )
                    .await;
                assert!(r.starts_with("250 2.0.0"), "{r}");
                times.push(t.elapsed());
                c.cmd("QUIT", "221").await;
            }
            times.sort();
            println!(
                "storm idle: 127.0.0.1 connect to 250 ({label}): median {:?}, p95 {:?}, max {:?} over 20",
                percentile(&times, 0.5),
                percentile(&times, 0.95),
                times[times.len() - 1]
            );
        }
    };
    round("held").await;
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let flood = tokio::spawn({
        let (stop, attempts, smtp) = (stop.clone(), attempts.clone(), p.smtp);
        async move {
            while !stop.load(Ordering::Relaxed) {
                let mut c = connect_from("127.0.0.2", smtp).await;
                c.reply().await;
                attempts.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let t = Instant::now();
    round("reconnect flood").await;
    stop.store(true, Ordering::Relaxed);
    flood.await.unwrap();
    println!(
        "storm idle: the flood made {} connections in {:?} meanwhile",
        attempts.load(Ordering::Relaxed),
        t.elapsed()
    );
    held[0].cmd("NOOP", "250").await;
    drop(held);
    let mut p = p;
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

/// 20 concurrent guessers at 127.0.0.2, each reconnecting as soon as its session ends,
/// against the default budgets (3 failures a session, 5 s before each 535, 10 failures a
/// minute per address). Counts the credential checks (535) and the refusals without one
/// (454) per minute. `STORM_AUTH_SECS` sets the duration (default 180).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by bench/storm-smtp"]
async fn storm_auth_guessing_from_one_address() {
    let secs: u64 = std::env::var("STORM_AUTH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let dir = tempfile::tempdir().unwrap();
    let cert = crate::tls::write_certificate(dir.path());
    let keys = "tls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\n[[smtp.users]]\nname = \"am\"\npassword = \"right\"\n";
    let mut p = start(&write_config_with(dir.path(), keys)).await;
    let start_at = Instant::now();
    let deadline = start_at + Duration::from_secs(secs);
    let minutes = secs.div_ceil(60) as usize;
    let checks: Arc<Vec<AtomicU64>> = Arc::new((0..minutes).map(|_| AtomicU64::new(0)).collect());
    let throttled: Arc<Vec<AtomicU64>> =
        Arc::new((0..minutes).map(|_| AtomicU64::new(0)).collect());
    let mut guessers = Vec::new();
    for g in 0..20 {
        let (checks, throttled, smtp, cert) =
            (checks.clone(), throttled.clone(), p.smtp, cert.clone());
        guessers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let Ok(mut s) = starttls_from("127.0.0.2", smtp, &cert).await else {
                    continue;
                };
                crate::tls::cmd(&mut s, "EHLO guesser.test", "250").await;
                loop {
                    n += 1;
                    let guess = B64.encode(format!("\0am\0guess-{g}-{n}"));
                    let line = format!("AUTH PLAIN {guess}\r\n");
                    if s.get_mut().write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                    let r = crate::tls::reply(&mut s).await;
                    let slot = (start_at.elapsed().as_secs() / 60) as usize;
                    if slot >= minutes {
                        break;
                    }
                    if r.starts_with("535") {
                        checks[slot].fetch_add(1, Ordering::Relaxed);
                    } else if r.starts_with("454") {
                        throttled[slot].fetch_add(1, Ordering::Relaxed);
                    }
                    if r.is_empty() || r.contains("421") || Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }));
    }
    for g in guessers {
        g.await.unwrap();
    }
    for m in 0..minutes {
        println!(
            "storm auth: minute {}: {} credential checks (535), {} refused unchecked (454)",
            m + 1,
            checks[m].load(Ordering::Relaxed),
            throttled[m].load(Ordering::Relaxed)
        );
    }
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

/// `tls::starttls` from another loopback address.
async fn starttls_from(
    ip: &str,
    smtp: std::net::SocketAddr,
    cert: &rustls::pki_types::CertificateDer<'static>,
) -> std::io::Result<tokio::io::BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(ip.parse().unwrap(), 0))?;
    let tcp = socket.connect(smtp).await?;
    crate::tls::starttls_on(tcp, cert).await
}
