//! The real binary under signals. SIGKILL in the middle of a burst from several concurrent
//! clients: after a restart on the same store, every message that got 250 is there, exactly
//! once. SIGTERM: open transactions finish, idle sessions get 421, the process exits 0.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, mpsc};

use crate::helpers::{Smtp, http_get, message};

/// The binary running on `config`, with the addresses it logged as bound.
struct Process {
    child: Child,
    smtp: SocketAddr,
    http: SocketAddr,
}

fn spawn(config: &Path) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_siren"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start siren");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stderr = child.stderr.take().unwrap();
    // Reads the bound addresses off the log, then keeps draining it so the pipe never fills.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for kind in ["smtp", "http"] {
                if line.contains(&format!("{kind} listening"))
                    && let Some(addr) = line.split("addr=").nth(1)
                {
                    let _ = tx.send((kind, addr.trim().parse::<SocketAddr>().unwrap()));
                }
            }
        }
    });
    let mut addrs = HashMap::new();
    while addrs.len() < 2 {
        let (kind, addr) = rx.blocking_recv().expect("siren exited before listening");
        addrs.insert(kind, addr);
    }
    Process {
        child,
        smtp: addrs["smtp"],
        http: addrs["http"],
    }
}

/// Writes a configuration with ports 0 and a store in `dir`; returns its path.
fn write_config(dir: &Path) -> PathBuf {
    let config = dir.join("siren.toml");
    std::fs::write(
        &config,
        format!(
            "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
             [[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\n",
            dir.join("store").display()
        ),
    )
    .unwrap();
    config
}

async fn start(config: &Path) -> Process {
    let config = config.to_owned();
    tokio::task::spawn_blocking(move || spawn(&config))
        .await
        .unwrap()
}

/// Every log entry of `ops`, following the cursor through all pages.
async fn all_logs(http: SocketAddr) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = http_get(
            http,
            &format!("/api/v1/integrations/ops/logs?limit=1000{cursor}"),
        )
        .await;
        assert_eq!(status, 200);
        all.extend(body["logs"].as_array().unwrap().iter().cloned());
        match body["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => return all,
        }
    }
}

#[tokio::test]
async fn sigterm_drains_open_sessions_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut p = start(&config).await;
    let mut busy = Smtp::greeted(p.smtp).await;
    busy.cmd("EHLO client.test", "250").await;
    busy.cmd("MAIL FROM:<a@example.com>", "250").await;
    busy.cmd("RCPT TO:<ops@alerts.localhost>", "250").await;
    busy.cmd("DATA", "354").await;
    busy.send_raw(b"Subject: across SIGTERM\r\nMessage-ID: <term@x>\r\n\r\nfirst half\r\n")
        .await;
    let mut idle = Smtp::greeted(p.smtp).await;
    idle.cmd("EHLO client.test", "250").await;

    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) }, 0);
    idle.expect("421 4.3.0").await;
    busy.send_raw(b"second half\r\n.\r\n").await;
    busy.expect("250 2.0.0").await;
    let status = tokio::task::spawn_blocking(move || p.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "clean exit after SIGTERM");

    let mut p2 = start(&config).await;
    let logs = all_logs(p2.http).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["data"]["message_id"], "term@x");
    p2.child.kill().unwrap();
    p2.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_250_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let p = start(&config).await;

    // Five clients send without pause; the daemon is killed once 150 messages got their 250.
    const KILL_AFTER: usize = 150;
    let accepted = Arc::new(AtomicUsize::new(0));
    let reached = Arc::new(Notify::new());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    for client in 0..5 {
        let (accepted, reached, done_tx, addr) =
            (accepted.clone(), reached.clone(), done_tx.clone(), p.smtp);
        tokio::spawn(async move {
            let mut c = Smtp::greeted(addr).await;
            c.cmd("EHLO burst.test", "250").await;
            for n in 0.. {
                let id = format!("c{client}-{n}@burst");
                c.send("MAIL FROM:<burst@example.com>").await;
                c.send("RCPT TO:<ops@alerts.localhost>").await;
                c.send("DATA").await;
                let replies = [c.reply().await, c.reply().await, c.reply().await];
                if !replies[2].starts_with("354") {
                    return;
                }
                c.send_raw(&message("burst", &id)).await;
                c.send_raw(b".\r\n").await;
                let r = c.reply().await;
                if !r.starts_with("250") {
                    return; // killed: this one was never acknowledged
                }
                let _ = done_tx.send(id);
                if accepted.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    reached.notify_one();
                }
            }
        });
    }
    drop(done_tx);
    reached.notified().await;
    let mut p = p;
    p.child.kill().expect("SIGKILL");
    p.child.wait().unwrap();
    let mut acked = Vec::new();
    while let Some(id) = done_rx.recv().await {
        acked.push(id);
    }
    assert!(acked.len() >= KILL_AFTER);

    let mut p2 = tokio::task::spawn_blocking(move || spawn(&config))
        .await
        .unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = http_get(
            p2.http,
            &format!("/api/v1/integrations/ops/logs?limit=1000{cursor}"),
        )
        .await;
        assert_eq!(status, 200);
        for l in body["logs"].as_array().unwrap() {
            *seen
                .entry(l["data"]["message_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        match body["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break,
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    let duplicated: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    assert!(duplicated.is_empty(), "duplicated: {duplicated:?}");
    p2.child.kill().unwrap();
    p2.child.wait().unwrap();
}
