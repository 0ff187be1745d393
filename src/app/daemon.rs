//! The daemon as a process: raises the open-file limit, installs the signal handlers (SIGTERM
//! and SIGINT drain and stop; SIGHUP reloads the configuration file), builds the [`App`] and
//! runs it. The binary only parses arguments and speaks to systemd through the hooks.

use std::future::Future;
use std::path::PathBuf;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::App;
use crate::config::{Config, Live};

/// Runs the daemon on `config` (read from `path`, which SIGHUP reads again) until SIGTERM or
/// SIGINT. `ready` gets a status line once the listeners are bound and the store is open;
/// `stopping` is called when a stop signal arrives, before the drain.
pub async fn run(
    config: Config,
    path: PathBuf,
    ready: impl FnOnce(String),
    stopping: impl FnOnce(),
) -> anyhow::Result<()> {
    raise_open_file_limit();
    // Installed before anything can send them: SIGHUP's default action would kill the
    // daemon, and a SIGTERM right after READY=1 must drain, not kill.
    let hangup = signal(SignalKind::hangup())?;
    let shutdown = shutdown_signal()?;
    let app = App::build(config).await?;
    tokio::spawn(reload_on_hangup(hangup, path, app.live()));
    // Bound listeners already accept connections (the kernel queues them), and the store is
    // open: systemd may start what depends on Siren.
    let smtp: Vec<String> = app.smtp_addrs().iter().map(|a| a.to_string()).collect();
    ready(format!(
        "SMTP on {}; HTTP on {}",
        smtp.join(", "),
        app.http_addr()
    ));
    app.run(async {
        shutdown.await;
        stopping();
    })
    .await
}

/// Sets up the daemon's log on stderr: text, or with `json` one JSON object per line. The
/// level comes from `RUST_LOG` (default `info`).
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        // The event's fields at the top level, beside timestamp, level and target.
        logs.json().flatten_event(true).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// Raises the soft limit on open files to the hard limit: every session is a descriptor, and
/// `smtp.max_sessions` (1024 by default) would otherwise meet a soft limit of 1024 first.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
        }
    };
    if !raised {
        tracing::warn!("could not raise the open-file limit; sessions may hit it first");
    }
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed when this is called,
/// not when the future is first polled, so that a signal sent right after READY=1 drains
/// instead of killing the process.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// On each SIGHUP, reads the configuration file again and puts its integrations, templates
/// and destinations in force. A file that does not validate is refused, with the reason, and
/// the running configuration stays; open sessions are never touched.
async fn reload_on_hangup(mut hangup: Signal, path: PathBuf, live: Live) {
    while hangup.recv().await.is_some() {
        let file = path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&file)).await;
        match loaded {
            Ok(Ok(new)) => {
                let (integrations, destinations) = (new.integrations.len(), new.destinations.len());
                let kept = live.reload(new);
                tracing::info!(
                    path = %path.display(),
                    integrations,
                    destinations,
                    "configuration reloaded"
                );
                if !kept.is_empty() {
                    tracing::warn!(
                        sections = %kept.join(", "),
                        "these sections changed but take effect only after a restart; their running values stay"
                    );
                }
            }
            Ok(Err(e)) => {
                tracing::error!(
                    "configuration reload refused, the running configuration stays: {e}"
                )
            }
            Err(e) => tracing::error!(error = %e, "configuration reload failed"),
        }
    }
}
