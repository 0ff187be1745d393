//! The `siren` binary: CLI -> Config::load -> tracing -> App::build -> READY -> run until a
//! signal. Exit codes: 0 clean stop, 2 configuration error (so systemd does not restart-loop),
//! 1 other.

mod notify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use siren::cli::{self, Api};
use siren::config::Live;
use siren::{App, Config};

use notify::Notifier;

#[derive(Parser)]
#[command(name = "siren", version, about = "Self-hosted alert ingestion daemon")]
struct Cli {
    /// Configuration file (every command reads it; `alerts` and `logs` take the API address from it).
    #[arg(long, global = true, default_value = "config/siren.toml")]
    config: PathBuf,
    /// The daemon's log on stderr: text, or one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "SIREN_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration file and exit: 0 when valid, 2 with the reason otherwise.
    CheckConfig {
        /// Also print what integration ID does: its templates and every rule in force,
        /// its preset's included.
        #[arg(long, value_name = "ID")]
        explain: Option<String>,
    },
    /// List, show, acknowledge or resolve alerts on the running daemon.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
        /// The daemon's HTTP base URL (default: http.listen of the configuration).
        #[arg(long, global = true)]
        url: Option<String>,
    },
    /// Run a sample (FILE.eml or FILE.json) through parsing, routing, rules and templates, and
    /// print what it would do; nothing is stored and no daemon is needed.
    Inject {
        file: PathBuf,
        /// The integration to run it as (default for e-mail: whoever its To/Cc reach).
        #[arg(long)]
        integration: Option<String>,
    },
    /// Show the newest log entries of an integration on the running daemon.
    Logs {
        integration: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Alerts, newest first.
    List {
        /// queued, open, acknowledged, dropped or resolved.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        integration: Option<String>,
        /// An RFC 3339 time, or a duration meaning that long ago (e.g. 1h).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One alert, as JSON.
    Show { id: String },
    /// Acknowledge an alert.
    Ack { id: String },
    /// Resolve an alert (resolved_by: user).
    Resolve { id: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("siren: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { explain } => {
            println!(
                "{}: ok ({} integrations, {} destinations)",
                cli.config.display(),
                config.integrations.len(),
                config.destinations.len()
            );
            match explain.map(|id| (siren::config::explain(&config, &id), id)) {
                None => ExitCode::SUCCESS,
                Some((Some(text), _)) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Some((None, id)) => {
                    eprintln!("siren: no integration \"{id}\" in the configuration");
                    ExitCode::from(2)
                }
            }
        }
        Command::Alerts { command, url } => client(alerts(&config, command, url)),
        Command::Inject { file, integration } => {
            let input = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("siren: cannot read {}: {e}", file.display());
                    return ExitCode::from(1);
                }
            };
            match siren::ingest::inject(&config, &input, integration.as_deref()) {
                Ok(events) => {
                    use std::io::Write as _;
                    // A closed pipe (`| head`) ends the output, not the process with a panic.
                    let mut out = std::io::stdout().lock();
                    for event in events {
                        let text = serde_json::to_string_pretty(&event).unwrap_or_default();
                        if writeln!(out, "{text}").is_err() {
                            break;
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("siren: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Logs {
            integration,
            limit,
            url,
        } => client(logs(&config, integration, limit, url)),
        Command::Run => {
            init_tracing(cli.log_format);
            // SAFETY: still one thread; the runtime starts in `run`.
            let notifier = unsafe { Notifier::from_env() };
            match run(config, cli.config, notifier) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The event's fields at the top level, beside timestamp, level and target.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// Runs a client command; prints its error and exits 1 when it fails.
fn client(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match rt
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(f))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("siren: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn alerts(
    config: &Config,
    command: AlertsCommand,
    url: Option<String>,
) -> anyhow::Result<()> {
    let api = Api::from_config(config, url);
    let alert = match command {
        AlertsCommand::List {
            status,
            integration,
            since,
            limit,
        } => {
            let mut query = vec![format!("limit={limit}")];
            for (k, v) in [
                ("status", status),
                ("integration", integration),
                ("since", since),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", encode(&v)));
                }
            }
            let body = api
                .get(&format!("/api/v1/alerts?{}", query.join("&")))
                .await?;
            print!(
                "{}",
                cli::alert_table(body["alerts"].as_array().map_or(&[][..], |v| v))
            );
            return Ok(());
        }
        AlertsCommand::Show { id } => api.get(&format!("/api/v1/alerts/{}", encode(&id))).await?,
        AlertsCommand::Ack { id } => {
            api.post(&format!("/api/v1/alerts/{}/acknowledge", encode(&id)))
                .await?
        }
        AlertsCommand::Resolve { id } => {
            api.post(&format!("/api/v1/alerts/{}/resolve", encode(&id)))
                .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&alert)?);
    Ok(())
}

async fn logs(
    config: &Config,
    integration: String,
    limit: usize,
    url: Option<String>,
) -> anyhow::Result<()> {
    let api = Api::from_config(config, url);
    let body = api
        .get(&format!(
            "/api/v1/integrations/{}/logs?limit={limit}",
            encode(&integration)
        ))
        .await?;
    print!(
        "{}",
        cli::log_table(body["logs"].as_array().map_or(&[][..], |v| v))
    );
    Ok(())
}

/// Percent-encodes a query or path value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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

#[tokio::main]
async fn run(config: Config, path: PathBuf, notifier: Notifier) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    raise_open_file_limit();
    // Installed before anything can send them: SIGHUP's default action would kill the
    // daemon, and a SIGTERM right after READY=1 must drain, not kill.
    let hangup = signal(SignalKind::hangup())?;
    let shutdown = shutdown_signal();
    let app = App::build(config).await?;
    tokio::spawn(reload_on_hangup(hangup, path, app.live()));
    // Bound listeners already accept connections (the kernel queues them), and the store is
    // open: systemd may start what depends on Siren.
    let smtp: Vec<String> = app.smtp_addrs().iter().map(|a| a.to_string()).collect();
    let notifier = std::sync::Arc::new(notifier);
    notifier.ready(&format!(
        "SMTP on {}; HTTP on {}",
        smtp.join(", "),
        app.http_addr()
    ));
    tokio::spawn(notifier.clone().keep_alive());
    app.run(async {
        shutdown.await;
        notifier.stopping();
    })
    .await
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed when this is called,
/// not when the future is first polled, so that a signal sent right after READY=1 drains
/// instead of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// On each SIGHUP, reads the configuration file again and puts its integrations, templates
/// and destinations in force. A file that does not validate is refused, with the reason, and
/// the running configuration stays; open sessions are never touched.
async fn reload_on_hangup(mut hangup: tokio::signal::unix::Signal, path: PathBuf, live: Live) {
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
