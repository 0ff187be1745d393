//! Stage 1: SMTP intake. The accept loop (the session cap, each client address's share,
//! stress mode, shutdown) lives here; one session's protocol handling is in `session`, what
//! clients share is counted in `clients`, every reply text is in `reply`. Siren never relays:
//! a recipient no integration claims is refused at RCPT.

mod auth;
mod clients;
mod data;
mod envelope;
mod io;
mod params;
mod reply;
mod session;

/// Serves one already-accepted connection (any byte stream): what the accept loop runs per
/// client. Public so that other transports and the fuzzer can drive a session.
pub use session::run as serve_connection;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailin::SessionBuilder;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Live};
use crate::metrics::{Metrics, SmtpRejection};
use crate::store::WriterHandle;
use clients::{Clients, Inflight, Refusal};

/// The idle timeout while in stress mode (Postfix's stress-dependent `smtpd_timeout`).
const STRESS_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every session of one configuration shares.
pub struct Context {
    /// The configuration at start: listeners and limits (they change only on restart).
    pub config: Arc<Config>,
    /// The configuration in force, for routing, the pipeline and the TLS certificate (which
    /// SIGHUP renews); one snapshot per transaction or handshake.
    pub live: Live,
    pub writer: WriterHandle,
    pub metrics: Arc<Metrics>,
    session_builder: SessionBuilder,
    /// `smtp.max_sessions` across every listen address.
    sessions: Arc<Semaphore>,
    /// Each client address's sessions, connection rate and AUTH failures.
    clients: Arc<Clients>,
    /// `smtp.max_inflight_bytes`.
    inflight: Arc<Inflight>,
    /// True while sessions are over 80% of `smtp.max_sessions`: idle timeouts are then
    /// [`STRESS_IDLE_TIMEOUT`]. Sessions watch it, so that waits already begun shorten too.
    stress: watch::Sender<bool>,
}

impl Context {
    pub fn new(live: Live, writer: WriterHandle, metrics: Arc<Metrics>) -> Self {
        let config = live.get();
        let mut session_builder = SessionBuilder::new(config.smtp.hostname.clone());
        if config.smtp.tls.is_some() {
            session_builder.enable_start_tls();
        }
        let limits = &config.smtp.limits;
        Self {
            live,
            session_builder,
            sessions: Arc::new(Semaphore::new(config.smtp.max_sessions)),
            clients: Arc::new(Clients::new(limits)),
            inflight: Arc::new(Inflight::new(limits.max_inflight_bytes, metrics.clone())),
            stress: watch::Sender::new(false),
            config,
            writer,
            metrics,
        }
    }

    /// The idle timeout now: shorter in stress mode.
    fn idle_timeout(&self) -> Duration {
        let idle = self.config.smtp.idle_timeout;
        if *self.stress.borrow() {
            idle.min(STRESS_IDLE_TIMEOUT)
        } else {
            idle
        }
    }

    /// Enters stress mode above 80% of `smtp.max_sessions` and leaves it at 70% or less (the
    /// gap keeps a load near the line from flapping), logging and counting each change.
    fn update_stress(&self) {
        let max = self.config.smtp.max_sessions;
        let open = max - self.sessions.available_permits();
        let changed = self.stress.send_if_modified(|on| {
            let next = if *on {
                open * 10 > max * 7
            } else {
                open * 10 > max * 8
            };
            std::mem::replace(on, next) != next
        });
        if !changed {
            return;
        }
        let on = *self.stress.borrow();
        self.metrics.smtp_stress(on);
        if on {
            tracing::warn!(open, max, idle_timeout = ?STRESS_IDLE_TIMEOUT, "smtp stress mode: over 80% of smtp.max_sessions, idle timeouts shortened");
        } else {
            tracing::info!(open, max, "smtp stress mode ended");
        }
    }
}

/// Binds an SMTP listener. Its sockets are `TCP_NODELAY` from the start (Linux copies the
/// option to every socket it accepts), so no session pays a `setsockopt` for it: each reply
/// is written whole, then the session waits for the client, so Nagle's delay buys nothing.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections on a listener from [`bind`] until `stop` fires. Sessions run on `tracker`; once `stop` fires they
/// finish their current transaction, and `abort` (the drain deadline) closes the rest.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    stop: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The client's share first, so that a client over it takes no global slot.
        let admitted = match ctx.clients.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refused) => {
                let (reason, text) = match refused.why {
                    Refusal::Sessions => (
                        SmtpRejection::ClientSessions,
                        reply::TOO_MANY_CLIENT_SESSIONS,
                    ),
                    Refusal::Rate => (SmtpRejection::ClientRate, reply::CLIENT_RATE),
                };
                if refused.first {
                    tracing::warn!(%peer, reason = reason.as_str(), "client over its share; refusing with 421");
                }
                ctx.metrics.smtp_rejected(reason);
                tracker.spawn(refuse(stream, peer, text));
                continue;
            }
        };
        match ctx.sessions.clone().try_acquire_owned() {
            Ok(permit) => {
                ctx.update_stress();
                let (ctx, stop, abort) = (ctx.clone(), stop.clone(), abort.clone());
                let open = ctx.metrics.smtp_session();
                tracker.spawn(async move {
                    session::run(stream, peer, ctx.clone(), stop, abort).await;
                    drop((permit, open, admitted));
                    ctx.update_stress();
                });
            }
            Err(_) => {
                tracing::warn!(%peer, "session limit reached; refusing with 421");
                ctx.metrics.smtp_rejected(SmtpRejection::SessionCap);
                tracker.spawn(refuse(stream, peer, reply::TOO_MANY_SESSIONS));
            }
        }
    }
}

async fn refuse(mut stream: tokio::net::TcpStream, peer: SocketAddr, text: &'static str) {
    let write = stream.write_all(text.as_bytes());
    if tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .is_err()
    {
        tracing::debug!(%peer, "refused client did not read the 421");
    }
    let _ = stream.shutdown().await;
}
