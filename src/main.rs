//! The `siren` binary: CLI -> Config::load -> tracing -> App::build -> run until a signal.
//! Exit codes: 0 clean stop, 2 configuration error (so systemd does not restart-loop), 1 other.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use siren::{App, Config};

#[derive(Parser)]
#[command(name = "siren", version, about = "Self-hosted alert ingestion daemon")]
struct Cli {
    /// Configuration file (used when no subcommand is given).
    #[arg(long, global = true, default_value = "config/siren.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration file and exit: 0 when valid, 2 with the reason otherwise.
    CheckConfig,
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
        Command::CheckConfig => {
            println!(
                "{}: ok ({} integrations, {} destinations)",
                cli.config.display(),
                config.integrations.len(),
                config.destinations.len()
            );
            ExitCode::SUCCESS
        }
        Command::Run => {
            init_tracing();
            match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("siren: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[tokio::main]
async fn run(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    app.run(shutdown_signal()).await
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
