//! One SMTP session: Siren's own bounded line reader drives `mailin`'s state machine.
//!
//! mailin decides the protocol (command syntax, command order); this loop owns everything
//! mailin leaves to its caller: line length, message size, bare-LF rejection, timeouts,
//! shutdown, ESMTP parameters, AUTH, and the durable commit before the reply to the final dot.
//! Message lines never go through mailin: the loop un-stuffs and collects them itself and hands
//! mailin only the terminating dot, so the whole message is in one buffer it owns.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mailin::{Handler, Response, Session};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use super::{Context, reply};
use crate::clock;
use crate::config::Config;
use crate::email::Envelope;
use crate::http::constant_time_eq;
use crate::ingest;
use crate::metrics::SmtpRejection;
use crate::route::Route;

/// Protocol errors after which the client is cut off (as Postfix's `smtpd_hard_error_limit`).
const MAX_ERRORS: u32 = 20;

/// The transaction being built, shared by the mailin handler and the loop.
#[derive(Default)]
struct Transaction {
    helo: String,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    /// Each integration the message goes to, once, with the recipients that route there.
    routes: Vec<(Route, Vec<String>)>,
    /// Set by the loop just before it hands mailin a `MAIL FROM:<>` rewritten for its parser.
    null_sender: bool,
    /// The configuration this transaction routes and ingests with, taken at MAIL: a reload
    /// in the middle never mixes two configurations in one message.
    config: Option<Arc<Config>>,
}

struct SirenHandler {
    ctx: Arc<Context>,
    tx: Arc<Mutex<Transaction>>,
}

impl Handler for SirenHandler {
    fn helo(&mut self, _ip: std::net::IpAddr, domain: &str) -> Response {
        let mut tx = self.tx.lock().expect("transaction lock");
        tx.helo = domain.to_string();
        tx.mail_from = None;
        mailin::response::OK
    }

    fn mail(&mut self, _ip: std::net::IpAddr, _domain: &str, from: &str) -> Response {
        let mut tx = self.tx.lock().expect("transaction lock");
        let from = if tx.null_sender { "" } else { from };
        tx.mail_from = Some(from.to_string());
        tx.rcpt_to.clear();
        tx.routes.clear();
        tx.config = Some(self.ctx.live.get());
        Response::custom(250, reply::MAIL_OK.into())
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let mut tx = self.tx.lock().expect("transaction lock");
        if tx.rcpt_to.len() >= self.ctx.config.smtp.max_recipients {
            return Response::custom(452, reply::TOO_MANY_RECIPIENTS.into());
        }
        let config = tx.config.get_or_insert_with(|| self.ctx.live.get());
        let Some(route) = config.router.route(to) else {
            return Response::custom(550, reply::no_integration(to));
        };
        tx.rcpt_to.push(to.to_string());
        match tx
            .routes
            .iter_mut()
            .find(|(r, _)| r.integration == route.integration)
        {
            Some((_, rcpts)) => rcpts.push(to.to_string()),
            None => tx.routes.push((route, vec![to.to_string()])),
        }
        Response::custom(250, reply::RCPT_OK.into())
    }
}

/// Why a line could not be read.
enum ReadError {
    TooLong,
    Closed,
    Io(std::io::Error),
}

/// Reads one line ending in `\n` into `buf` (cleared first), never holding more than `max` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<(), ReadError> {
    buf.clear();
    loop {
        let avail = r.fill_buf().await.map_err(ReadError::Io)?;
        if avail.is_empty() {
            return Err(ReadError::Closed);
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > max {
            return Err(ReadError::TooLong);
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if done {
            return Ok(());
        }
    }
}

/// Serves one client until it quits, misbehaves, times out, or the daemon stops.
/// `stop`: stop taking new work (a session between transactions is closed with 421);
/// `abort`: the drain deadline has passed (every session is closed with 421).
pub async fn run<S>(
    stream: S,
    peer: SocketAddr,
    ctx: Arc<Context>,
    stop: CancellationToken,
    abort: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let mut driver = Driver::new(peer, ctx.clone());
    let greeting = reply::greeting(&ctx.config.smtp.hostname);
    driver.out.extend_from_slice(greeting.as_bytes());
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(8 * 1024, rd);
    let ended = driver.serve(&mut rd, &mut wr, &stop, &abort).await;
    let Ok(Ended::StartTls) = ended else {
        return finish(peer, ended, rd, wr).await;
    };
    let Some(tls) = ctx.config.smtp.tls.clone() else {
        return; // mailin offers STARTTLS only when a certificate is configured
    };
    // RFC 3207: anything the client pipelined after STARTTLS is discarded with the buffer.
    let stream = rd.into_inner().unsplit(wr);
    let handshake = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
    let stream = match tokio::time::timeout(ctx.config.smtp.idle_timeout, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            ctx.metrics.smtp_rejected(SmtpRejection::TlsHandshake);
            return tracing::info!(%peer, error = %e, "TLS handshake failed; closing");
        }
        Err(_) => {
            ctx.metrics.smtp_rejected(SmtpRejection::TlsHandshake);
            return tracing::info!(%peer, "TLS handshake timed out; closing");
        }
    };
    driver.start_tls();
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(8 * 1024, rd);
    let ended = driver.serve(&mut rd, &mut wr, &stop, &abort).await;
    finish(peer, ended, rd, wr).await;
}

/// How a stretch of a session on one transport ended.
enum Ended {
    Closed,
    /// The client asked for STARTTLS and got its 220: the transport must be upgraded.
    StartTls,
}

async fn finish<R, W>(peer: SocketAddr, ended: std::io::Result<Ended>, mut rd: R, mut wr: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "smtp session ended with an I/O error");
    }
    let _ = wr.shutdown().await;
    linger(&mut rd).await;
}

/// Lingering close: after our last reply and FIN, read and discard what the client still
/// sends, for a short while, before closing. Closing a socket with unread input makes the
/// kernel send a reset, which can destroy the reply (a 500 or 521) before the client reads it.
async fn linger<R: AsyncRead + Unpin>(rd: &mut R) {
    const MAX_TIME: Duration = Duration::from_secs(2);
    const MAX_BYTES: usize = 1 << 20;
    let mut sink = [0u8; 8192];
    let mut drained = 0;
    let drain = async {
        while drained < MAX_BYTES {
            match tokio::io::AsyncReadExt::read(rd, &mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(MAX_TIME, drain).await;
}

struct Driver {
    peer: SocketAddr,
    ctx: Arc<Context>,
    session: Session<SirenHandler>,
    tx: Arc<Mutex<Transaction>>,
    /// Replies not yet written (pipelining lets several queue up).
    out: Vec<u8>,
    errors: u32,
    session_deadline: Instant,
    tls_active: bool,
    auth: Auth,
    /// When each final dot whose 250 is queued but not yet written was read (real time, for
    /// the latency histogram; paused test clocks do not apply).
    unwritten_250s: Vec<std::time::Instant>,
}

/// Where the session stands with AUTH (RFC 4954), which Siren handles itself: mailin's AUTH,
/// once enabled, makes it mandatory for every session and has no 538 or `*` cancel.
#[derive(PartialEq)]
enum Auth {
    None,
    /// A 334 challenge was sent: the next line is the client's answer, not a command.
    Pending {
        mechanism: Mechanism,
        username: Option<Vec<u8>>,
    },
    Done,
}

#[derive(Clone, Copy, PartialEq)]
enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "plain",
            Mechanism::Login => "login",
        }
    }
}

/// What to do after a reply.
#[derive(PartialEq)]
enum Next {
    Continue,
    Data,
    StartTls,
    Close,
}

/// What waiting for the client's next line produced.
enum Event {
    Line,
    Read(ReadError),
    Timeout,
    Shutdown,
}

impl Driver {
    fn new(peer: SocketAddr, ctx: Arc<Context>) -> Self {
        let tx = Arc::new(Mutex::new(Transaction::default()));
        let handler = SirenHandler {
            ctx: ctx.clone(),
            tx: tx.clone(),
        };
        let session = ctx.session_builder.build(peer.ip(), handler);
        let session_deadline = Instant::now() + ctx.config.smtp.session_timeout;
        Self {
            peer,
            ctx,
            session,
            tx,
            out: Vec::with_capacity(512),
            errors: 0,
            session_deadline,
            tls_active: false,
            auth: Auth::None,
            unwritten_250s: Vec::new(),
        }
    }

    async fn serve<R, W>(
        &mut self,
        rd: &mut BufReader<R>,
        wr: &mut W,
        stop: &CancellationToken,
        abort: &CancellationToken,
    ) -> std::io::Result<Ended>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let host = self.ctx.config.smtp.hostname.clone();
        let mut line = Vec::with_capacity(1024);
        loop {
            let in_transaction = self
                .tx
                .lock()
                .expect("transaction lock")
                .mail_from
                .is_some();
            let stop = (!in_transaction).then_some(stop);
            if !self.next_line(rd, wr, &mut line, abort, stop).await? {
                break;
            }
            match self.command(&line, &host) {
                Next::Continue => {}
                Next::Close => break,
                Next::StartTls => {
                    let deadline = Instant::now() + self.ctx.config.smtp.idle_timeout;
                    self.flush(wr, deadline).await?;
                    return Ok(Ended::StartTls);
                }
                Next::Data => {
                    if self.data(rd, wr, &mut line, abort).await? == Next::Close {
                        break;
                    }
                }
            }
        }
        let deadline = Instant::now()
            + self
                .ctx
                .config
                .smtp
                .idle_timeout
                .min(Duration::from_secs(10));
        self.flush(wr, deadline).await?;
        Ok(Ended::Closed)
    }

    /// The transport is now TLS: mailin resets to a fresh session that must EHLO again.
    fn start_tls(&mut self) {
        self.tls_active = true;
        self.auth = Auth::None;
        *self.tx.lock().expect("transaction lock") = Transaction::default();
        self.session.tls_active();
    }

    /// Waits for the next line, writing queued replies first when the client has sent all it
    /// had. Returns false when the session must end; the closing reply is then queued.
    async fn next_line<R, W>(
        &mut self,
        rd: &mut BufReader<R>,
        wr: &mut W,
        line: &mut Vec<u8>,
        abort: &CancellationToken,
        stop: Option<&CancellationToken>,
    ) -> std::io::Result<bool>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let ctx = self.ctx.clone();
        let cfg = &ctx.config.smtp;
        // A whole line already buffered (a message's lines, pipelined commands) is taken
        // without a timer or a select: the deadlines and signals are checked whenever the
        // loop has to wait for the client, which is at least once per buffer it reads.
        let stopping = abort.is_cancelled() || stop.is_some_and(|s| s.is_cancelled());
        if !stopping
            && let Some(end) = rd.buffer().iter().position(|&b| b == b'\n')
            && end < cfg.max_line_length
        {
            line.clear();
            line.extend_from_slice(&rd.buffer()[..=end]);
            rd.consume(end + 1);
            return Ok(true);
        }
        let deadline = self.session_deadline.min(Instant::now() + cfg.idle_timeout);
        if !rd.buffer().contains(&b'\n') {
            self.flush(wr, deadline).await?;
        }
        let event = tokio::select! {
            biased;
            _ = abort.cancelled() => Event::Shutdown,
            _ = async { stop.expect("guarded").cancelled().await }, if stop.is_some() => Event::Shutdown,
            r = timeout_at(deadline, read_line(rd, line, cfg.max_line_length)) => match r {
                Ok(Ok(())) => Event::Line,
                Ok(Err(e)) => Event::Read(e),
                Err(_) => Event::Timeout,
            },
        };
        let host = &cfg.hostname;
        let (reason, text) = match event {
            Event::Line => return Ok(true),
            Event::Shutdown => (SmtpRejection::Shutdown, reply::SHUTTING_DOWN.to_string()),
            Event::Timeout if Instant::now() >= self.session_deadline => {
                (SmtpRejection::Timeout, reply::session_timeout(host))
            }
            Event::Timeout => (SmtpRejection::Timeout, reply::idle_timeout(host)),
            Event::Read(ReadError::TooLong) => {
                (SmtpRejection::LineLength, reply::LINE_TOO_LONG.to_string())
            }
            Event::Read(ReadError::Closed) => return Ok(false),
            Event::Read(ReadError::Io(e)) => return Err(e),
        };
        self.ctx.metrics.smtp_rejected(reason);
        tracing::info!(peer = %self.peer, reply = text.trim_end(), "closing smtp session");
        self.out.extend_from_slice(text.as_bytes());
        Ok(false)
    }

    /// Collects the message after `354` up to the final dot, then commits it and queues the
    /// reply: 250 only once it is durable.
    async fn data<R, W>(
        &mut self,
        rd: &mut BufReader<R>,
        wr: &mut W,
        line: &mut Vec<u8>,
        abort: &CancellationToken,
    ) -> std::io::Result<Next>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let max = self.ctx.config.smtp.max_message_size;
        let mut body = Vec::new();
        let mut oversize = false;
        loop {
            if !self.next_line(rd, wr, line, abort, None).await? {
                tracing::info!(peer = %self.peer, "message not received completely; nothing stored");
                return Ok(Next::Close);
            }
            if !line.ends_with(b"\r\n") {
                tracing::info!(peer = %self.peer, "bare LF in message data; rejected");
                self.ctx.metrics.smtp_rejected(SmtpRejection::BareLf);
                self.out.extend_from_slice(reply::BARE_LF.as_bytes());
                return Ok(Next::Close);
            }
            if line.as_slice() == b".\r\n" {
                break;
            }
            let content = line.strip_prefix(b".").unwrap_or(line);
            if oversize || body.len() + content.len() > max {
                oversize = true;
                body = Vec::new();
            } else {
                body.extend_from_slice(content);
            }
        }
        let dot = std::time::Instant::now();
        // mailin only needs to see the dot to return to its ready state; the reply is ours.
        self.session.process(b".\r\n");
        let (envelope, routes, config) = {
            let mut tx = self.tx.lock().expect("transaction lock");
            let from = tx.mail_from.take().unwrap_or_default();
            let envelope =
                Envelope::new(&from, std::mem::take(&mut tx.rcpt_to), self.peer, &tx.helo);
            let config = tx.config.take().unwrap_or_else(|| self.ctx.live.get());
            (envelope, std::mem::take(&mut tx.routes), config)
        };
        if oversize {
            tracing::info!(peer = %self.peer, max, "message too big; rejected");
            self.ctx.metrics.smtp_rejected(SmtpRejection::Size);
            self.out
                .extend_from_slice(reply::MESSAGE_TOO_BIG.as_bytes());
            return Ok(Next::Continue);
        }
        let received = ingest::email(
            &config,
            &self.ctx.writer,
            envelope,
            body,
            &routes,
            clock::now(),
        )
        .await;
        match received {
            Ok(receipts) => {
                let first = receipts.first().map(|r| r.log_id).unwrap_or_default();
                self.out.extend_from_slice(reply::queued(first).as_bytes());
                self.unwritten_250s.push(dot);
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "message not stored; answered 451");
                self.ctx.metrics.smtp_rejected(SmtpRejection::StoreFailure);
                self.out.extend_from_slice(reply::STORE_FAILED.as_bytes());
            }
        }
        Ok(Next::Continue)
    }

    async fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        deadline: Instant,
    ) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = async {
            wr.write_all(&self.out).await?;
            wr.flush().await
        };
        match timeout_at(deadline, write).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "client does not read replies",
                ));
            }
        }
        self.out.clear();
        for dot in self.unwritten_250s.drain(..) {
            self.ctx.metrics.smtp_accepted(dot.elapsed());
        }
        Ok(())
    }

    /// Handles one command line (or the answer to an AUTH challenge); queues its reply.
    fn command(&mut self, line: &[u8], host: &str) -> Next {
        if let Auth::Pending { .. } = self.auth {
            return self.auth_response(line);
        }
        if !line.ends_with(b"\r\n") {
            return self.error(SmtpRejection::BareLf, reply::BARE_LF_COMMAND.as_bytes());
        }
        let verb: [u8; 4] =
            std::array::from_fn(|i| line.get(i).copied().unwrap_or(b' ').to_ascii_uppercase());
        let rewritten;
        let mut line = line;
        if &verb == b"AUTH" {
            return self.auth_command(line);
        }
        match &verb {
            // Before HELO/EHLO, mailin's 503 says what is missing first.
            b"MAIL" if self.needs_auth() => {
                return self.error(SmtpRejection::AuthRequired, reply::AUTH_REQUIRED.as_bytes());
            }
            b"MAIL" => match rewrite_mail(line, self.ctx.config.smtp.max_message_size) {
                Ok((l, null)) => {
                    self.tx.lock().expect("transaction lock").null_sender = null;
                    rewritten = l;
                    line = &rewritten;
                }
                Err(text) => {
                    let reason = if text == reply::MESSAGE_TOO_BIG {
                        SmtpRejection::Size
                    } else {
                        SmtpRejection::Protocol
                    };
                    return self.error(reason, text.as_bytes());
                }
            },
            b"RCPT" => match rewrite_rcpt(line) {
                Ok(l) => {
                    rewritten = l;
                    line = &rewritten;
                }
                Err(text) => return self.error(SmtpRejection::Protocol, text.as_bytes()),
            },
            _ => {}
        }
        let res = self.session.process(line);
        if &verb == b"RSET" && res.code == 250 {
            self.tx.lock().expect("transaction lock").mail_from = None;
        }
        let text = match (&verb, res.code) {
            (b"EHLO", 250) => {
                let helo = self.tx.lock().expect("transaction lock").helo.clone();
                let smtp = &self.ctx.config.smtp;
                let starttls = smtp.tls.is_some() && !self.tls_active;
                // RFC 4954: AUTH PLAIN/LOGIN send the password in the clear: offered only in TLS.
                let auth = self.tls_active && !smtp.users.is_empty();
                reply::ehlo(host, &helo, smtp.max_message_size, starttls, auth).into_bytes()
            }
            (b"HELO", 250) => reply::helo(host).into_bytes(),
            (_, 220) if res.action == mailin::Action::UpgradeTls => {
                reply::START_TLS.as_bytes().to_vec()
            }
            _ => reply::render(&res),
        };
        if res.is_error {
            let reason = match res.code {
                550 => SmtpRejection::UnknownRecipient,
                452 => SmtpRejection::Recipients,
                _ => SmtpRejection::Protocol,
            };
            return self.error(reason, &text);
        }
        self.out.extend_from_slice(&text);
        match (res.code, res.action) {
            (_, mailin::Action::Close) => Next::Close,
            (_, mailin::Action::UpgradeTls) => Next::StartTls,
            (354, _) => {
                self.ctx.metrics.smtp_received();
                Next::Data
            }
            _ => Next::Continue,
        }
    }

    /// `smtp.require_auth` is on, the client has said HELO/EHLO, and has not authenticated.
    fn needs_auth(&self) -> bool {
        self.ctx.config.smtp.require_auth
            && self.auth != Auth::Done
            && !self.tx.lock().expect("transaction lock").helo.is_empty()
    }

    /// `AUTH mechanism [initial-response]`: PLAIN or LOGIN, only inside TLS, only for
    /// configured users, outside a mail transaction, once per session.
    fn auth_command(&mut self, line: &[u8]) -> Next {
        if self.ctx.config.smtp.users.is_empty() {
            return self.error(SmtpRejection::Protocol, reply::AUTH_NOT_ENABLED.as_bytes());
        }
        if !self.tls_active {
            return self.error(
                SmtpRejection::EncryptionRequired,
                reply::ENCRYPTION_REQUIRED.as_bytes(),
            );
        }
        let sequence = {
            let tx = self.tx.lock().expect("transaction lock");
            if tx.helo.is_empty() {
                Some(reply::SEND_EHLO_FIRST)
            } else if tx.mail_from.is_some() {
                Some(reply::AUTH_IN_TRANSACTION)
            } else if self.auth == Auth::Done {
                Some(reply::ALREADY_AUTHENTICATED)
            } else {
                None
            }
        };
        if let Some(text) = sequence {
            return self.error(SmtpRejection::Protocol, text.as_bytes());
        }
        let args = line.get(4..).unwrap_or_default();
        let mut words = args
            .trim_ascii()
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty());
        let (Some(mechanism), initial, None) = (words.next(), words.next(), words.next()) else {
            return self.error(SmtpRejection::Protocol, reply::AUTH_SYNTAX.as_bytes());
        };
        let mechanism = match mechanism.to_ascii_uppercase().as_slice() {
            b"PLAIN" => Mechanism::Plain,
            b"LOGIN" => Mechanism::Login,
            _ => return self.error(SmtpRejection::Protocol, reply::AUTH_MECHANISM.as_bytes()),
        };
        let Some(initial) = initial else {
            let challenge = match mechanism {
                Mechanism::Plain => reply::AUTH_CHALLENGE,
                Mechanism::Login => reply::AUTH_USERNAME,
            };
            self.out.extend_from_slice(challenge.as_bytes());
            self.auth = Auth::Pending {
                mechanism,
                username: None,
            };
            return Next::Continue;
        };
        // RFC 4954: "=" is an initial response of zero length.
        let decoded = if initial == b"=" {
            Ok(Vec::new())
        } else {
            BASE64.decode(initial)
        };
        match decoded {
            Ok(decoded) => self.auth_step(mechanism, None, decoded),
            Err(_) => self.error(SmtpRejection::Protocol, reply::AUTH_BAD_BASE64.as_bytes()),
        }
    }

    /// The client's answer to a 334 challenge.
    fn auth_response(&mut self, line: &[u8]) -> Next {
        let Auth::Pending {
            mechanism,
            username,
        } = std::mem::replace(&mut self.auth, Auth::None)
        else {
            return Next::Continue;
        };
        let Some(answer) = line.strip_suffix(b"\r\n") else {
            return self.error(SmtpRejection::BareLf, reply::BARE_LF_COMMAND.as_bytes());
        };
        if answer == b"*" {
            return self.error(SmtpRejection::Protocol, reply::AUTH_ABORTED.as_bytes());
        }
        match BASE64.decode(answer) {
            Ok(decoded) => self.auth_step(mechanism, username, decoded),
            Err(_) => self.error(SmtpRejection::Protocol, reply::AUTH_BAD_BASE64.as_bytes()),
        }
    }

    /// One decoded SASL message: PLAIN's `authzid NUL authcid NUL password`, or LOGIN's user
    /// name and then its password.
    fn auth_step(
        &mut self,
        mechanism: Mechanism,
        username: Option<Vec<u8>>,
        decoded: Vec<u8>,
    ) -> Next {
        match (mechanism, username) {
            (Mechanism::Login, None) => {
                self.out.extend_from_slice(reply::AUTH_PASSWORD.as_bytes());
                self.auth = Auth::Pending {
                    mechanism,
                    username: Some(decoded),
                };
                Next::Continue
            }
            (Mechanism::Login, Some(user)) => self.authenticate(mechanism, &user, &decoded),
            (Mechanism::Plain, _) => {
                let mut fields = decoded.splitn(3, |&b| b == 0);
                match (fields.next(), fields.next(), fields.next()) {
                    // Siren does not act on behalf of another identity: authzid is empty or
                    // the user's own name.
                    (Some(authz), Some(user), Some(password))
                        if authz.is_empty() || authz == user =>
                    {
                        self.authenticate(mechanism, user, password)
                    }
                    _ => self.authenticate(mechanism, b"", b""),
                }
            }
        }
    }

    /// Checks the credentials against every configured user, in constant time per comparison
    /// and without stopping at a match, so timing tells neither names nor passwords.
    fn authenticate(&mut self, mechanism: Mechanism, user: &[u8], password: &[u8]) -> Next {
        let ok = self.ctx.config.smtp.users.iter().fold(false, |found, u| {
            let name = constant_time_eq(user, u.name.as_bytes());
            let pass = constant_time_eq(password, u.password.as_bytes());
            found | (name & pass)
        });
        self.ctx.metrics.smtp_auth(mechanism.name(), ok);
        let user = String::from_utf8_lossy(user);
        if ok {
            tracing::info!(peer = %self.peer, %user, mechanism = mechanism.name(), "authenticated");
            self.auth = Auth::Done;
            self.out.extend_from_slice(reply::AUTH_OK.as_bytes());
            Next::Continue
        } else {
            tracing::info!(peer = %self.peer, %user, mechanism = mechanism.name(), "authentication failed");
            self.error(SmtpRejection::AuthFailed, reply::AUTH_FAILED.as_bytes())
        }
    }

    /// Queues an error reply and cuts the client off after too many of them.
    fn error(&mut self, reason: SmtpRejection, text: &[u8]) -> Next {
        self.out.extend_from_slice(text);
        self.ctx.metrics.smtp_rejected(reason);
        // Only protocol errors count: refused recipients (550, 452) are the client's right to
        // try, and counting them would refuse a long recipient list on every retry. Failed
        // AUTH attempts count, so guessing passwords ends with the session.
        if !matches!(
            reason,
            SmtpRejection::UnknownRecipient | SmtpRejection::Recipients
        ) {
            self.errors += 1;
        }
        let closing = text.starts_with(b"421");
        if self.errors >= MAX_ERRORS && !closing {
            self.ctx.metrics.smtp_rejected(SmtpRejection::TooManyErrors);
            self.out
                .extend_from_slice(reply::TOO_MANY_ERRORS.as_bytes());
            return Next::Close;
        }
        if closing { Next::Close } else { Next::Continue }
    }
}

/// `MAIL FROM:<path> [params]` -> the form mailin parses, and whether the path was null.
/// SIZE is checked here (552 before any data is sent); BODY is kept; others are refused.
fn rewrite_mail(line: &[u8], max_size: usize) -> Result<(Vec<u8>, bool), &'static str> {
    let (path, params) = split_path(line, b"MAIL FROM:")?;
    let mut body = None;
    for p in params.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        let upper = p.to_ascii_uppercase();
        if let Some(size) = upper.strip_prefix(b"SIZE=") {
            let size: u64 = std::str::from_utf8(size)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(reply::UNSUPPORTED_PARAMETER)?;
            if size > max_size as u64 {
                return Err(reply::MESSAGE_TOO_BIG);
            }
        } else if upper == b"BODY=8BITMIME" || upper == b"BODY=7BIT" {
            body = Some(upper);
        } else {
            return Err(reply::UNSUPPORTED_PARAMETER);
        }
    }
    let null = path.is_empty();
    // mailin's parser needs a non-empty path; the handler records the null sender as "".
    let path: &[u8] = if null {
        b"MAILER-DAEMON@null.invalid"
    } else {
        path
    };
    let mut out = b"MAIL FROM:<".to_vec();
    out.extend_from_slice(path);
    out.push(b'>');
    if let Some(b) = body {
        out.push(b' ');
        out.extend_from_slice(&b);
    }
    out.extend_from_slice(b"\r\n");
    Ok((out, null))
}

/// `RCPT TO:<path>` with optional spaces after the colon; parameters are refused.
fn rewrite_rcpt(line: &[u8]) -> Result<Vec<u8>, &'static str> {
    let (path, params) = split_path(line, b"RCPT TO:")?;
    if !params.iter().all(|&b| b == b' ') {
        return Err(reply::UNSUPPORTED_PARAMETER);
    }
    if path.is_empty() {
        return Err(reply::BAD_ADDRESS_SYNTAX);
    }
    let mut out = b"RCPT TO:<".to_vec();
    out.extend_from_slice(path);
    out.extend_from_slice(b">\r\n");
    Ok(out)
}

/// Splits `PREFIX <path> params\r\n` into path and params. Anything else is bad syntax.
fn split_path<'a>(line: &'a [u8], prefix: &[u8]) -> Result<(&'a [u8], &'a [u8]), &'static str> {
    let bad = reply::BAD_ADDRESS_SYNTAX;
    if line.len() < prefix.len() || !line[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return Err(reply::NOT_RECOGNIZED);
    }
    let rest = line[prefix.len()..].strip_suffix(b"\r\n").ok_or(bad)?;
    let rest = rest.trim_ascii_start();
    let rest = rest.strip_prefix(b"<").ok_or(bad)?;
    let close = rest.iter().position(|&b| b == b'>').ok_or(bad)?;
    let path = &rest[..close];
    if path.iter().any(|&b| b == b'<' || b == b' ' || b == b'\t') {
        return Err(bad);
    }
    Ok((path, &rest[close + 1..]))
}
