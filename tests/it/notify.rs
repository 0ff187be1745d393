//! sd_notify on the real binary, with `NOTIFY_SOCKET` on a datagram socket of the test's own
//! standing in for systemd: READY=1 only once SMTP and HTTP accept connections, WATCHDOG=1
//! pings at half `WATCHDOG_USEC`, STOPPING=1 on SIGTERM, then exit 0.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::UnixDatagram;
use tokio::sync::mpsc;

use crate::helpers::{Smtp, http_get};
use crate::process::write_config;

/// The binary, started by the caller's `Command`, reporting to `socket` as it would to systemd.
pub struct Notified {
    pub child: Child,
    notifications: mpsc::UnboundedReceiver<String>,
    log: mpsc::UnboundedReceiver<String>,
    stderr: Option<JoinHandle<Vec<String>>>,
}

/// `siren run --config CONFIG` with `NOTIFY_SOCKET` set to `socket`; the caller may add to it.
pub fn command(config: &Path, socket: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_siren"));
    cmd.args(["run", "--config"])
        .arg(config)
        .env("NOTIFY_SOCKET", socket)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("SIREN_LOG_FORMAT")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

impl Notified {
    /// Binds `socket`, then spawns `cmd` (made by [`command`] with the same path).
    pub fn spawn(mut cmd: Command, socket: &Path) -> Notified {
        let socket = UnixDatagram::bind(socket).expect("bind the notify socket");
        // Read at once, as systemd does: a socket's queue holds only a few datagrams, and a
        // sender that finds it full loses the message.
        let (tx, notifications) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = vec![0; 4096];
            while let Ok(n) = socket.recv(&mut buf).await {
                let message = String::from_utf8(buf[..n].to_vec()).unwrap();
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
        let mut child = cmd.spawn().expect("start siren");
        let stderr = child.stderr.take().unwrap();
        // Passes each line on as it comes and keeps the whole log for the end; drains the pipe
        // so that it never fills.
        let (log_tx, log) = mpsc::unbounded_channel();
        let stderr = std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .inspect(|line| {
                    let _ = log_tx.send(line.clone());
                })
                .collect()
        });
        Notified {
            child,
            notifications,
            log,
            stderr: Some(stderr),
        }
    }

    /// The next notification; fails the test if none comes within 10 s.
    pub async fn recv(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(10), self.notifications.recv())
            .await
            .expect("a notification within 10 s")
            .expect("the notify socket is open")
    }

    /// Waits for READY=1, which must be the first notification; returns the SMTP and HTTP
    /// addresses from its STATUS.
    pub async fn ready(&mut self) -> (SocketAddr, SocketAddr) {
        let ready = self.recv().await;
        assert!(
            ready.starts_with("READY=1\n"),
            "first notification: {ready:?}"
        );
        addrs(&ready)
    }

    /// Waits for the next log line containing `needle`; panics if the daemon exits first.
    pub async fn log_line(&mut self, needle: &str) -> String {
        while let Some(line) = self.log.recv().await {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("siren exited before logging {needle:?}");
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits for the process to end; returns its status and every line it logged.
    pub async fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let stderr = self.stderr.take().unwrap();
        tokio::task::spawn_blocking(move || {
            let status = self.child.wait().unwrap();
            (status, stderr.join().unwrap())
        })
        .await
        .unwrap()
    }
}

/// The addresses in `STATUS=SMTP on A[, B…]; HTTP on C`: the first SMTP one, and HTTP's.
fn addrs(ready: &str) -> (SocketAddr, SocketAddr) {
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY=1 without a STATUS: {ready:?}"));
    let (smtp, http) = status
        .strip_prefix("SMTP on ")
        .and_then(|s| s.split_once("; HTTP on "))
        .unwrap_or_else(|| panic!("unexpected STATUS: {status:?}"));
    let smtp = smtp.split(", ").next().unwrap();
    (smtp.parse().unwrap(), http.parse().unwrap())
}

#[tokio::test]
async fn ready_once_listening_then_watchdog_pings_then_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let socket = dir.path().join("notify");
    let mut cmd = command(&config, &socket);
    // 100 ms: a ping every 50 ms.
    cmd.env("WATCHDOG_USEC", "100000");
    let mut d = Notified::spawn(cmd, &socket);

    let (smtp, http) = d.ready().await;
    // Nothing else has happened first: both ports answer right away.
    let mut idle = Smtp::greeted(smtp).await;
    idle.cmd("EHLO client.test", "250").await;
    assert_eq!(http_get(http, "/healthz").await.0, 200);

    for _ in 0..3 {
        assert_eq!(d.recv().await, "WATCHDOG=1\n");
    }

    d.sigterm();
    loop {
        match d.recv().await.as_str() {
            "WATCHDOG=1\n" => continue,
            m => {
                assert!(m.starts_with("STOPPING=1\n"), "after SIGTERM: {m:?}");
                break;
            }
        }
    }
    idle.expect("421 4.3.0").await;
    let (status, log) = d.wait().await;
    assert_eq!(status.code(), Some(0), "clean exit after SIGTERM: {log:#?}");
}

#[tokio::test]
async fn no_watchdog_pings_when_watchdog_pid_names_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let socket = dir.path().join("notify");
    let mut cmd = command(&config, &socket);
    // 2 ms: were the watchdog on, it would ping every millisecond of the session below.
    cmd.env("WATCHDOG_USEC", "2000").env("WATCHDOG_PID", "1");
    let mut d = Notified::spawn(cmd, &socket);

    let (smtp, _) = d.ready().await;
    let mut c = Smtp::greeted(smtp).await;
    let reply = c
        .mail(
            "monitor@example.com",
            &["ops@alerts.localhost"],
            &crate::helpers::message("pid", "pid@x"),
        )
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    d.sigterm();
    let next = d.recv().await;
    assert!(
        next.starts_with("STOPPING=1\n"),
        "only STOPPING after READY: {next:?}"
    );
    assert_eq!(d.wait().await.0.code(), Some(0));
}
