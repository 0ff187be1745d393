//! The HTTP port's accept loop and connections: HTTP/1.1 on hyper, with the limits that
//! `axum::serve` lacks. A cap on concurrent connections (`http.max_connections`, lowered to
//! what the open-file limit leaves after SMTP's sessions and a reserve for the store and
//! delivery, so that HTTP can never starve them); over it a connection gets a short 503 and is
//! closed. A header read timeout (`http.header_timeout`, hyper's own: it also bounds the wait
//! for the next request on a kept-alive connection). A keep-alive idle timeout
//! (`http.keepalive_timeout`: no bytes either way for that long and the connection closes once
//! its request, if any, is answered). Body timeouts are the webhook's (`webhook.rs`).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::HttpConfig;
use crate::metrics::{HttpRejection, Metrics};

/// Descriptors kept for everything but SMTP sessions and HTTP connections: the store's files,
/// listeners, delivery connections and commands, the log, and connections being refused.
pub const RESERVED_FDS: usize = 256;
/// Connections being refused (503 and close) at once at most; past it they are just closed.
const REFUSING: usize = 64;
/// How long a refused connection is given to take its 503.
const REFUSE_WRITE: Duration = Duration::from_secs(1);
/// How long, and how much, a closing connection reads and discards (see [`linger`]).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// The limits one HTTP port serves under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
}

impl Limits {
    /// `http`'s limits, the connection cap lowered to fit the open-file limit `nofile` once
    /// `smtp_sessions` and [`RESERVED_FDS`] are set aside.
    pub fn new(http: &HttpConfig, smtp_sessions: usize, nofile: Option<u64>) -> Limits {
        let mut max_connections = http.max_connections;
        if let Some(nofile) = nofile {
            let left = usize::try_from(nofile)
                .unwrap_or(usize::MAX)
                .saturating_sub(smtp_sessions + RESERVED_FDS)
                .max(1);
            if left < max_connections {
                tracing::warn!(
                    configured = max_connections,
                    allowed = left,
                    open_file_limit = nofile,
                    "http.max_connections lowered to what the open-file limit leaves after smtp.max_sessions and the store"
                );
                max_connections = left;
            }
        }
        Limits {
            max_connections,
            header_timeout: http.header_timeout,
            keepalive_timeout: http.keepalive_timeout,
        }
    }
}

/// The soft limit on open files, if it can be read.
pub fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid pointer to a local rlimit.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Serves `router` on `listener` until `stop` fires, then lets every connection finish its
/// request (hyper's graceful shutdown) and returns once they have closed. Dropping the future
/// closes every connection at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, or the peer gave up: wait rather than spin.
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (router, metrics, stop) = (router.clone(), metrics.clone(), stop.clone());
                connections.spawn(async move {
                    let _open = metrics.http_connection();
                    connection(stream, peer, router, limits, &metrics, stop).await;
                    drop(slot);
                });
            }
            Err(_) => {
                metrics.webhook_rejected(HttpRejection::ConnectionCap);
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(stream).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Tells a client over the connection cap so, without reading its request.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":"too many connections (http.max_connections); try again later"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSE_WRITE, async {
        if stream.write_all(response.as_bytes()).await.is_ok() {
            linger(stream).await;
        }
    })
    .await;
}

/// Serves one connection until the client closes it, a timeout ends it, or `stop`; then closes
/// it with a linger.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    metrics: &Metrics,
    stop: CancellationToken,
) {
    let io = Tracked::new(stream);
    let activity = io.activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        Box::pin(async move { tower_service::Service::call(&mut router, req).await })
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut conn = builder.serve_connection(TokioIo::new(io), service);
    let mut closing = false;
    loop {
        let idle_at = activity.last() + limits.keepalive_timeout;
        tokio::select! {
            served = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                if let Err(e) = served {
                    if e.is_timeout() {
                        metrics.webhook_rejected(HttpRejection::HeaderTimeout);
                    }
                    tracing::debug!(%peer, error = %e, "http connection ended");
                }
                break;
            }
            _ = stop.cancelled(), if !closing => {
                Pin::new(&mut conn).graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep_until(idle_at), if !closing => {
                if activity.last() + limits.keepalive_timeout <= Instant::now() {
                    Pin::new(&mut conn).graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
    linger(conn.into_parts().io.into_inner().stream).await;
}

/// Closes after the last response: our side first, then reading and discarding what the
/// client still sends, for up to [`LINGER`] or [`LINGER_BYTES`]. Closing a socket with unread
/// input makes the kernel send a reset, which can destroy a 413 (sent before the body was
/// read) before the client reads it.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut buf = vec![0; 16 * 1024];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// When a connection last moved a byte either way.
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last_ms: AtomicU64,
}

impl Activity {
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }
}

/// A TCP stream that records its [`Activity`].
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Tracked {
    fn new(stream: TcpStream) -> Self {
        let activity = Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        });
        Tracked { stream, activity }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{Limits, RESERVED_FDS};

    fn http(max_connections: usize) -> crate::config::HttpConfig {
        let text = format!("[http]\nmax_connections = {max_connections}\n");
        crate::Config::parse(&text, std::path::Path::new("t.toml"))
            .unwrap()
            .http
            .clone()
    }

    #[test]
    fn http_connections_get_only_the_descriptors_smtp_and_the_store_leave() {
        // Plenty of descriptors: the configured cap.
        assert_eq!(
            Limits::new(&http(4096), 1024, Some(1 << 20)).max_connections,
            4096
        );
        // 1,500 descriptors, 1,024 SMTP sessions: HTTP gets what is left after the reserve.
        let left = 1500 - 1024 - RESERVED_FDS;
        assert_eq!(
            Limits::new(&http(4096), 1024, Some(1500)).max_connections,
            left
        );
        // Nothing left: one connection, so that /healthz can still be asked.
        assert_eq!(
            Limits::new(&http(4096), 1024, Some(1024)).max_connections,
            1
        );
        // An unknown limit leaves the cap alone.
        assert_eq!(Limits::new(&http(10), 1024, None).max_connections, 10);
    }
}
