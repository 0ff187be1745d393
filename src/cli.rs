//! The `siren alerts`, `siren logs` and `siren inject` commands. `alerts` and `logs` are
//! clients of the running daemon's HTTP API (the same API anyone else uses), printing tables
//! for lists and JSON for single alerts; `inject` runs a sample through the pipeline offline.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::config::Config;

/// `siren alerts …`.
#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
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

/// Runs `siren alerts …` against the daemon at `url` (default: `http.listen`).
pub fn alerts(config: &Config, command: AlertsCommand, url: Option<String>) -> anyhow::Result<()> {
    let api = Api::from_config(config, url);
    block_on(async move {
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
                let path = format!("/api/v1/alerts?{}", query.join("&"));
                let body = api.get(&path).await?;
                print!("{}", alert_table(list(&body["alerts"])));
                return Ok(());
            }
            AlertsCommand::Show { id } => {
                api.get(&format!("/api/v1/alerts/{}", encode(&id))).await?
            }
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
    })
}

/// Runs `siren logs INTEGRATION`: its newest `limit` log entries as a table.
pub fn logs(
    config: &Config,
    integration: &str,
    limit: usize,
    url: Option<String>,
) -> anyhow::Result<()> {
    let api = Api::from_config(config, url);
    let path = format!(
        "/api/v1/integrations/{}/logs?limit={limit}",
        encode(integration)
    );
    block_on(async move {
        let body = api.get(&path).await?;
        print!("{}", log_table(list(&body["logs"])));
        Ok(())
    })
}

/// Runs `siren compact`: compacts the sled store of `[store]` (the daemon stopped) and says
/// what it saved.
pub fn compact(config: &Config) -> anyhow::Result<()> {
    let store = &config.store;
    if store.postgres.is_some() {
        bail!("the store is PostgreSQL, which reclaims its own space (VACUUM); nothing to compact");
    }
    // The store's error already says what its source said: not chained, so not said twice.
    let done = crate::store::compact(&store.path, Some(store.cache_size))
        .map_err(|e| anyhow::anyhow!("cannot compact {}: {e}", store.path.display()))?;
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "{}: {:.1} MiB on disk before, {:.1} MiB after; {} keys, {:.1} MiB of live keys and values ({:.2}x on disk); {:.1} s",
        store.path.display(),
        mib(done.before),
        mib(done.after),
        done.keys,
        mib(done.live),
        done.after as f64 / done.live.max(1) as f64,
        done.took.as_secs_f64()
    );
    Ok(())
}

/// Runs `siren inject FILE`: prints, as JSON, what each event of the sample would ask of the
/// store. Nothing is stored and no daemon is needed.
pub fn inject(config: &Config, file: &Path, integration: Option<&str>) -> anyhow::Result<()> {
    let input = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let events = crate::ingest::inject(config, &input, integration).map_err(anyhow::Error::msg)?;
    // A closed pipe (`| head`) ends the output, not the process with a panic.
    let mut out = std::io::stdout().lock();
    for event in events {
        let text = serde_json::to_string_pretty(&event).unwrap_or_default();
        if writeln!(out, "{text}").is_err() {
            break;
        }
    }
    Ok(())
}

/// `siren check-config --explain ID`: prints what integration `id` does ([`config::explain`]).
///
/// [`config::explain`]: crate::config::explain
pub fn explain(config: &Config, id: &str) -> anyhow::Result<()> {
    let text = crate::config::explain(config, id)
        .with_context(|| format!("no integration \"{id}\" in the configuration"))?;
    print!("{text}");
    Ok(())
}

pub(crate) fn block_on(f: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[][..], |v| v)
}

/// Percent-encodes a query or path value.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where the API is and how to authenticate.
pub struct Api {
    base: String,
    token: Option<crate::domain::Secret>,
    client: reqwest::Client,
}

impl Api {
    /// The API of the daemon running on `config` (its `http.listen` and `api_token`).
    pub fn from_config(config: &Config, url: Option<String>) -> Api {
        let base = url.unwrap_or_else(|| format!("http://{}", config.http.listen));
        Api {
            base: base.trim_end_matches('/').to_string(),
            token: config.http.api_token.clone(),
            client: reqwest::Client::new(),
        }
    }

    /// The daemon's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
        self.request(method, path, None).await
    }

    /// Calls the API with `body` as JSON, if any; answers the JSON body of a success, else
    /// fails with the status and the API's `error`.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.as_str());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach Siren at {url}; is it running?"))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .with_context(|| format!("{url} did not answer JSON"))?;
        if !status.is_success() {
            bail!(
                "{status}: {}",
                body["error"].as_str().unwrap_or("request failed")
            );
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path).await
    }

    pub async fn post(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path).await
    }
}

/// Renders alerts as an aligned table, newest first.
pub fn alert_table(alerts: &[Value]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "STATUS".into(),
        "URGENCY".into(),
        "DEDUP".into(),
        "INTEGRATION".into(),
        "CREATED".into(),
        "TITLE".into(),
    ]];
    for a in alerts {
        let s = |k: &str| a[k].as_str().unwrap_or("").to_string();
        rows.push([
            s("id"),
            s("status"),
            s("urgency"),
            a["dedup_count"].to_string(),
            s("integration"),
            s("created_at"),
            s("title").chars().take(80).collect(),
        ]);
    }
    table(&rows)
}

/// Renders log entries as an aligned table, newest first.
pub fn log_table(logs: &[Value]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "RECEIVED".into(),
        "SOURCE".into(),
        "OUTCOME".into(),
        "ALERT".into(),
        "SUBJECT/TITLE".into(),
    ]];
    for l in logs {
        let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
        let subject = l["summary"].as_str().unwrap_or("");
        rows.push([
            s(&l["id"]),
            s(&l["received_at"]),
            s(&l["source"]),
            s(&l["outcome"]),
            s(&l["alert_id"]),
            subject.chars().take(80).collect(),
        ]);
    }
    table(&rows)
}

pub(crate) fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// What `check-config` found: "3 integrations, 1 destination".
pub fn loaded(config: &Config) -> String {
    let count = |n: usize, noun: &str| format!("{n} {noun}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        count(config.integrations.len(), "integration"),
        count(config.destinations.len(), "destination")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_config_counts_in_the_singular_and_the_plural() {
        let parse = |text: &str| Config::parse(text, std::path::Path::new("t.toml")).unwrap();
        assert_eq!(loaded(&parse("")), "0 integrations, 0 destinations");
        let one = "[[integrations]]\nid = \"a\"\ntype = \"webhook\"\n\
                   [[destinations]]\nid = \"d\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n";
        assert_eq!(loaded(&parse(one)), "1 integration, 1 destination");
    }
}
