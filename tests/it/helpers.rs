//! Shared test helpers: an in-process daemon on 127.0.0.1:0 with a temporary store, a raw SMTP
//! client that checks replies line by line, and an HTTP client for the API.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use siren::Config;
use siren::store::WriterHandle;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The configuration tests run on: the example's integrations, ports 0, a given store path.
pub fn test_config(store: &Path, extra_smtp: &str) -> Config {
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
hostname = "siren.test"
{extra_smtp}

[http]
listen = "127.0.0.1:0"

[store]
path = "{store}"

[[integrations]]
id = "ops"
type = "email"
addresses = ["ops@alerts.localhost", "*@nagios.alerts.localhost"]

[[integrations]]
id = "zabbix"
type = "email"
addresses = ["zabbix@alerts.localhost"]

[[integrations]]
id = "prometheus"
type = "email"
addresses = ["prometheus@alerts.localhost"]

[[integrations]]
id = "db"
type = "email"
addresses = ["db@alerts.localhost", "ops+special@alerts.localhost"]
"#,
        store = store.display()
    );
    Config::parse(&text, Path::new("test.toml")).expect("test config is valid")
}

/// A daemon running in this process.
pub struct Daemon {
    pub smtp: SocketAddr,
    pub http: SocketAddr,
    pub writer: WriterHandle,
    pub dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Daemon {
    pub async fn start() -> Daemon {
        Self::start_with("").await
    }

    /// Starts with extra `[smtp]` keys (e.g. `max_recipients = 3`).
    pub async fn start_with(extra_smtp: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = test_config(&dir.path().join("store"), extra_smtp);
        let mut d = Self::start_config(config).await;
        d.dir = Some(dir);
        d
    }

    pub async fn start_config(config: Config) -> Daemon {
        let app = siren::App::build(config).await.expect("daemon starts");
        let smtp = app.smtp_addrs()[0];
        let http = app.http_addr();
        let writer = app.writer();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        Daemon {
            smtp,
            http,
            writer,
            dir: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Asks for a graceful stop (as SIGTERM does) without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stops gracefully and waits until the daemon has finished.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.begin_stop();
        if let Some(task) = self.task.take() {
            task.await
                .expect("daemon task")
                .expect("daemon stops cleanly");
        }
        self.dir.take()
    }

    /// Resolves when the daemon has finished (after `begin_stop`).
    pub async fn finished(&mut self) {
        if let Some(task) = self.task.take() {
            task.await
                .expect("daemon task")
                .expect("daemon stops cleanly");
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        http_get(self.http, path).await
    }

    /// The log entries of one integration, newest first, each with its data and raw input
    /// (a list has only the summaries; each entry's detail has the rest).
    pub async fn logs(&self, integration: &str) -> Vec<Value> {
        log_details(self.http, integration).await
    }
}

/// Every log entry of `integration` as `GET /api/v1/logs/{id}` shows it, newest first,
/// following the list's cursor through all pages.
pub async fn log_details(addr: SocketAddr, integration: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/integrations/{integration}/logs?limit=1000{cursor}");
        let (status, body) = http_get(addr, &path).await;
        assert_eq!(status, 200, "{body}");
        for summary in body["logs"].as_array().expect("logs array") {
            let id = summary["id"].as_str().expect("log id");
            let (status, entry) = http_get(addr, &format!("/api/v1/logs/{id}")).await;
            assert_eq!(status, 200, "{entry}");
            all.push(entry);
        }
        match body["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => return all,
        }
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("http request");
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// A raw SMTP client: sends exactly the bytes given and reads whole (multi-line) replies.
pub struct Smtp {
    rd: BufReader<OwnedReadHalf>,
    wr: Option<OwnedWriteHalf>,
}

impl Smtp {
    pub async fn connect(addr: SocketAddr) -> Smtp {
        let s = TcpStream::connect(addr).await.expect("connect");
        let (rd, wr) = s.into_split();
        Smtp {
            rd: BufReader::new(rd),
            wr: Some(wr),
        }
    }

    /// A client on a connected stream (e.g. one bound to another loopback address).
    pub fn from_stream(s: TcpStream) -> Smtp {
        let (rd, wr) = s.into_split();
        Smtp {
            rd: BufReader::new(rd),
            wr: Some(wr),
        }
    }

    /// A client on the read half of a connection whose write half the caller keeps.
    pub fn from_read_half(rd: OwnedReadHalf) -> Smtp {
        Smtp {
            rd: BufReader::new(rd),
            wr: None,
        }
    }

    /// Connects and reads the greeting, asserting it is 220.
    pub async fn greeted(addr: SocketAddr) -> Smtp {
        let mut c = Self::connect(addr).await;
        c.expect("220").await;
        c
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let wr = self.wr.as_mut().expect("this client writes");
        wr.write_all(bytes).await.expect("write");
    }

    /// Sends a command line (CRLF added).
    pub async fn send(&mut self, line: &str) -> &mut Self {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self
    }

    /// Reads one whole reply; empty when the server closed the connection.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match self.rd.read_line(&mut line).await {
                Ok(0) | Err(_) => return all,
                Ok(_) => {}
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    /// Reads a reply and asserts it starts with `prefix` (e.g. "250" or "550 5.1.1").
    pub async fn expect(&mut self, prefix: &str) -> String {
        let r = self.reply().await;
        assert!(r.starts_with(prefix), "expected {prefix:?}, got {r:?}");
        r
    }

    /// Sends a command and asserts the reply prefix.
    pub async fn cmd(&mut self, line: &str, prefix: &str) -> String {
        self.send(line).await;
        self.expect(prefix).await
    }

    /// True once the server has closed the connection (reads EOF).
    pub async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut self.rd, &mut rest)
            .await
            .is_ok()
    }

    /// EHLO, MAIL FROM, one RCPT TO and DATA, each answered as expected: ready for the message.
    pub async fn start_data(&mut self, to: &str) {
        self.cmd("EHLO client.test", "250").await;
        self.cmd("MAIL FROM:<a@example.com>", "250").await;
        self.cmd(&format!("RCPT TO:<{to}>"), "250").await;
        self.cmd("DATA", "354").await;
    }

    /// A whole transaction; returns the reply to the final dot.
    pub async fn mail(&mut self, from: &str, to: &[&str], message: &[u8]) -> String {
        self.cmd("EHLO client.test", "250").await;
        self.cmd(&format!("MAIL FROM:<{from}>"), "250").await;
        for t in to {
            self.cmd(&format!("RCPT TO:<{t}>"), "250").await;
        }
        self.cmd("DATA", "354").await;
        self.send_raw(&dot_stuff(message)).await;
        self.send_raw(b".\r\n").await;
        self.reply().await
    }
}

/// Dot-stuffs a CRLF message and makes sure it ends with CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A small valid message.
pub fn message(subject: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: monitor@example.com\r\nTo: ops@alerts.localhost\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nbody of {subject}\r\n"
    )
    .into_bytes()
}

/// Sends one message on a new connection and asserts it was accepted.
pub async fn deliver(addr: SocketAddr, to: &[&str], msg: &[u8]) {
    let mut c = Smtp::greeted(addr).await;
    let r = c.mail("monitor@example.com", to, msg).await;
    assert!(r.starts_with("250 2.0.0"), "delivery refused: {r}");
    c.cmd("QUIT", "221").await;
}
