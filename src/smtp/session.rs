//! One SMTP session: the state its loop owns, the wait for each line, and command dispatch.
//!
//! mailin decides command syntax and order; Siren decides everything else before it hands
//! mailin a line (MAIL and RCPT parameters, routing, AUTH) and builds every reply itself. Each
//! command handler returns an [`Answer`]; [`Driver::answer`] queues it, counts it and cuts off
//! a client past its error budget, in one place. DATA is in `data`, SASL in `auth`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailin::Handler;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use super::auth::Auth;
use super::io::{Output, ReadError, finish, read_line};
use super::{Context, params, reply};
use crate::config::Config;
use crate::metrics::SmtpRejection;
use crate::route::Route;

/// Protocol errors after which the client is cut off (as Postfix's `smtpd_hard_error_limit`).
const MAX_ERRORS: u32 = 20;

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
    driver.out.push(greeting.as_bytes());
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(8 * 1024, rd);
    let ended = driver.serve(&mut rd, &mut wr, &stop, &abort).await;
    let Ok(Ended::StartTls) = ended else {
        return end(peer, ended, rd, wr).await;
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
    end(peer, ended, rd, wr).await;
}

async fn end<R, W>(peer: SocketAddr, ended: std::io::Result<Ended>, rd: R, wr: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "smtp session ended with an I/O error");
    }
    finish(rd, wr).await;
}

/// How a stretch of a session on one transport ended.
enum Ended {
    Closed,
    /// The client asked for STARTTLS and got its 220: the transport must be upgraded.
    StartTls,
}

/// The mail transaction: from an accepted MAIL to the reply to the final dot.
pub(super) struct Transaction {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Each integration the message goes to, once, with the recipients that route there.
    pub routes: Vec<(Route, Vec<String>)>,
    /// The configuration this transaction routes and ingests with, taken at MAIL: a reload
    /// in the middle never mixes two configurations in one message.
    pub config: Arc<Config>,
}

impl Transaction {
    fn add(&mut self, to: String, route: Route) {
        match self
            .routes
            .iter_mut()
            .find(|(r, _)| r.integration == route.integration)
        {
            Some((_, rcpts)) => rcpts.push(to.clone()),
            None => self.routes.push((route, vec![to.clone()])),
        }
        self.rcpt_to.push(to);
    }
}

/// mailin's handler takes whatever it is handed: Siren decides MAIL and RCPT before handing
/// them over (a refused recipient never reaches mailin), so mailin only keeps command order
/// and the session's state needs no sharing.
struct Accept;

impl Handler for Accept {}

/// One session's state, owned by its loop.
pub(super) struct Driver {
    pub(super) peer: SocketAddr,
    pub(super) ctx: Arc<Context>,
    mailin: mailin::Session<Accept>,
    /// The HELO/EHLO domain, once one was accepted (on this transport).
    pub(super) helo: Option<String>,
    pub(super) tx: Option<Transaction>,
    pub(super) tls_active: bool,
    pub(super) auth: Auth,
    pub(super) out: Output,
    errors: u32,
    session_deadline: Instant,
}

/// What to do after a reply.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Next {
    Continue,
    Data,
    StartTls,
    Close,
}

/// A handler's reply and what it means for the session (chasquid's `(code, message)`).
pub(super) struct Answer {
    text: Cow<'static, str>,
    /// Set for refusals: counted in `/metrics` under this reason.
    refused: Option<SmtpRejection>,
    /// Whether the refusal counts towards the session's protocol-error limit.
    charged: bool,
    next: Next,
}

impl Answer {
    pub fn ok(text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            text: text.into(),
            refused: None,
            charged: false,
            next: Next::Continue,
        }
    }

    /// A refused command. Only protocol errors are charged: refused recipients (550, 452) are
    /// the client's right to try, and charging them would refuse a long recipient list on
    /// every retry. Failed AUTH attempts are charged, so guessing ends with the session.
    pub fn refuse(reason: SmtpRejection, text: impl Into<Cow<'static, str>>) -> Self {
        let charged = !matches!(
            reason,
            SmtpRejection::UnknownRecipient | SmtpRejection::Recipients
        );
        Self {
            refused: Some(reason),
            charged,
            ..Self::ok(text)
        }
    }

    /// A message refused after its data (too big, not stored): not the client's error.
    pub fn refuse_message(reason: SmtpRejection, text: &'static str) -> Self {
        Self {
            charged: false,
            ..Self::refuse(reason, text)
        }
    }

    pub fn then(self, next: Next) -> Self {
        Self { next, ..self }
    }
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
        let mailin = ctx.session_builder.build(peer.ip(), Accept);
        let session_deadline = Instant::now() + ctx.config.smtp.session_timeout;
        Self {
            peer,
            out: Output::new(ctx.metrics.clone()),
            ctx,
            mailin,
            helo: None,
            tx: None,
            tls_active: false,
            auth: Auth::None,
            errors: 0,
            session_deadline,
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
        let mut line = Vec::with_capacity(1024);
        loop {
            let stop = self.tx.is_none().then_some(stop);
            if !self.next_line(rd, wr, &mut line, abort, stop).await? {
                break;
            }
            match self.command(&line) {
                Next::Continue => {}
                Next::Close => break,
                Next::StartTls => {
                    let deadline = Instant::now() + self.ctx.config.smtp.idle_timeout;
                    self.out.flush(wr, deadline).await?;
                    return Ok(Ended::StartTls);
                }
                Next::Data => {
                    // mailin answers 354 only after a recipient Siren took, which needs `tx`.
                    let Some(tx) = self.tx.take() else {
                        tracing::error!(peer = %self.peer, "DATA accepted without a transaction");
                        self.out.push(reply::STORE_FAILED.as_bytes());
                        break;
                    };
                    if self.data(tx, rd, wr, &mut line, abort).await? == Next::Close {
                        break;
                    }
                }
            }
        }
        let linger = self
            .ctx
            .config
            .smtp
            .idle_timeout
            .min(Duration::from_secs(10));
        self.out.flush(wr, Instant::now() + linger).await?;
        Ok(Ended::Closed)
    }

    /// The transport is now TLS: mailin resets to a fresh session that must EHLO again.
    fn start_tls(&mut self) {
        self.tls_active = true;
        self.auth = Auth::None;
        self.helo = None;
        self.tx = None;
        self.mailin.tls_active();
    }

    /// Waits for the next line, writing queued replies first when the client has sent all it
    /// had. Returns false when the session must end; the closing reply is then queued.
    pub(super) async fn next_line<R, W>(
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
            self.out.flush(wr, deadline).await?;
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
        self.out.push(text.as_bytes());
        Ok(false)
    }

    /// Handles one command line (or the answer to an AUTH challenge); queues its reply.
    fn command(&mut self, line: &[u8]) -> Next {
        let answer = self.dispatch(line);
        self.answer(answer)
    }

    /// Queues an answer, counts a refusal, and cuts the client off after too many errors.
    pub(super) fn answer(&mut self, answer: Answer) -> Next {
        self.out.push(answer.text.as_bytes());
        let Some(reason) = answer.refused else {
            return answer.next;
        };
        self.ctx.metrics.smtp_rejected(reason);
        self.errors += u32::from(answer.charged);
        let closing = answer.next == Next::Close || answer.text.starts_with("421");
        if closing {
            return Next::Close;
        }
        if self.errors >= MAX_ERRORS {
            self.ctx.metrics.smtp_rejected(SmtpRejection::TooManyErrors);
            self.out.push(reply::TOO_MANY_ERRORS.as_bytes());
            return Next::Close;
        }
        answer.next
    }

    fn dispatch(&mut self, line: &[u8]) -> Answer {
        match std::mem::replace(&mut self.auth, Auth::None) {
            Auth::Pending {
                mechanism,
                username,
            } => return self.auth_response(mechanism, username, line),
            other => self.auth = other,
        }
        if !line.ends_with(b"\r\n") {
            return Answer::refuse(SmtpRejection::BareLf, reply::BARE_LF_COMMAND);
        }
        let verb: [u8; 4] =
            std::array::from_fn(|i| line.get(i).copied().unwrap_or(b' ').to_ascii_uppercase());
        match &verb {
            b"AUTH" => self.auth_command(line),
            b"MAIL" => self.mail(line),
            b"RCPT" => self.rcpt(line),
            _ => self.via_mailin(line, &verb),
        }
    }

    fn mail(&mut self, line: &[u8]) -> Answer {
        // Before HELO/EHLO, mailin's 503 says what is missing first.
        if self.needs_auth() {
            return Answer::refuse(SmtpRejection::AuthRequired, reply::AUTH_REQUIRED);
        }
        let mail = match params::mail(line, self.ctx.config.smtp.max_message_size) {
            Ok(mail) => mail,
            Err(e) => return refused(e),
        };
        let res = self.mailin.process(&mail.line);
        if res.code != 250 {
            return mailin_error(&res);
        }
        self.tx = Some(Transaction {
            mail_from: mail.from,
            rcpt_to: Vec::new(),
            routes: Vec::new(),
            config: self.ctx.live.get(),
        });
        Answer::ok(reply::MAIL_OK)
    }

    /// Checks the recipient's limit and route first and hands mailin only a recipient Siren
    /// takes, so mailin's "no valid recipient yet" (503 to DATA) stays right.
    fn rcpt(&mut self, line: &[u8]) -> Answer {
        let rcpt = match params::rcpt(line) {
            Ok(rcpt) => rcpt,
            Err(e) => return refused(e),
        };
        let Some(tx) = &self.tx else {
            // No transaction: mailin answers with its 503.
            return self.via_mailin(&rcpt.line, b"RCPT");
        };
        if tx.rcpt_to.len() >= self.ctx.config.smtp.max_recipients {
            return Answer::refuse(SmtpRejection::Recipients, reply::TOO_MANY_RECIPIENTS);
        }
        let Some(route) = tx.config.router.route(&rcpt.to) else {
            return Answer::refuse(
                SmtpRejection::UnknownRecipient,
                reply::no_integration(&rcpt.to),
            );
        };
        let res = self.mailin.process(&rcpt.line);
        if res.code != 250 {
            return mailin_error(&res);
        }
        if let Some(tx) = &mut self.tx {
            tx.add(rcpt.to, route);
        }
        Answer::ok(reply::RCPT_OK)
    }

    /// Every other command goes to mailin as sent; Siren words the reply.
    fn via_mailin(&mut self, line: &[u8], verb: &[u8; 4]) -> Answer {
        let res = self.mailin.process(line);
        if res.is_error {
            return mailin_error(&res);
        }
        let smtp = &self.ctx.config.smtp;
        let host = smtp.hostname.as_str();
        match (verb, res.code) {
            (b"EHLO" | b"HELO", 250) => {
                let helo = params::helo_domain(line);
                // RFC 4954: AUTH PLAIN/LOGIN send the password in the clear: offered only in TLS.
                let text = if verb == b"EHLO" {
                    let starttls = smtp.tls.is_some() && !self.tls_active;
                    let auth = self.tls_active && !smtp.users.is_empty();
                    reply::ehlo(host, &helo, smtp.max_message_size, starttls, auth)
                } else {
                    reply::helo(host)
                };
                self.helo = Some(helo);
                self.tx = None;
                Answer::ok(text)
            }
            (b"RSET", 250) => {
                self.tx = None;
                Answer::ok(reply::render(&res))
            }
            (_, 220) if res.action == mailin::Action::UpgradeTls => {
                Answer::ok(reply::START_TLS).then(Next::StartTls)
            }
            (_, 354) => {
                self.ctx.metrics.smtp_received();
                Answer::ok(reply::render(&res)).then(Next::Data)
            }
            _ if res.action == mailin::Action::Close => {
                Answer::ok(reply::render(&res)).then(Next::Close)
            }
            _ => Answer::ok(reply::render(&res)),
        }
    }

    /// Hands mailin the final dot of a message, which returns it to its ready state.
    pub(super) fn mailin_dot(&mut self) {
        self.mailin.process(b".\r\n");
    }

    /// `smtp.require_auth` is on, the client has said HELO/EHLO, and has not authenticated.
    fn needs_auth(&self) -> bool {
        self.ctx.config.smtp.require_auth && self.auth != Auth::Done && self.helo.is_some()
    }
}

fn mailin_error(res: &mailin::Response) -> Answer {
    Answer::refuse(SmtpRejection::Protocol, reply::render(res))
}

/// The reply to a MAIL or RCPT line that did not parse.
fn refused(e: params::Error) -> Answer {
    match e {
        params::Error::NotRecognized => {
            Answer::refuse(SmtpRejection::Protocol, reply::NOT_RECOGNIZED)
        }
        params::Error::Syntax => Answer::refuse(SmtpRejection::Protocol, reply::BAD_ADDRESS_SYNTAX),
        params::Error::Unsupported => {
            Answer::refuse(SmtpRejection::Protocol, reply::UNSUPPORTED_PARAMETER)
        }
        params::Error::TooBig => Answer::refuse(SmtpRejection::Size, reply::MESSAGE_TOO_BIG),
    }
}
