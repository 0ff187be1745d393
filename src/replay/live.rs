//! Where `siren replay` reads what was received and what it came to. sled lets one process
//! open a store at a time (it locks the files), so while the daemon runs the log is read
//! through its HTTP API (`GET /api/v1/integrations/{id}/logs`, `GET /api/v1/logs/{id}` for the
//! data and raw input, `GET /api/v1/alerts/{id}`): consistent reads, the daemon untouched.
//! When no daemon answers, the store is opened directly: Siren's `Store` only reads, and
//! holding sled's lock meanwhile keeps a daemon from starting on it half-way through.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde_json::Value;

use crate::cli::{Api, encode};
use crate::config::Config;
use crate::store::Store;

/// One stored log entry with its data and raw input.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    pub integration: String,
    pub received_at: SystemTime,
    /// `smtp` or `http`.
    pub source: String,
    pub remote_addr: String,
    pub outcome: Option<String>,
    pub alert_id: Option<u64>,
    pub error: Option<String>,
    pub data: Value,
    pub raw: Vec<u8>,
}

/// An alert as it is now on the live side.
#[derive(Debug, Clone)]
pub struct LiveAlert {
    pub integration: String,
    pub thirdparty_id: String,
    pub title: String,
    pub created_at: SystemTime,
    /// The entry that created it.
    pub log_id: u64,
}

pub enum Live {
    Api(Api),
    Store(Store),
}

/// Entries are read in pages of this many.
const PAGE: usize = 1000;

impl Live {
    /// The running daemon's API at `url` (default: the draft's `http.listen`) when it answers;
    /// else the store at the draft's `store.path`. Answers how it reads, for the user.
    pub async fn open(config: &Config, url: Option<String>) -> anyhow::Result<(Live, String)> {
        let given = url.is_some();
        let api = Api::from_config(config, url);
        match api.get("/healthz").await {
            Ok(_) => {
                let how = format!(
                    "reading the running daemon's log through its API at {} (sled lets only the daemon open the store)",
                    api.base()
                );
                return Ok((Live::Api(api), how));
            }
            Err(e) if given => return Err(e),
            Err(_) => {}
        }
        let path = &config.store.path;
        if !Path::new(path).join("db").exists() {
            bail!(
                "no daemon answers at {} and there is no store at {}",
                api.base(),
                path.display()
            );
        }
        let store = Store::open(path).map_err(|e| {
            anyhow::anyhow!("{e}; if a daemon runs on this store, give its address with --url")
        })?;
        let how = format!(
            "no daemon answers at {}: reading the store at {} directly (read only; the daemon cannot start meanwhile)",
            api.base(),
            path.display()
        );
        Ok((Live::Store(store), how))
    }

    /// The ids of the integrations the live side knows.
    pub async fn integrations(&self, config: &Config) -> anyhow::Result<Vec<String>> {
        match self {
            Live::Api(api) => {
                let body = api.get("/api/v1/integrations").await?;
                Ok(body["integrations"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(|i| i["id"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default())
            }
            Live::Store(_) => Ok(config.integrations.iter().map(|i| i.id.clone()).collect()),
        }
    }

    /// The entries of `integration` received at or after `since`, oldest first.
    pub async fn entries(
        &self,
        integration: &str,
        since: SystemTime,
    ) -> anyhow::Result<Vec<Entry>> {
        let mut summaries = Vec::new();
        let mut cursor: Option<String> = None;
        'pages: loop {
            let (items, next) = self.page(integration, cursor.as_deref()).await?;
            for s in items {
                if received_at(&s)? < since {
                    break 'pages;
                }
                summaries.push(s);
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let mut entries = Vec::with_capacity(summaries.len());
        for s in summaries.into_iter().rev() {
            let id: u64 = s["id"].as_str().unwrap_or_default().parse()?;
            let (data, raw) = self.detail(id).await?;
            entries.push(Entry {
                id,
                integration: integration.to_string(),
                received_at: received_at(&s)?,
                source: text(&s["source"]),
                remote_addr: text(&s["remote_addr"]),
                outcome: s["outcome"].as_str().map(str::to_string),
                alert_id: s["alert_id"].as_str().and_then(|a| a.parse().ok()),
                error: s["error"].as_str().map(str::to_string),
                data,
                raw,
            });
        }
        Ok(entries)
    }

    /// One page of log summaries, newest first, and the next page's cursor.
    async fn page(
        &self,
        integration: &str,
        cursor: Option<&str>,
    ) -> anyhow::Result<(Vec<Value>, Option<String>)> {
        match self {
            Live::Api(api) => {
                let mut path = format!(
                    "/api/v1/integrations/{}/logs?limit={PAGE}",
                    encode(integration)
                );
                if let Some(c) = cursor {
                    path.push_str(&format!("&cursor={}", encode(c)));
                }
                let body = api.get(&path).await?;
                let items = body["logs"].as_array().cloned().unwrap_or_default();
                Ok((items, body["next"].as_str().map(str::to_string)))
            }
            Live::Store(store) => {
                let cursor = cursor.map(str::parse).transpose()?;
                let page = store.logs(integration, PAGE, cursor)?;
                let items = page
                    .items
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<_, _>>()?;
                Ok((items, page.next))
            }
        }
    }

    /// An entry's data and raw input, exactly as received.
    async fn detail(&self, id: u64) -> anyhow::Result<(Value, Vec<u8>)> {
        match self {
            Live::Api(api) => {
                let body = api.get(&format!("/api/v1/logs/{id}")).await?;
                let raw = match body["raw_base64"].as_str() {
                    Some(b) => base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .context("raw_base64 is not base64")?,
                    None => text(&body["raw"]).into_bytes(),
                };
                Ok((body["data"].clone(), raw))
            }
            Live::Store(store) => {
                let entry = store
                    .log(id)?
                    .with_context(|| format!("no log entry {id}"))?;
                Ok((entry.data, store.raw(id)?.unwrap_or_default()))
            }
        }
    }

    /// Alert `id` as it is now.
    pub async fn alert(&self, id: u64) -> anyhow::Result<Option<LiveAlert>> {
        let a = match self {
            Live::Api(api) => match api.get(&format!("/api/v1/alerts/{id}")).await {
                Ok(a) => a,
                Err(e) if e.to_string().starts_with("404") => return Ok(None),
                Err(e) => return Err(e),
            },
            Live::Store(store) => match store.alert(id)? {
                Some(a) => serde_json::to_value(a)?,
                None => return Ok(None),
            },
        };
        Ok(Some(LiveAlert {
            integration: text(&a["integration"]),
            thirdparty_id: text(&a["thirdparty_id"]),
            title: text(&a["title"]),
            created_at: humantime::parse_rfc3339_weak(&text(&a["created_at"]))?,
            log_id: text(&a["log_id"]).parse()?,
        }))
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn received_at(summary: &Value) -> anyhow::Result<SystemTime> {
    let at = text(&summary["received_at"]);
    humantime::parse_rfc3339_weak(&at).with_context(|| format!("received_at \"{at}\""))
}
