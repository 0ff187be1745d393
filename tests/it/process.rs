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

use crate::helpers::{Smtp, message};

/// The binary running on `config`, with the addresses it logged as bound.
pub struct Process {
    pub child: Child,
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    /// Every line the daemon logs after it listens, in order.
    pub log: mpsc::UnboundedReceiver<String>,
}

impl Process {
    /// Waits for the next log line containing `needle`; panics if the daemon exits first.
    pub async fn log_line(&mut self, needle: &str) -> String {
        while let Some(line) = self.log.recv().await {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("siren exited before logging \"{needle}\"");
    }

    /// SIGTERM, then waits (off the runtime) for the process to end; its exit status.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        tokio::task::spawn_blocking(move || self.child.wait())
            .await
            .unwrap()
            .unwrap()
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }
}

/// A test that fails (panics) before it stops its daemon does not leave it running.
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(config: &Path) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_siren"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start siren");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (log_tx, log) = mpsc::unbounded_channel();
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
            let _ = log_tx.send(line);
        }
    });
    let mut addrs = HashMap::new();
    let mut log = log;
    while addrs.len() < 2 {
        let Some((kind, addr)) = rx.blocking_recv() else {
            let mut said = Vec::new();
            while let Ok(line) = log.try_recv() {
                said.push(line);
            }
            panic!("siren exited before listening:\n{}", said.join("\n"));
        };
        addrs.insert(kind, addr);
    }
    Process {
        child,
        smtp: addrs["smtp"],
        http: addrs["http"],
        log,
    }
}

/// Writes a configuration with ports 0 and a store in `dir`; returns its path.
pub fn write_config(dir: &Path) -> PathBuf {
    write_config_with(dir, "")
}

/// As `write_config`, with extra `[smtp]` keys.
pub fn write_config_with(dir: &Path, extra_smtp: &str) -> PathBuf {
    let config = dir.join("siren.toml");
    std::fs::write(
        &config,
        format!(
            "[smtp]\nlisten = [\"127.0.0.1:0\"]\n{extra_smtp}\n[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
             [[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\n",
            dir.join("store").display()
        ),
    )
    .unwrap();
    config
}

pub async fn start(config: &Path) -> Process {
    let config = config.to_owned();
    tokio::task::spawn_blocking(move || spawn(&config))
        .await
        .unwrap()
}

/// Every log entry of `ops` with its data, following the cursor through all pages.
pub async fn all_logs(http: SocketAddr) -> Vec<serde_json::Value> {
    crate::helpers::log_details(http, "ops").await
}

#[tokio::test]
async fn sigterm_drains_open_sessions_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut p = start(&config).await;
    let mut busy = Smtp::greeted(p.smtp).await;
    busy.start_data("ops@alerts.localhost").await;
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

/// Sends from `clients` concurrent sessions, `per_client` messages each, until the daemon goes
/// away; returns the Message-IDs that got 250. Notifies `reached` at `kill_after` acks.
async fn burst(
    addr: SocketAddr,
    round: usize,
    clients: usize,
    per_client: usize,
    kill_after: usize,
    reached: Arc<Notify>,
) -> Vec<String> {
    let accepted = Arc::new(AtomicUsize::new(0));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    for client in 0..clients {
        let (accepted, reached, done_tx) = (accepted.clone(), reached.clone(), done_tx.clone());
        tokio::spawn(async move {
            let mut c = Smtp::greeted(addr).await;
            c.cmd("EHLO burst.test", "250").await;
            for n in 0..per_client {
                let id = format!("r{round}-c{client}-{n}@burst");
                c.send_raw(
                    b"MAIL FROM:<burst@example.com>\r\nRCPT TO:<ops@alerts.localhost>\r\nDATA\r\n",
                )
                .await;
                let replies = [c.reply().await, c.reply().await, c.reply().await];
                if !replies[2].starts_with("354") {
                    return;
                }
                // The subject is the id too, so that a list's summaries name every message.
                c.send_raw(&message(&id, &id)).await;
                c.send_raw(b".\r\n").await;
                if !c.reply().await.starts_with("250") {
                    return; // killed: this one was never acknowledged
                }
                let _ = done_tx.send(id);
                if accepted.fetch_add(1, Ordering::SeqCst) + 1 == kill_after {
                    reached.notify_one();
                }
            }
        });
    }
    drop(done_tx);
    let mut acked = Vec::new();
    while let Some(id) = done_rx.recv().await {
        acked.push(id);
    }
    acked
}

/// 20 rounds of: start, 2,000 messages from 10 concurrent clients, SIGKILL at a random moment,
/// restart, and check by Message-ID that every message answered 250, in that round or any round
/// before, is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkill_rounds_lose_and_duplicate_nothing() {
    two_chains(20, Kept::Logs).await;
}

/// The same with count retention at work in every group: `logs.max_entries` is smaller than a
/// group, so the entries a group drops were often written by the group before, which the
/// writer still holds back from sled while this group's record is made durable
/// (`store/commit.rs`), or by the group itself. Each message is an alert of its own (its
/// subject is its id), which log retention leaves in place: after each restart every message
/// answered 250 has its alert, exactly once, and the integration holds exactly
/// `max_entries` log entries, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_rounds_with_count_retention_lose_nothing() {
    two_chains(8, Kept::Alerts).await;
}

/// `rounds` SIGKILL rounds as two chains of half as many, each on a store of its own, at the
/// same time (a round mostly waits for commits, so two chains take little longer than one);
/// asserts that no acknowledged message was lost or stored twice.
async fn two_chains(rounds: usize, kept: Kept) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let (a, b) = tokio::join!(
        sigkill_rounds(0..rounds / 2, seed, kept),
        sigkill_rounds(rounds / 2..rounds, seed.rotate_left(32) | 1, kept),
    );
    let (total_acked, total_lost, total_duplicated) = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
    println!(
        "{rounds} SIGKILL rounds (seed {seed}): {total_acked} messages acknowledged, {total_lost} lost, {total_duplicated} duplicated"
    );
    assert_eq!((total_lost, total_duplicated), (0, 0));
}

/// What a chain of SIGKILL rounds checks every acknowledged message against.
#[derive(Clone, Copy, PartialEq)]
enum Kept {
    /// Its log entry (every entry is kept).
    Logs,
    /// Its alert, while count retention keeps [`RETAINED`] log entries.
    Alerts,
}

/// `logs.max_entries` of the [`Kept::Alerts`] rounds: less than a group of the 10 clients (one
/// message each in flight), so a group often drops entries of its own as well.
const RETAINED: usize = 4;

/// The ids a restarted daemon holds, one per stored message (by summary or by alert title).
async fn stored_ids(http: SocketAddr, kept: Kept) -> Vec<String> {
    let (path, list, field) = match kept {
        Kept::Logs => (
            "/api/v1/integrations/ops/logs?limit=1000",
            "logs",
            "summary",
        ),
        Kept::Alerts => (
            "/api/v1/alerts?integration=ops&limit=1000",
            "alerts",
            "title",
        ),
    };
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = crate::helpers::http_get(http, &format!("{path}{cursor}")).await;
        assert_eq!(status, 200, "{body}");
        for item in body[list].as_array().unwrap() {
            ids.push(item[field].as_str().unwrap().to_string());
        }
        match body["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => return ids,
        }
    }
}

/// One chain of SIGKILL rounds on a store of its own: (acknowledged, lost, duplicated).
async fn sigkill_rounds(
    rounds: std::ops::Range<usize>,
    seed: u64,
    kept: Kept,
) -> (usize, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let max_entries = match kept {
        Kept::Logs => 1_000_000,
        Kept::Alerts => RETAINED,
    };
    let config = write_config_with(dir.path(), &format!("[logs]\nmax_entries = {max_entries}"));
    let mut rng = seed;
    let (mut total_acked, mut total_lost, mut total_duplicated) = (0, 0, 0);
    let mut ever_acked: Vec<String> = Vec::new();
    for round in rounds {
        // xorshift: a kill point anywhere in the burst, from the first 250 to the last.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = 1 + (rng % 2000) as usize;
        let mut p = start(&config).await;
        let reached = Arc::new(Notify::new());
        let mut sending = tokio::spawn(burst(p.smtp, round, 10, 200, kill_after, reached.clone()));
        // Killed at the chosen ack, or (should a client stop early) when the burst is over.
        let finished = tokio::select! {
            _ = reached.notified() => None,
            acked = &mut sending => Some(acked.unwrap()),
        };
        p.child.kill().expect("SIGKILL");
        p.child.wait().unwrap();
        let acked = match finished {
            Some(acked) => acked,
            None => sending.await.unwrap(),
        };

        let mut p = start(&config).await;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for id in stored_ids(p.http, kept).await {
            *seen.entry(id).or_default() += 1;
        }
        // Every message answered 250 in this round and in every round before (a restart must
        // not hand out the ids of what earlier rounds stored).
        ever_acked.extend(acked.iter().cloned());
        let lost = ever_acked
            .iter()
            .filter(|id| !seen.contains_key(*id))
            .count();
        let duplicated = seen.values().filter(|n| **n > 1).count();
        println!(
            "round {round:2}: killed after {kill_after:4} acks; acked {:4}, lost {lost}, duplicated {duplicated}",
            acked.len()
        );
        if kept == Kept::Alerts {
            // Every message stored so far is an alert; the log keeps the newest few, once.
            let logs = stored_ids(p.http, Kept::Logs).await;
            assert_eq!(
                logs.len(),
                RETAINED.min(seen.len()),
                "round {round}: {logs:?}"
            );
            let distinct: std::collections::HashSet<_> = logs.iter().collect();
            assert_eq!(distinct.len(), logs.len(), "round {round}: {logs:?}");
            assert!(logs.iter().all(|id| seen.contains_key(id)), "{logs:?}");
        }
        total_acked += acked.len();
        total_lost += lost;
        total_duplicated += duplicated;
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }
    (total_acked, total_lost, total_duplicated)
}
