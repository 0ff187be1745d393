//! `[[destinations]]`: where alert events go, with the kind's own settings and the retry policy.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::domain::{AlertEvent, Secret};

use super::key::Key;
use super::raw::RawDestination;
use super::{ConfigError, Destination, DestinationType, HttpConfig, Target};

pub(super) fn destinations(
    at: &Key,
    raw: Vec<RawDestination>,
    http: &HttpConfig,
) -> Result<Vec<Destination>, ConfigError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, d) in raw.into_iter().enumerate() {
        let id = at.item(i).at("id");
        id.identifier(&d.id)?;
        if !seen.insert(d.id.clone()) {
            return Err(id.err(format!("\"{}\" is used twice", d.id)));
        }
        out.push(destination(&at.item(&d.id), d, http)?);
    }
    Ok(out)
}

fn destination(at: &Key, d: RawDestination, http: &HttpConfig) -> Result<Destination, ConfigError> {
    required(at, &d)?;
    let secret = at
        .at("secret")
        .secret(d.secret, d.secret_file, d.secret_env)?;
    let target = match d.kind {
        DestinationType::Webhook => Target::Webhook {
            headers: headers(&at.at("headers"), d.headers)?,
            url: at.at("url").url(d.url.as_deref().unwrap_or_default())?,
            secret,
        },
        DestinationType::Slack => Target::Slack {
            url: at.at("url").url(d.url.as_deref().unwrap_or_default())?,
            link_base: http.public_url.clone(),
        },
        DestinationType::Email => email(
            at,
            d.smarthost.unwrap_or_default(),
            d.from.unwrap_or_default(),
            d.to.unwrap_or_default(),
        )?,
        DestinationType::Command => Target::Command {
            argv: d.command.unwrap_or_default(),
        },
    };
    let (retry_initial, retry_max) = retry(at, d.retry_initial, d.retry_max)?;
    Ok(Destination {
        id: d.id,
        kind: d.kind,
        target,
        events: d.events.unwrap_or_else(|| {
            vec![
                AlertEvent::Create,
                AlertEvent::Acknowledge,
                AlertEvent::Resolve,
            ]
        }),
        max_attempts: at
            .at("max_attempts")
            .positive(d.max_attempts.unwrap_or(8), 100)? as u32,
        retry_initial,
        retry_max,
        timeout: at
            .at("timeout")
            .duration(d.timeout.as_deref().unwrap_or("10s"))?,
    })
}

/// The keys the destination's type cannot do without.
fn required(at: &Key, d: &RawDestination) -> Result<(), ConfigError> {
    let required: &[(&str, bool)] = match d.kind {
        DestinationType::Webhook | DestinationType::Slack => &[("url", d.url.is_some())],
        DestinationType::Command => {
            &[("command", d.command.as_ref().is_some_and(|c| !c.is_empty()))]
        }
        DestinationType::Email => &[
            ("smarthost", d.smarthost.is_some()),
            ("from", d.from.is_some()),
            ("to", d.to.as_ref().is_some_and(|t| !t.is_empty())),
        ],
    };
    match required.iter().find(|(_, present)| !present) {
        Some((name, _)) => Err(at
            .at(name)
            .err(format!("is required for type {:?}", d.kind).to_lowercase())),
        None => Ok(()),
    }
}

/// A webhook's extra headers, sorted by name, each a valid HTTP header.
fn headers(at: &Key, raw: HashMap<String, String>) -> Result<Vec<(String, Secret)>, ConfigError> {
    let mut headers: Vec<(String, String)> = raw.into_iter().collect();
    headers.sort();
    for (name, value) in &headers {
        let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(value).is_ok();
        if !valid {
            return Err(at.err(format!(
                "\"{name}\" is not a valid HTTP header name and value"
            )));
        }
    }
    Ok(headers
        .into_iter()
        .map(|(name, value)| (name, Secret::new(value)))
        .collect())
}

/// An e-mail destination: `smarthost` as host[:port] (25 by default), addresses that parse.
fn email(
    at: &Key,
    smarthost: String,
    from: String,
    to: Vec<String>,
) -> Result<Target, ConfigError> {
    let (host, port) = match smarthost.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0)),
        None => (smarthost.as_str(), Some(25)),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let Some(port) = port.filter(|_| !host.is_empty()) else {
        return Err(at.at("smarthost").err(format!(
            "\"{smarthost}\" is not host:port, e.g. \"127.0.0.1:25\""
        )));
    };
    for (name, a) in std::iter::once(("from", &from)).chain(to.iter().map(|t| ("to", t))) {
        if a.parse::<lettre::Address>().is_err() {
            return Err(at.at(name).err(format!("\"{a}\" is not an e-mail address")));
        }
    }
    Ok(Target::Email {
        host: host.to_string(),
        port,
        from,
        to,
    })
}

/// The backoff: `retry_initial` (1s) doubling up to `retry_max` (10m), never below it.
fn retry(
    at: &Key,
    initial: Option<String>,
    max: Option<String>,
) -> Result<(Duration, Duration), ConfigError> {
    let initial = at
        .at("retry_initial")
        .duration(initial.as_deref().unwrap_or("1s"))?;
    let max = at
        .at("retry_max")
        .duration(max.as_deref().unwrap_or("10m"))?;
    if max < initial {
        return Err(at
            .at("retry_max")
            .err("must not be shorter than retry_initial"));
    }
    Ok((initial, max))
}
