//! A scripted SMTP session over `tokio::io::duplex`: Siren's real session code and a real
//! store in a temporary directory, without a socket, so that limits and replies read like the
//! RFC (`s.send("RCPT TO:<x@y>").expect("550 5.1.1").await`) and paused time drives every
//! timer. The socket tests (intake, hostile, tls) prove the same on the real listener.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use siren::smtp::{Context, serve_connection};
use siren::store::{LogEntry, Store, Writer};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
    ReadHalf, WriteHalf,
};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::helpers::test_config;
use crate::tls::write_certificate;

/// What every scripted session of one configuration shares: the context the accept loop
/// would hold, the store and its writer, and the daemon's stop signals.
pub struct Harness {
    pub ctx: Arc<Context>,
    pub store: Store,
    pub stop: CancellationToken,
    pub abort: CancellationToken,
    writer: Option<Writer>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// The test configuration (helpers::test_config) with extra `[smtp]` keys.
    pub async fn new(extra_smtp: &str) -> Harness {
        Self::in_dir(tempfile::tempdir().unwrap(), extra_smtp)
    }

    /// As [`Harness::new`] with STARTTLS on a new certificate, which is returned.
    pub async fn with_tls(extra_smtp: &str) -> (Harness, CertificateDer<'static>) {
        let dir = tempfile::tempdir().unwrap();
        let cert = write_certificate(dir.path());
        let d = dir.path().display();
        let keys = format!("tls_cert = \"{d}/tls.crt\"\ntls_key = \"{d}/tls.key\"\n{extra_smtp}");
        (Self::in_dir(dir, &keys), cert)
    }

    fn in_dir(dir: tempfile::TempDir, extra_smtp: &str) -> Harness {
        let config = test_config(&dir.path().join("store"), extra_smtp);
        let store = Store::open(&config.store.path).unwrap();
        let metrics = Arc::new(siren::metrics::Metrics::new());
        let (writer, handle) =
            Writer::spawn(store.clone(), config.logs.clone(), None, metrics.clone()).unwrap();
        let live = siren::config::Live::new(config);
        Harness {
            ctx: Arc::new(Context::new(live, handle, metrics)),
            store,
            stop: CancellationToken::new(),
            abort: CancellationToken::new(),
            writer: Some(writer),
            _dir: dir,
        }
    }

    /// A session from 127.0.0.1.
    pub fn session(&self) -> Script {
        self.session_from("127.0.0.1:40000".parse().unwrap())
    }

    /// A session from `peer`, as if accepted from there.
    pub fn session_from(&self, peer: SocketAddr) -> Script {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(serve_connection(
            server,
            peer,
            self.ctx.clone(),
            self.stop.clone(),
            self.abort.clone(),
        ));
        let (rd, wr) = tokio::io::split(client);
        Script {
            rd: BufReader::new(rd),
            wr: Some(wr),
            pending: Vec::new(),
            task: Some(task),
        }
    }

    /// The log entries of one integration, newest first.
    pub fn logs(&self, integration: &str) -> Vec<LogEntry> {
        let page = self.store.logs(integration, 1000, None).unwrap();
        page.items
            .iter()
            .map(|s| {
                let id = s.id.parse().unwrap();
                self.store.log(id).unwrap().expect("listed entry")
            })
            .collect()
    }

    /// One scrape of the daemon's metrics: the value of the series written exactly as exposed.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.ctx.metrics.encode();
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
            .parse()
            .unwrap()
    }

    /// `siren_messages_rejected_total` for SMTP and `reason`.
    pub fn rejected(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "siren_messages_rejected_total{{protocol=\"smtp\",reason=\"{reason}\"}}"
        ))
    }

    /// Stops the writer after what it holds is committed.
    pub async fn close(mut self) {
        if let Some(w) = self.writer.take() {
            w.join().await;
        }
    }
}

/// The client side of one scripted session: in the clear, or inside TLS after `starttls`.
pub struct Script<S = DuplexStream> {
    rd: BufReader<ReadHalf<S>>,
    wr: Option<WriteHalf<S>>,
    /// Lines queued by `send`, written by the next `expect` (so a script can pipeline).
    pending: Vec<u8>,
    task: Option<JoinHandle<()>>,
}

impl Script<DuplexStream> {
    /// STARTTLS and a handshake trusting `cert`: the session is ready for its second EHLO.
    pub async fn starttls(
        mut self,
        cert: &CertificateDer<'static>,
    ) -> Script<TlsStream<DuplexStream>> {
        self.send("STARTTLS").expect("220 2.0.0").await;
        let wr = self.wr.take().expect("this client writes");
        let stream = self.rd.into_inner().unsplit(wr);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(ServerName::try_from("localhost").unwrap(), stream)
            .await
            .expect("TLS handshake");
        let (rd, wr) = tokio::io::split(tls);
        Script {
            rd: BufReader::new(rd),
            wr: Some(wr),
            pending: Vec::new(),
            task: self.task.take(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Script<S> {
    /// Queues a command line (CRLF added); the next `expect` or `reply` writes it.
    pub fn send(&mut self, line: &str) -> &mut Self {
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.extend_from_slice(b"\r\n");
        self
    }

    /// Queues bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.pending.extend_from_slice(bytes);
        self
    }

    /// Writes what is queued. A session that has closed its side is not an error here: the
    /// reply the script reads next says why.
    pub async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.pending);
        if let Some(wr) = self.wr.as_mut() {
            let _ = wr.write_all(&bytes).await;
        }
    }

    /// Writes what is queued and reads one whole reply; empty when the session closed.
    pub async fn reply(&mut self) -> String {
        self.flush().await;
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

    /// The greeting, EHLO, MAIL and one RCPT, each answered as expected.
    pub async fn transaction(&mut self, to: &str) -> &mut Self {
        self.expect("220").await;
        self.send("EHLO client.test").expect("250").await;
        self.send("MAIL FROM:<a@example.com>").expect("250").await;
        self.send(&format!("RCPT TO:<{to}>")).expect("250").await;
        self
    }

    /// True once the session has closed its side and its task has ended. The client's side
    /// is closed too, which ends the lingering close.
    pub async fn closed(&mut self) -> bool {
        self.flush().await;
        let mut rest = Vec::new();
        let eof = self.rd.read_to_end(&mut rest).await.is_ok();
        if let Some(mut wr) = self.wr.take() {
            let _ = wr.shutdown().await;
        }
        if let Some(task) = self.task.take() {
            task.await.expect("session task panicked");
        }
        eof && rest.is_empty()
    }
}
