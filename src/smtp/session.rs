//! One SMTP session: the state its loop owns, the wait for each line, and command dispatch.
//!
//! mailin decides command syntax and order; Siren decides everything else before it hands
//! mailin a line (MAIL and RCPT parameters, routing, AUTH) and builds every reply itself. Each
//! command handler returns an [`Answer`]; [`Driver::answer`] queues it, counts it and cuts off
//! a client past its error budget, in one place. MAIL and RCPT are in `envelope`, DATA in
//! `data`, SASL in `auth`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailin::Handler;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::auth::Auth;
use super::envelope::Transaction;
use super::io::{Output, ReadError, finish, read_line};
use super::{Context, params, reply};
use crate::metrics::SmtpRejection;

/// Protocol errors after which the client is cut off (as Postfix's `smtpd_hard_error_limit`).
const MAX_ERRORS: usize = 20;

/// Commands that move no mail: counted against `smtp.junk_commands_max`.
const JUNK: [&[u8; 4]; 6] = [b"NOOP", b"RSET", b"VRFY", b"EXPN", b"HELP", b"ETRN"];

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
    // The certificate in force now: SIGHUP may have renewed it since the daemon started.
    let Some(tls) = ctx.live.get().smtp.tls.clone() else {
        return; // mailin offers STARTTLS only when a certificate is configured
    };
    // RFC 3207: anything the client pipelined after STARTTLS is discarded with the buffer.
    let stream = rd.into_inner().unsplit(wr);
    let handshake = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
    let stream = match tokio::time::timeout(ctx.idle_timeout(), handshake).await {
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
    // TLS ends with our close_notify (the write half's shutdown) even after QUIT: without it
    // a client cannot tell the end of the session from a truncation.
    let ended = ended.map(|e| {
        if let Ended::Quit = e {
            Ended::Closed
        } else {
            e
        }
    });
    end(peer, ended, rd, wr).await;
}

async fn end<R, W>(peer: SocketAddr, ended: std::io::Result<Ended>, rd: BufReader<R>, wr: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match ended {
        // The client said QUIT, read nothing after it, and has its 221: closing now sends
        // our FIN behind the 221 (nothing unread, so no reset), as Postfix's smtpd does.
        // The lingering close is for a session Siren ends, when the client may still be
        // sending.
        Ok(Ended::Quit) if rd.buffer().is_empty() => {}
        Err(e) => {
            tracing::debug!(%peer, error = %e, "smtp session ended with an I/O error");
            finish(rd, wr).await;
        }
        Ok(_) => finish(rd, wr).await,
    }
}

/// How a stretch of a session on one transport ended.
enum Ended {
    Closed,
    /// Closed after the client's QUIT and Siren's 221.
    Quit,
    /// The client asked for STARTTLS and got its 220: the transport must be upgraded.
    StartTls,
}

/// mailin's handler takes whatever it is handed: Siren decides MAIL and RCPT before handing
/// them over (a refused recipient never reaches mailin), so mailin only keeps command order
/// and the session's state needs no sharing.
pub(super) struct Accept;

impl Handler for Accept {}

/// One session's state, owned by its loop.
pub(super) struct Driver {
    pub(super) peer: SocketAddr,
    pub(super) ctx: Arc<Context>,
    pub(super) mailin: mailin::Session<Accept>,
    /// The HELO/EHLO domain, once one was accepted (on this transport).
    pub(super) helo: Option<String>,
    pub(super) tx: Option<Transaction>,
    pub(super) tls_active: bool,
    pub(super) auth: Auth,
    pub(super) out: Output,
    /// What the session has spent of its error budgets.
    pub(super) spent: Spent,
    /// A wait owed before the next reply is written: the price of a failed AUTH or RCPT.
    delay: Option<Duration>,
    /// The client said QUIT and its 221 is queued.
    quit: bool,
    session_deadline: Instant,
    stress: watch::Receiver<bool>,
}

/// Errors and junk commands so far, against their limits (`smtp.limits`).
#[derive(Default)]
pub(super) struct Spent {
    errors: usize,
    auth: usize,
    rcpt: usize,
    /// NOOP, RSET, VRFY, EXPN, HELP and ETRN since the last accepted message.
    pub junk: usize,
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
    /// Whether the refusal is charged to the session's error budgets (see `Driver::charge`).
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

    /// A refused command, charged to the session's error budgets, except a recipient over
    /// `max_recipients` (452): a long recipient list is refused in part on every try.
    pub fn refuse(reason: SmtpRejection, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            refused: Some(reason),
            charged: reason != SmtpRejection::Recipients,
            ..Self::ok(text)
        }
    }

    /// A refusal that is not the client's error (a message too big or not stored, no room
    /// for messages in flight): not charged.
    pub fn refuse_uncharged(reason: SmtpRejection, text: &'static str) -> Self {
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
            stress: ctx.stress.subscribe(),
            ctx,
            mailin,
            helo: None,
            tx: None,
            tls_active: false,
            auth: Auth::None,
            spent: Spent::default(),
            delay: None,
            quit: false,
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
            let next = self.command(&line);
            self.pay_delay(abort).await;
            match next {
                Next::Continue => {}
                Next::Close => break,
                Next::StartTls => {
                    let deadline = Instant::now() + self.ctx.idle_timeout();
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
        Ok(if self.quit {
            Ended::Quit
        } else {
            Ended::Closed
        })
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
        let waiting = Instant::now();
        if !rd.buffer().contains(&b'\n') {
            let deadline = self.session_deadline.min(waiting + ctx.idle_timeout());
            self.out.flush(wr, deadline).await?;
        }
        let event = self.wait(rd, line, waiting, abort, stop).await;
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

    /// Reads a line, racing the signals and the deadlines. The idle deadline counts from
    /// `waiting` and is computed again when stress mode begins or ends, so that a wait already
    /// begun is shortened too (the read itself goes on: a cancelled read would lose bytes).
    async fn wait<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut BufReader<R>,
        line: &mut Vec<u8>,
        waiting: Instant,
        abort: &CancellationToken,
        stop: Option<&CancellationToken>,
    ) -> Event {
        let read = read_line(rd, line, self.ctx.config.smtp.max_line_length);
        tokio::pin!(read);
        loop {
            let deadline = self.session_deadline.min(waiting + self.ctx.idle_timeout());
            tokio::select! {
                biased;
                _ = abort.cancelled() => return Event::Shutdown,
                _ = async { stop.expect("guarded").cancelled().await }, if stop.is_some() => return Event::Shutdown,
                r = &mut read => return match r {
                    Ok(()) => Event::Line,
                    Err(e) => Event::Read(e),
                },
                _ = sleep_until(deadline) => return Event::Timeout,
                Ok(()) = self.stress.changed() => {}
            }
        }
    }

    /// Waits what the last refusal costs before anything more is written or read.
    async fn pay_delay(&mut self, abort: &CancellationToken) {
        let Some(wait) = self.delay.take().filter(|w| !w.is_zero()) else {
            return;
        };
        tokio::select! {
            _ = abort.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }

    /// Handles one command line (or the answer to an AUTH challenge); queues its reply.
    fn command(&mut self, line: &[u8]) -> Next {
        let answer = self.dispatch(line);
        self.answer(answer)
    }

    /// Queues an answer, counts a refusal, charges it to the error budgets, and cuts the
    /// client off when one is spent.
    pub(super) fn answer(&mut self, answer: Answer) -> Next {
        self.out.push(answer.text.as_bytes());
        let Some(reason) = answer.refused else {
            return answer.next;
        };
        self.ctx.metrics.smtp_rejected(reason);
        if answer.next == Next::Close || answer.text.starts_with("421") {
            return Next::Close;
        }
        if !answer.charged {
            return answer.next;
        }
        let Some(text) = self.charge(reason) else {
            return answer.next;
        };
        tracing::info!(peer = %self.peer, reply = text.trim_end(), "error budget spent; closing");
        self.ctx.metrics.smtp_rejected(SmtpRejection::TooManyErrors);
        self.out.push(text.as_bytes());
        Next::Close
    }

    /// Charges one refusal: a refused recipient to the RCPT budget, a failed AUTH to the AUTH
    /// budget and the protocol-error count, anything else to the protocol-error count. Failed
    /// RCPT and AUTH attempts also owe a wait. Returns the closing reply of a spent budget.
    fn charge(&mut self, reason: SmtpRejection) -> Option<&'static str> {
        let limits = &self.ctx.config.smtp.limits;
        match reason {
            SmtpRejection::UnknownRecipient => {
                self.spent.rcpt += 1;
                self.delay = Some(limits.rcpt_errors_wait);
                return (self.spent.rcpt >= limits.rcpt_errors_max)
                    .then_some(reply::TOO_MANY_RCPT_ERRORS);
            }
            SmtpRejection::AuthFailed | SmtpRejection::AuthThrottled => {
                self.spent.auth += 1;
                self.delay = Some(limits.auth_errors_wait);
                if self.spent.auth >= limits.auth_errors_max {
                    return Some(reply::TOO_MANY_AUTH_ERRORS);
                }
            }
            _ => {}
        }
        self.spent.errors += 1;
        (self.spent.errors >= MAX_ERRORS).then_some(reply::TOO_MANY_ERRORS)
    }

    fn dispatch(&mut self, line: &[u8]) -> Answer {
        match std::mem::replace(&mut self.auth, Auth::None) {
            Auth::Pending {
                mechanism,
                username,
            } => return self.auth_response(mechanism, username, line),
            other => self.auth = other,
        }
        if params::looks_like_http(line) {
            tracing::info!(peer = %self.peer, "HTTP request on the SMTP port; closing");
            return Answer::refuse(SmtpRejection::HttpCommand, reply::HTTP_COMMAND)
                .then(Next::Close);
        }
        if !line.ends_with(b"\r\n") {
            return Answer::refuse(SmtpRejection::BareLf, reply::BARE_LF_COMMAND);
        }
        let verb: [u8; 4] =
            std::array::from_fn(|i| line.get(i).copied().unwrap_or(b' ').to_ascii_uppercase());
        if JUNK.contains(&&verb) {
            // As Postfix's smtpd_junk_command_limit: a session that only keeps itself busy.
            self.spent.junk += 1;
            if self.spent.junk > self.ctx.config.smtp.limits.junk_commands_max {
                return Answer::refuse(SmtpRejection::JunkCommands, reply::TOO_MANY_JUNK_COMMANDS)
                    .then(Next::Close);
            }
        }
        match &verb {
            b"AUTH" => self.auth_command(line),
            b"MAIL" => self.mail(line),
            b"RCPT" => self.rcpt(line),
            b"DATA" => self.data_command(line),
            _ => self.via_mailin(line, &verb),
        }
    }

    /// Every other command goes to mailin as sent; Siren words the reply.
    pub(super) fn via_mailin(&mut self, line: &[u8], verb: &[u8; 4]) -> Answer {
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
                self.quit = res.code == 221;
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
    pub(super) fn needs_auth(&self) -> bool {
        self.ctx.config.smtp.require_auth && self.auth != Auth::Done && self.helo.is_some()
    }
}

pub(super) fn mailin_error(res: &mailin::Response) -> Answer {
    Answer::refuse(SmtpRejection::Protocol, reply::render(res))
}
