//! One delivery attempt per destination kind. Each returns `Err` with a short reason that the
//! worker logs and keeps with the delivery; none retries by itself.

use std::process::Stdio;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{Destination, Target};
use crate::store::{Alert, AlertEvent, Payload};

/// Bytes of a failed answer's body (or a command's stderr) kept in the error.
const ERROR_EXCERPT: usize = 300;

/// Sends deliveries; holds the HTTP connection pool.
pub struct Sender {
    http: reqwest::Client,
    hello: String,
}

impl Sender {
    /// `hello`: the name Siren gives itself to SMTP smarthosts (EHLO) and in Message-IDs.
    pub fn new(hello: String) -> Self {
        // No redirects: a destination is the URL configured, and a 3xx is its answer (a
        // failure, retried), not an instruction to send the alert somewhere else.
        let http = reqwest::Client::builder()
            .user_agent(concat!("siren/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { http, hello }
    }

    /// Makes one attempt to deliver `payload` (delivery `id`) to `dest`.
    pub async fn send(&self, dest: &Destination, id: u64, payload: &Payload) -> Result<(), String> {
        match &dest.target {
            Target::Webhook {
                url,
                headers,
                secret,
            } => {
                let body = body(dest, id, payload);
                let mut request = self
                    .http
                    .post(url.clone())
                    .header("content-type", "application/json")
                    .header("x-siren-event", event_name(payload.event))
                    .header("x-siren-delivery", id.to_string());
                for (name, value) in headers {
                    request = request.header(name, value.as_str());
                }
                if let Some(secret) = secret {
                    request = request.header("x-siren-signature", signature(secret, &body));
                }
                self.post(request.body(body)).await
            }
            Target::Slack { url, link_base } => {
                let message =
                    json!({ "text": slack_text(&payload.alert, payload.event, link_base) });
                self.post(self.http.post(url.clone()).json(&message)).await
            }
            Target::Email {
                host,
                port,
                from,
                to,
            } => {
                let message = email(&self.hello, from, to, id, payload)?;
                let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(*port)
                    .hello_name(ClientId::Domain(self.hello.clone()))
                    .timeout(Some(dest.timeout))
                    .build();
                transport
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| format!("smarthost {host}:{port}: {e}"))
            }
            Target::Command { argv } => run_command(argv, &body(dest, id, payload)).await,
        }
    }

    async fn post(&self, request: reqwest::RequestBuilder) -> Result<(), String> {
        let response = request.send().await.map_err(|e| {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = format!("{reason}: {s}");
                source = s.source();
            }
            reason
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(format!("HTTP {status}: {}", excerpt(text.as_bytes())))
    }
}

fn event_name(event: AlertEvent) -> &'static str {
    match event {
        AlertEvent::Create => "create",
        AlertEvent::Acknowledge => "acknowledge",
        AlertEvent::Resolve => "resolve",
        AlertEvent::Aggregate => "aggregate",
    }
}

/// The JSON a webhook is posted and a command reads on stdin.
fn body(dest: &Destination, id: u64, payload: &Payload) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "delivery_id": id.to_string(),
        "destination": dest.id,
        "event": payload.event,
        "alert": payload.alert,
    }))
    .unwrap_or_default()
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn status_word(alert: &Alert) -> String {
    serde_json::to_value(alert.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_ascii_uppercase))
        .unwrap_or_default()
}

fn urgency_word(alert: &Alert) -> String {
    serde_json::to_value(alert.urgency)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A Slack message: status, urgency, title and a link to the alert.
fn slack_text(alert: &Alert, event: AlertEvent, link_base: &str) -> String {
    // Slack's mrkdwn treats these three as control characters.
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let extra = match event {
        AlertEvent::Aggregate => format!(" (repeated {} times)", alert.dedup_count),
        _ => String::new(),
    };
    format!(
        "*[{}]* {}{} (urgency {}, integration {}) <{}/api/v1/alerts/{}|alert {}>",
        status_word(alert),
        escape(&alert.title),
        extra,
        urgency_word(alert),
        escape(&alert.integration),
        link_base,
        alert.id,
        alert.id
    )
}

/// The e-mail for a delivery: subject `[STATUS] title`, a plain-text summary and the
/// (sanitized) HTML description. Threaded per alert; its Message-ID names the delivery.
fn email(
    hello: &str,
    from: &str,
    to: &[String],
    id: u64,
    payload: &Payload,
) -> Result<Message, String> {
    let alert = &payload.alert;
    let mailbox = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|e| format!("address {a}: {e}"))
    };
    let subject: String = format!("[{}] {}", status_word(alert), alert.title)
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let mut builder = Message::builder()
        .from(mailbox(from)?)
        .subject(subject)
        .message_id(Some(format!("<siren-delivery-{id}@{hello}>")))
        .references(format!("<siren-alert-{}@{hello}>", alert.id))
        // A page that comes back (a bounce, a forward to an address Siren claims) is known by
        // this header and ignored (adapt::guard); Auto-Submitted keeps vacation responders
        // from answering it (RFC 3834).
        .header(SirenLoop(hello.to_string()))
        .header(AutoSubmitted);
    for t in to {
        builder = builder.to(mailbox(t)?);
    }
    let text = format!(
        "Alert {id_} ({integration}) is {status}.\nEvent: {event}\nUrgency: {urgency}\nTitle: {title}\nCreated: {created}\nUpdated: {updated}\nResolved: {resolved}\nRepeated: {dedup} times\n",
        id_ = alert.id,
        integration = alert.integration,
        status = status_word(alert),
        event = event_name(payload.event),
        urgency = urgency_word(alert),
        title = alert.title,
        created = alert.created_at,
        updated = alert.updated_at,
        resolved = alert.resolved_at.as_deref().unwrap_or("no"),
        dedup = alert.dedup_count,
    );
    builder
        .multipart(MultiPart::alternative_plain_html(
            text,
            alert.description.clone(),
        ))
        .map_err(|e| format!("cannot build the e-mail: {e}"))
}

/// `X-Siren-Loop: <smtp.hostname>`.
#[derive(Clone)]
struct SirenLoop(String);

impl Header for SirenLoop {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(crate::adapt::guard::LOOP_HEADER)
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(SirenLoop(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `Auto-Submitted: auto-generated`.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// Runs `argv` (no shell) with `input` on stdin; success is exit status 0.
async fn run_command(argv: &[String], input: &[u8]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that exits without reading its input is judged by its exit status.
        let _ = stdin.write_all(input).await;
        let _ = stdin.write_all(b"\n").await;
    }
    // Keeps the start of stderr for the error; reads (and drops) the rest so it cannot block.
    let mut stderr = child.stderr.take();
    let read_stderr = async {
        let mut kept = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if kept.len() < ERROR_EXCERPT {
                    kept.extend_from_slice(&buf[..n]);
                }
            }
        }
        kept
    };
    let (status, stderr) = tokio::join!(child.wait(), read_stderr);
    let status = status.map_err(|e| format!("{program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} exited with {status}: {}",
            excerpt(&stderr)
        ))
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_EXCERPT)]);
    text.trim().replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
