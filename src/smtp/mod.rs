//! Stage 1: SMTP intake. The accept loop (session cap, shutdown) lives here; one session's
//! protocol handling is in `session`, every reply text in `reply`. Siren never relays: a
//! recipient no integration claims is refused at RCPT.

mod auth;
mod data;
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
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Live};
use crate::metrics::{Metrics, SmtpRejection};
use crate::store::WriterHandle;

/// What every session of one configuration shares.
pub struct Context {
    /// The configuration at start: listeners, limits and TLS (they change only on restart).
    pub config: Arc<Config>,
    /// The configuration in force, for routing and the pipeline; one snapshot per transaction.
    pub live: Live,
    pub writer: WriterHandle,
    pub metrics: Arc<Metrics>,
    session_builder: SessionBuilder,
    /// `smtp.max_sessions` across every listen address.
    sessions: Arc<Semaphore>,
}

impl Context {
    pub fn new(live: Live, writer: WriterHandle, metrics: Arc<Metrics>) -> Self {
        let config = live.get();
        let mut session_builder = SessionBuilder::new(config.smtp.hostname.clone());
        if config.smtp.tls.is_some() {
            session_builder.enable_start_tls();
        }
        Self {
            live,
            session_builder,
            sessions: Arc::new(Semaphore::new(config.smtp.max_sessions)),
            config,
            writer,
            metrics,
        }
    }
}

/// Accepts connections until `stop` fires. Sessions run on `tracker`; once `stop` fires they
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
        let _ = stream.set_nodelay(true);
        match ctx.sessions.clone().try_acquire_owned() {
            Ok(permit) => {
                let (ctx, stop, abort) = (ctx.clone(), stop.clone(), abort.clone());
                let open = ctx.metrics.smtp_session();
                tracker.spawn(async move {
                    session::run(stream, peer, ctx, stop, abort).await;
                    drop((permit, open));
                });
            }
            Err(_) => {
                tracing::warn!(%peer, "session limit reached; refusing with 421");
                ctx.metrics.smtp_rejected(SmtpRejection::SessionCap);
                tracker.spawn(refuse(stream, peer));
            }
        }
    }
}

async fn refuse(mut stream: tokio::net::TcpStream, peer: SocketAddr) {
    let write = stream.write_all(reply::TOO_MANY_SESSIONS.as_bytes());
    if tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .is_err()
    {
        tracing::debug!(%peer, "refused client did not read the 421");
    }
    let _ = stream.shutdown().await;
}
