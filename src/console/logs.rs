//! One integration log entry: its envelope or HTTP metadata, the parsed data as tables, the
//! outcome, the rendered e-mail body in a sandboxed iframe, and the raw input as received with
//! a download. The body document gets its own CSP (no script, no remote load, no form) and a
//! `sandbox`, so even opened on its own nothing in it runs.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;

use super::session::Visitor;
use super::view::{self, Chrome, When, now_ms};
use super::{Console, ConsoleError, blocking};
use crate::store::{LogEntry, LogSummary, Source};

/// The sandboxed documents' policy: nothing but inline styles and data: images (ammonia has
/// already dropped scripts, handlers and every URL scheme but http, https and mailto, so `cid:`
/// images are gone before this; remote ones are blocked here).
pub const BODY_CSP: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; \
     frame-ancestors 'self'; base-uri 'none'; form-action 'none'; \
     sandbox allow-popups allow-popups-to-escape-sandbox";
/// Raw input shown on the page at most; the download has all of it.
const RAW_SHOWN: usize = 1024 * 1024;
/// Rows of a webhook's data table at most.
const DATA_ROWS: usize = 2000;

pub struct Field {
    pub name: String,
    pub value: String,
}

fn field(name: &str, value: impl Into<String>) -> Field {
    Field {
        name: name.to_string(),
        value: value.into(),
    }
}

pub struct Attachment {
    pub name: String,
    pub kind: String,
    pub size: String,
}

#[derive(Template)]
#[template(path = "log.html")]
struct LogPage {
    chrome: Chrome,
    e: LogSummary,
    received: When,
    source: String,
    outcome: String,
    size: String,
    is_email: bool,
    envelope: Vec<Field>,
    fields: Vec<Field>,
    headers: Vec<Field>,
    attachments: Vec<Attachment>,
    data: Vec<Field>,
    data_cut: bool,
    raw: String,
    raw_cut: bool,
    raw_name: String,
}

fn log_id(id: &str) -> Result<u64, ConsoleError> {
    id.parse()
        .map_err(|_| ConsoleError::not_found(format!("There is no log entry \"{id}\".")))
}

async fn entry(console: &Console, n: u64) -> Result<(LogEntry, Vec<u8>), ConsoleError> {
    let store = console.store.clone();
    let (entry, raw) = blocking(move || Ok((store.log(n)?, store.raw(n)?))).await?;
    let entry = entry.ok_or_else(|| {
        ConsoleError::not_found(format!(
            "There is no log entry {n} (retention may have removed it)."
        ))
    })?;
    Ok((entry, raw.unwrap_or_default()))
}

/// A scalar as text: strings as they are, the rest as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// JSON as rows of `path = value` (`alerts[0].labels.instance`), at most [`DATA_ROWS`].
fn flatten(path: &str, v: &Value, out: &mut Vec<Field>) {
    if out.len() > DATA_ROWS {
        return;
    }
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), v, out);
            }
        }
        other => out.push(field(path, text(other))),
    }
}

pub async fn show(
    State(console): State<Console>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let n = log_id(&id)?;
    let (e, raw) = entry(&console, n).await?;
    let LogEntry { summary: e, data } = e;
    let d = &data;
    let is_email = e.source == Source::Smtp;
    let (mut envelope, mut fields, mut headers, mut attachments, mut data) =
        (vec![], vec![], vec![], vec![], vec![]);
    if is_email {
        let env = &d["envelope"];
        envelope = vec![
            field("MAIL FROM", text(&env["mail_from"])),
            field("RCPT TO", text(&env["rcpt_to"])),
            field("Client", text(&env["client_addr"])),
            field("HELO", text(&env["helo"])),
        ];
        for (name, key) in [
            ("From", "from"),
            ("To", "to"),
            ("Cc", "cc"),
            ("Subject", "subject"),
            ("Date", "date"),
            ("Message-ID", "message_id"),
            ("In-Reply-To", "in_reply_to"),
            ("References", "references"),
            ("Tag", "tag"),
            ("Rule", "rule"),
            ("Parse error", "parse_error"),
        ] {
            let v = text(&d[key]);
            if !v.is_empty() {
                fields.push(field(name, v));
            }
        }
        if let Some(h) = d["headers"].as_object() {
            headers = h.iter().map(|(k, v)| field(k, text(v))).collect();
        }
        if let Some(list) = d["attachments"].as_array() {
            attachments = list
                .iter()
                .map(|a| Attachment {
                    name: text(&a["name"]),
                    kind: text(&a["type"]),
                    size: view::size(a["size"].as_u64().unwrap_or(0)),
                })
                .collect();
        }
    } else {
        flatten("", d, &mut data);
    }
    let data_cut = data.len() > DATA_ROWS;
    data.truncate(DATA_ROWS);
    let raw_cut = raw.len() > RAW_SHOWN;
    let shown = String::from_utf8_lossy(&raw[..raw.len().min(RAW_SHOWN)]).into_owned();
    let page = LogPage {
        chrome: Chrome::new(format!("Log entry {n}"), "integrations", &visitor),
        received: When::parse(&e.received_at, now_ms()),
        source: view::name(&e.source),
        outcome: view::outcome(e.outcome),
        size: view::size(e.size),
        is_email,
        envelope,
        fields,
        headers,
        attachments,
        data,
        data_cut,
        raw: shown,
        raw_cut,
        raw_name: raw_name(n, is_email),
        e,
    };
    view::page(&page)
}

fn raw_name(n: u64, is_email: bool) -> String {
    format!("siren-log-{n}.{}", if is_email { "eml" } else { "json" })
}

#[derive(Template)]
#[template(path = "body.html")]
struct Document<'a> {
    html: &'a str,
    /// Plain text (escaped by the sanitizer already): keep its line breaks.
    pre: bool,
}

/// A sanitized HTML fragment as a document of its own, for a sandboxed iframe.
pub fn document(sanitized: &str) -> Result<Response, ConsoleError> {
    // The sanitizer's output escapes every literal `<`: one left is markup.
    let doc = Document {
        html: sanitized,
        pre: !sanitized.contains('<'),
    };
    let mut resp = Html(doc.render()?).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(BODY_CSP),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    Ok(resp)
}

/// The e-mail's rendered (sanitized) body, as a document for the page's sandboxed iframe.
pub async fn body(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let n = log_id(&id)?;
    let (e, _) = entry(&console, n).await?;
    match e.data["message"].as_str() {
        Some(message) if e.summary.source == Source::Smtp => document(message),
        _ => Err(ConsoleError::not_found(format!(
            "Log entry {n} is not an e-mail."
        ))),
    }
}

/// The raw input, byte for byte, as a download.
pub async fn raw(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let n = log_id(&id)?;
    let (e, raw) = entry(&console, n).await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        raw_name(n, e.summary.source == Source::Smtp)
    );
    let mut resp = raw.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_flattens_to_paths() {
        let mut out = Vec::new();
        let v = serde_json::json!({"a": {"b": [1, {"c": "x"}]}, "d": null, "e": {}});
        flatten("", &v, &mut out);
        let rows: Vec<(String, String)> = out.into_iter().map(|f| (f.name, f.value)).collect();
        assert_eq!(
            rows,
            [
                ("a.b[0]".into(), "1".into()),
                ("a.b[1].c".into(), "x".into()),
                ("d".into(), "".into()),
                ("e".into(), "{}".into()),
            ]
        );
    }
}
