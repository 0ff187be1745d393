//! The `siren alerts` and `siren logs` commands: clients of the running daemon's HTTP API
//! (the same API anyone else uses), printing tables for lists and JSON for single alerts.

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::config::Config;

/// Where the API is and how to authenticate.
pub struct Api {
    base: String,
    token: Option<String>,
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

    async fn call(&self, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
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
        let data = &l["data"];
        let subject = ["subject", "Title", "title"]
            .iter()
            .find_map(|k| data[*k].as_str())
            .unwrap_or("");
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

fn table<const N: usize>(rows: &[[String; N]]) -> String {
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
