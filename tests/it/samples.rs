//! Every sample in `samples/` sent by a real SMTP client (lettre) over TCP, with the parsed
//! fields of its log entry checked against `tests/fixtures/samples.json`.

use std::path::PathBuf;

use lettre::address::Envelope;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;
use serde_json::Value;

use crate::helpers::Daemon;

#[derive(Deserialize)]
struct Expected {
    file: String,
    rcpt: String,
    mail_from: String,
    from: String,
    to: String,
    subject: String,
    message_id: Option<String>,
    message_contains: Vec<String>,
    text_contains: Vec<String>,
    has_html: bool,
    attachments: Vec<ExpectedAttachment>,
    #[serde(default)]
    message_not_contains: Vec<String>,
    /// The loop and auto-reply guard's reason, for samples it stops (outcome `ignored`).
    #[serde(default)]
    guard: Option<String>,
}

#[derive(Deserialize)]
struct ExpectedAttachment {
    name: String,
    #[serde(rename = "type")]
    content_type: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn expectations() -> Vec<Expected> {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/samples.json")).expect("fixture");
    serde_json::from_str(&text).expect("fixture is valid JSON")
}

/// Active content that must never survive sanitization, in any sample.
const NEVER: &[&str] = &[
    "<script",
    "javascript:",
    "onerror=",
    "onclick=",
    "onload=",
    "onmouseover=",
];

#[test]
fn fixture_covers_every_sample() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("samples"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    files.sort();
    let mut covered: Vec<String> = expectations().into_iter().map(|e| e.file).collect();
    covered.sort();
    assert_eq!(files, covered);
    assert!(files.len() >= 12);
}

#[tokio::test]
async fn every_sample_is_parsed_and_sanitized() {
    let d = Daemon::start().await;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(d.smtp.port())
        .build();
    for e in expectations() {
        let raw = std::fs::read(root().join("samples").join(&e.file)).expect("sample");
        let envelope = Envelope::new(
            Some(e.mail_from.parse::<Address>().unwrap()),
            vec![e.rcpt.parse::<Address>().unwrap()],
        )
        .unwrap();
        let resp = mailer.send_raw(&envelope, &raw).await;
        let resp = resp.unwrap_or_else(|err| panic!("{}: not accepted: {err}", e.file));
        assert_eq!(resp.code().to_string(), "250", "{}", e.file);

        let integration = d_integration(&e.rcpt);
        let logs = d.logs(integration).await;
        let log = &logs[0];
        let data = &log["data"];
        let f = &e.file;
        // The client may add the CRLF that ends the last line.
        let size = log["size"].as_u64().unwrap() as usize;
        assert!(
            (raw.len()..=raw.len() + 2).contains(&size),
            "{f}: size {size}"
        );
        assert_eq!(data["from"], e.from, "{f}: from");
        assert_eq!(data["to"], e.to, "{f}: to");
        assert_eq!(data["subject"], e.subject, "{f}: subject");
        assert_eq!(
            data["message_id"],
            json_opt(&e.message_id),
            "{f}: message_id"
        );
        let message = data["message"].as_str().unwrap();
        let text = data["text"].as_str().unwrap();
        for s in &e.message_contains {
            assert!(
                message.contains(s.as_str()),
                "{f}: message lacks {s:?}:\n{message}"
            );
        }
        for s in &e.text_contains {
            assert!(text.contains(s.as_str()), "{f}: text lacks {s:?}:\n{text}");
        }
        for s in NEVER
            .iter()
            .copied()
            .chain(e.message_not_contains.iter().map(String::as_str))
        {
            assert!(
                !message.to_ascii_lowercase().contains(s),
                "{f}: {s:?} survived:\n{message}"
            );
        }
        assert_eq!(
            message.contains('<') && message != text,
            e.has_html,
            "{f}: html message?"
        );
        let attachments: Vec<(String, String)> = data["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_string(),
                    a["type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = e
            .attachments
            .iter()
            .map(|a| (a.name.clone(), a.content_type.clone()))
            .collect();
        assert_eq!(attachments, want, "{f}: attachments");
        assert_eq!(data["envelope"]["mail_from"], e.mail_from, "{f}: envelope");
        assert!(data["headers"]["Subject"].is_string(), "{f}: headers");
        if let Some(reason) = &e.guard {
            assert_eq!(log["outcome"], "ignored", "{f}: guard");
            assert_eq!(log["error"], reason.as_str(), "{f}: guard");
        }
    }
    d.stop().await;
}

fn d_integration(rcpt: &str) -> &'static str {
    match rcpt.split('@').next().unwrap() {
        "zabbix" => "zabbix",
        "prometheus" => "prometheus",
        _ => "ops",
    }
}

fn json_opt(v: &Option<String>) -> Value {
    v.clone().map(Value::String).unwrap_or(Value::Null)
}

#[tokio::test]
async fn siren_alerts_list_shows_the_alerts_the_samples_created() {
    let d = Daemon::start().await;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(d.smtp.port())
        .build();
    let expected = expectations();
    for e in &expected {
        let raw = std::fs::read(root().join("samples").join(&e.file)).unwrap();
        let envelope = Envelope::new(
            Some(e.mail_from.parse::<Address>().unwrap()),
            vec![e.rcpt.parse::<Address>().unwrap()],
        )
        .unwrap();
        mailer.send_raw(&envelope, &raw).await.unwrap();
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_siren"))
        .args(["alerts", "list", "--limit", "100", "--url"])
        .arg(format!("http://{}", d.http))
        .arg("--config")
        .arg(root().join("config/siren.toml"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("ID "), "{table}");
    // Every sample made an alert titled with its subject, except the one that folded in (below)
    // and those the guard stopped.
    let made_alerts = expected
        .iter()
        .filter(|e| e.file != "zabbix-resolved.eml" && e.guard.is_none());
    for e in made_alerts {
        // Titles are single-line text with runs of whitespace collapsed.
        let subject = e.subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let title: String = subject.chars().take(80).collect();
        assert!(
            table.contains(title.trim_end()),
            "{}: {title:?} missing from\n{table}",
            e.file
        );
    }
    // Zabbix's resolved mail replies to its problem mail: one alert, aggregated.
    let (_, body) = d.get("/api/v1/alerts?integration=zabbix").await;
    let zabbix = body["alerts"].as_array().unwrap();
    assert_eq!(zabbix.len(), 1, "{body}");
    assert_eq!(zabbix[0]["dedup_count"], 1);
    let logs = d.logs("zabbix").await;
    assert_eq!(logs[0]["outcome"], "aggregated");
    assert_eq!(logs[1]["outcome"], "created");
    assert_eq!(logs[0]["alert_id"], zabbix[0]["id"]);
    d.stop().await;
}
