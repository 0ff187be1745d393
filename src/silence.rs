//! `siren silence add|list|end`: maintenance windows on the running daemon, through its HTTP
//! API (`/api/v1/silences`), like `siren alerts`.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

use crate::cli::{Api, block_on, encode, table};
use crate::config::Config;

/// `siren silence …` and where the daemon is.
#[derive(Debug, clap::Args)]
pub struct SilenceArgs {
    #[command(subcommand)]
    command: SilenceCommand,
    /// The daemon's HTTP base URL (default: http.listen of the configuration).
    #[arg(long, global = true)]
    url: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum SilenceCommand {
    /// Silence what matches, from now (or --starts) for --duration (or until --until). Every
    /// matcher is optional; all given must match.
    Add {
        /// Only this integration's inputs.
        #[arg(long)]
        integration: Option<String>,
        /// A regular expression the alert's title must match.
        #[arg(long)]
        title: Option<String>,
        /// data.<field>=REGEX, e.g. 'data.host=^db01$' (repeatable).
        #[arg(long = "match", value_name = "data.FIELD=REGEX")]
        matches: Vec<String>,
        /// How long, e.g. 2h or 30m.
        #[arg(long, conflicts_with = "until")]
        duration: Option<String>,
        /// The end, as an RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// The start, as an RFC 3339 time (default: now).
        #[arg(long)]
        starts: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
        /// Who silences (default: $USER, else $LOGNAME, else "siren silence").
        #[arg(long)]
        created_by: Option<String>,
    },
    /// Silences, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// End a silence now.
    End { id: String },
}

/// Runs `siren silence …` against the daemon at `--url` (default: `http.listen`).
pub fn run(config: &Config, args: SilenceArgs) -> anyhow::Result<()> {
    let (command, api) = (args.command, Api::from_config(config, args.url));
    block_on(async move {
        let silence = match command {
            SilenceCommand::Add {
                integration,
                title,
                matches,
                duration,
                until,
                starts,
                comment,
                created_by,
            } => {
                let mut matchers = Map::new();
                if let Some(i) = integration {
                    matchers.insert("integration".into(), i.into());
                }
                if let Some(t) = title {
                    matchers.insert("title".into(), t.into());
                }
                for m in matches {
                    let (key, regex) = m
                        .split_once('=')
                        .with_context(|| format!("--match {m}: use data.FIELD=REGEX"))?;
                    matchers.insert(key.to_string(), regex.into());
                }
                let ends_at = match (duration, until) {
                    (Some(d), None) => {
                        let d: Duration = humantime::parse_duration(&d)
                            .with_context(|| format!("--duration {d}: use e.g. 2h or 30m"))?;
                        let from = match &starts {
                            Some(s) => humantime::parse_rfc3339_weak(s)
                                .with_context(|| format!("--starts {s}: not an RFC 3339 time"))?,
                            None => std::time::SystemTime::now(),
                        };
                        humantime::format_rfc3339_seconds(from + d).to_string()
                    }
                    (None, Some(u)) => u,
                    _ => bail!("give --duration or --until"),
                };
                let body = json!({
                    "matchers": matchers,
                    "starts_at": starts,
                    "ends_at": ends_at,
                    "comment": comment,
                    "created_by": created_by
                        .or_else(|| std::env::var("USER").ok())
                        .or_else(|| std::env::var("LOGNAME").ok())
                        .filter(|who| !who.is_empty())
                        .unwrap_or_else(|| "siren silence".into()),
                });
                api.request(reqwest::Method::POST, "/api/v1/silences", Some(&body))
                    .await?
            }
            SilenceCommand::List { limit } => {
                let body = api.get(&format!("/api/v1/silences?limit={limit}")).await?;
                print!(
                    "{}",
                    silence_table(body["silences"].as_array().map_or(&[][..], |v| v))
                );
                return Ok(());
            }
            SilenceCommand::End { id } => {
                let path = format!("/api/v1/silences/{}", encode(&id));
                api.request(reqwest::Method::DELETE, &path, None).await?
            }
        };
        println!("{}", serde_json::to_string_pretty(&silence)?);
        Ok(())
    })
}

/// Silences as an aligned table.
pub fn silence_table(silences: &[Value]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "STATE".into(),
        "STARTS".into(),
        "ENDS".into(),
        "MATCHERS".into(),
        "COMMENT".into(),
    ]];
    for s in silences {
        let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
        let matchers: Vec<String> = s["matchers"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let matchers = if matchers.is_empty() {
            "(everything)".to_string()
        } else {
            matchers.join(" ")
        };
        rows.push([
            text("id"),
            text("state"),
            text("starts_at"),
            text("ends_at"),
            matchers,
            text("comment").chars().take(60).collect(),
        ]);
    }
    table(&rows)
}
