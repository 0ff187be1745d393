//! Builds the daemon (bind listeners, open the store, start the writer) and runs it until the
//! shutdown future resolves, then stops in pipeline order: stop accepting, drain sessions
//! within `smtp.drain_timeout` (`/readyz` says 503 meanwhile), stop HTTP, let the writer finish
//! its last commit, flush the store last. [`daemon::run`] is the process around it (signals,
//! reload, open-file limit).

pub mod daemon;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Live};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::smtp;
use crate::store::{OutboxFeed, Queued, Store, Writer, WriterHandle};

/// A daemon whose listeners are bound and whose store is open, ready to [`App::run`].
pub struct App {
    live: Live,
    config: Arc<Config>,
    smtp: Vec<TcpListener>,
    http: TcpListener,
    store: Store,
    writer: Writer,
    handle: WriterHandle,
    /// Deliveries each commit adds to the outbox, for the delivery workers.
    queued: mpsc::UnboundedReceiver<Vec<(String, Queued)>>,
    metrics: Arc<Metrics>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let live = Live::new(config);
        let config = live.get();
        let mut smtp = Vec::new();
        for addr in &config.smtp.listen {
            let l = smtp::bind(*addr)
                .await
                .with_context(|| format!("cannot listen for SMTP on {addr} (smtp.listen)"))?;
            smtp.push(l);
        }
        let http = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen for HTTP on {} (http.listen)",
                    config.http.listen
                )
            })?;
        let store_config = config.store.clone();
        let store = tokio::task::spawn_blocking(move || Store::open_configured(&store_config))
            .await
            .context("store open task failed")??;
        let metrics = Arc::new(Metrics::new());
        let (queued_tx, queued) = mpsc::unbounded_channel();
        let feed = OutboxFeed {
            live: live.clone(),
            queued: queued_tx,
        };
        let (writer, handle) = Writer::spawn(
            store.clone(),
            config.logs.clone(),
            Some(feed),
            metrics.clone(),
        )?;
        Ok(App {
            live,
            config,
            smtp,
            http,
            store,
            writer,
            handle,
            queued,
            metrics,
        })
    }

    pub fn smtp_addrs(&self) -> Vec<SocketAddr> {
        self.smtp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The configuration in force; [`Live::reload`] on it applies a new file.
    pub fn live(&self) -> Live {
        self.live.clone()
    }

    /// The daemon's metrics, as `GET /metrics` serves them.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The store writer, e.g. to inject a write failure in a drill.
    pub fn writer(&self) -> WriterHandle {
        self.handle.clone()
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let App {
            live,
            config,
            smtp,
            http,
            store,
            writer,
            handle,
            queued,
            metrics,
        } = self;
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let sessions = TaskTracker::new();
        let background = TaskTracker::new();

        let ctx = Arc::new(smtp::Context::new(
            live.clone(),
            handle.clone(),
            metrics.clone(),
        ));
        for listener in smtp {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "smtp listening");
            background.spawn(smtp::serve(
                listener,
                ctx.clone(),
                stop.clone(),
                abort.clone(),
                sessions.clone(),
            ));
        }
        drop(ctx);

        tracing::info!(addr = %http.local_addr()?, "http listening");
        background.spawn(crate::deliver::run(
            store.clone(),
            handle.clone(),
            live.clone(),
            queued,
            metrics.clone(),
            stop.clone(),
        ));
        let router = http::router(AppState::new(http::Shared {
            live: live.clone(),
            store,
            writer: handle.clone(),
            metrics: metrics.clone(),
            stopping: stop.clone(),
        }));
        // HTTP outlives the SMTP drain, so that /readyz answers 503 and /metrics can be scraped
        // while sessions finish.
        let limits = http::Limits::new(
            &config.http,
            config.smtp.max_sessions,
            http::open_file_limit(),
        );
        let http_stop = CancellationToken::new();
        let http_task = tokio::spawn(http::serve(
            http,
            router,
            limits,
            metrics,
            http_stop.clone(),
        ));
        background.spawn(crate::resolver::run(handle.clone(), stop.clone()));
        background.spawn(prune_logs(handle, config.logs.max_age, stop.clone()));

        shutdown.await;
        tracing::info!("stopping: no new connections; draining sessions");
        stop.cancel();
        background.close();
        background.wait().await;
        drain(sessions, config.smtp.drain_timeout, abort).await;
        http_stop.cancel();
        let abort_http = http_task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), http_task)
            .await
            .is_err()
        {
            tracing::warn!("http connections still open at shutdown; closed");
            abort_http.abort();
        }
        // Sessions are done: the writer commits what it holds, flushes and ends.
        writer.join().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Waits for the SMTP sessions up to `deadline`, then cancels `abort` (421 to the rest) and
/// waits for them to close.
async fn drain(sessions: TaskTracker, deadline: Duration, abort: CancellationToken) {
    sessions.close();
    if tokio::time::timeout(deadline, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = sessions.len(),
            "drain deadline passed; closing the remaining sessions with 421"
        );
        abort.cancel();
        sessions.wait().await;
    }
}

/// How soon a failed age-prune is tried again.
const PRUNE_RETRY: Duration = Duration::from_secs(30);

/// Removes log entries past `logs.max_age`, sleeping until the oldest one expires, or
/// [`PRUNE_RETRY`] after a failure.
async fn prune_logs(writer: WriterHandle, max_age: Duration, stop: CancellationToken) {
    loop {
        let wait = match writer.prune(crate::clock::now()).await {
            Ok(next) => next
                .and_then(|t| t.duration_since(crate::clock::now()).ok())
                // Nothing stored: nothing can expire sooner than max_age from now.
                .unwrap_or(max_age)
                .max(Duration::from_secs(1)),
            Err(crate::store::Error::Stopped) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?PRUNE_RETRY, "pruning old log entries failed");
                PRUNE_RETRY.min(max_age)
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
