//! Raw file -> [`Config`]: each table is checked by its own function, walking down a [`Key`]
//! so that every error names the file, the key and what is allowed. Templates are compiled and
//! the router built here, so a loaded `Config` is ready to serve.

use std::sync::Arc;

use crate::domain::Integration;
use crate::route::Router;
use crate::template::Templates;

use super::key::Key;
use super::raw::{RawConfig, RawHttp, RawLogs};
use super::{Config, ConfigError, HttpConfig, LogsConfig, StoreConfig};
use super::{destinations, integrations, smtp};

pub(super) fn config(at: &Key, raw: RawConfig) -> Result<Config, ConfigError> {
    let smtp = smtp::smtp(&at.at("smtp"), raw.smtp)?;
    let http = http(&at.at("http"), raw.http)?;
    if raw.store.path.as_os_str().is_empty() {
        return Err(at.at("store").at("path").err("must not be empty"));
    }
    let logs = logs(&at.at("logs"), raw.logs)?;
    let destinations = destinations::destinations(&at.at("destinations"), raw.destinations, &http)?;
    let integrations =
        integrations::integrations(&at.at("integrations"), raw.integrations, &destinations)?;
    open_intake(at, &http, &integrations)?;
    let templates = Templates::new(&integrations).map_err(|e| {
        at.at("integrations")
            .item(&e.integration)
            .at(e.field)
            .err(e.message)
    })?;
    Ok(Config {
        smtp,
        http,
        store: StoreConfig {
            path: raw.store.path,
            cache_size: at.at("store").at("cache_size").size_in(
                raw.store.cache_size,
                1 << 20,
                1 << 40,
            )?,
        },
        logs,
        router: Arc::new(Router::new(&integrations)),
        integrations,
        destinations,
        templates: Arc::new(templates),
    })
}

fn http(at: &Key, raw: RawHttp) -> Result<HttpConfig, ConfigError> {
    let listen = at.at("listen").socket_addr(&raw.listen)?;
    let api_token =
        at.at("api_token")
            .secret(raw.api_token, raw.api_token_file, raw.api_token_env)?;
    if api_token.is_none() && !listen.ip().is_loopback() {
        return Err(at.at("api_token").err(
            "is required when http.listen is not a loopback address (set api_token or api_token_file)",
        ));
    }
    let max_body_size = at
        .at("max_body_size")
        .positive(raw.max_body_size, 1 << 28)?;
    let public_url = match raw.public_url {
        Some(u) => at
            .at("public_url")
            .url(&u)?
            .as_str()
            .trim_end_matches('/')
            .to_string(),
        None => format!("http://{listen}"),
    };
    Ok(HttpConfig {
        listen,
        api_token,
        max_body_size,
        public_url,
        max_alerts_per_request: at
            .at("max_alerts_per_request")
            .positive(raw.max_alerts_per_request, 1_000_000)?,
        header_timeout: at.at("header_timeout").duration(&raw.header_timeout)?,
        body_timeout: at.at("body_timeout").duration(&raw.body_timeout)?,
        body_min_rate: at
            .at("body_min_rate")
            .positive(raw.body_min_rate, 1 << 30)? as u64,
        keepalive_timeout: at
            .at("keepalive_timeout")
            .duration(&raw.keepalive_timeout)?,
        max_connections: at
            .at("max_connections")
            .positive(raw.max_connections, 1 << 20)?,
    })
}

fn logs(at: &Key, raw: RawLogs) -> Result<LogsConfig, ConfigError> {
    Ok(LogsConfig {
        max_entries: at.at("max_entries").positive(raw.max_entries, 1_000_000)?,
        max_age: at.at("max_age").duration(&raw.max_age)?,
    })
}

/// Off loopback, every HTTP intake needs a token: anyone who can reach the port could
/// otherwise raise alerts.
fn open_intake(
    at: &Key,
    http: &HttpConfig,
    integrations: &[Integration],
) -> Result<(), ConfigError> {
    if http.listen.ip().is_loopback() {
        return Ok(());
    }
    match integrations
        .iter()
        .find(|i| i.kind.is_http() && i.token.is_none())
    {
        Some(open) => Err(at.at("integrations").item(&open.id).at("token").err(
            "is required for webhook, alertmanager and grafana integrations when http.listen is not a loopback address (set token or token_file)",
        )),
        None => Ok(()),
    }
}
