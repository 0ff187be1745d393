//! The `siren` binary: parses the command line, loads the configuration and calls into the
//! library (`app::daemon::run`, `cli`). Exit codes: 0 clean stop, 2 configuration error (so
//! systemd does not restart-loop), 1 other.

mod notify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use siren::cli::{self, AlertsCommand};
use siren::{Config, app};

use notify::Notifier;

/// jemalloc: sled allocates and frees a leaf per insert (ARCHITECTURE.md, "Code map").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        /// Also print what integration ID does: templates and every rule, its preset's too.
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
    /// Run the stored inputs through this (draft) configuration and print what would differ;
    /// nothing is written. Reads a running daemon's log through its API.
    Replay(siren::replay::ReplayArgs),
    /// Silence what matches for a while (maintenance), list or end silences, on the daemon.
    Silence(siren::silence::SilenceArgs),
    /// Compact the sled store while the daemon is stopped: copy its live keys into a fresh
    /// directory that then takes its place (sled reclaims little of its log by itself).
    Compact,
    /// Show the newest log entries of an integration on the running daemon.
    Logs {
        integration: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        url: Option<String>,
    },
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
    let done = match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { explain } => {
            println!("{}: ok ({})", cli.config.display(), cli::loaded(&config));
            explain.map_or(Ok(()), |id| cli::explain(&config, &id))
        }
        Command::Alerts { command, url } => cli::alerts(&config, command, url),
        Command::Inject { file, integration } => {
            cli::inject(&config, &file, integration.as_deref())
        }
        Command::Logs {
            integration,
            limit,
            url,
        } => cli::logs(&config, &integration, limit, url),
        Command::Compact => cli::compact(&config),
        Command::Replay(args) => siren::replay::run(&config, args),
        Command::Silence(args) => siren::silence::run(&config, args),
        Command::Run => {
            app::daemon::init_tracing(matches!(cli.log_format, LogFormat::Json));
            // SAFETY: still one thread; the runtime starts in `run`.
            let notifier = unsafe { Notifier::from_env() };
            return match run(config, cli.config, notifier) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::from(1)
                }
            };
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("siren: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The daemon, telling systemd when it is ready (and keeping its watchdog fed) and stopping.
#[tokio::main]
async fn run(config: Config, path: PathBuf, notifier: Notifier) -> anyhow::Result<()> {
    let notifier = Arc::new(notifier);
    let ready = notifier.clone();
    let ready = move |status: String| {
        ready.ready(&status);
        tokio::spawn(ready.clone().keep_alive());
    };
    app::daemon::run(config, path, ready, move || notifier.stopping()).await
}
