//! The well-known XSS filter-evasion vectors (`tests/fixtures/xss-vectors.txt`, after the OWASP
//! cheat sheet), sent as HTML e-mails and as webhook descriptions: no script, event handler,
//! `javascript:`/`vbscript:`/`data:` URL, or style survives in any stored message or description.

use serde_json::json;

use crate::helpers::{Daemon, deliver};

fn vectors() -> Vec<String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xss-vectors.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Active content inside a tag, or a script element anywhere.
fn active_content(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    if lower.contains("<script") {
        return Some("<script".into());
    }
    let tag = regex::Regex::new(r"<[^>]*>").unwrap();
    let bad =
        regex::Regex::new(r#"javascript:|vbscript:|data:|expression|style\s*=|\son[a-z]+\s*="#)
            .unwrap();
    tag.find_iter(&lower)
        .find(|t| bad.is_match(t.as_str()))
        .map(|t| t.as_str().to_string())
}

#[test]
fn the_checker_catches_what_it_must() {
    assert!(active_content(r#"<img src=x onerror="alert(1)">"#).is_some());
    assert!(active_content(r#"<a href="javascript:alert(1)">"#).is_some());
    assert!(active_content(r#"<div style="x">"#).is_some());
    assert!(active_content("<p>javascript: is only text here</p>").is_none());
}

#[tokio::test]
async fn no_vector_survives_in_a_stored_message_or_description() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
         [logs]\nmax_entries = 100000\n\
         [[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\n\
         [[integrations]]\nid = \"hook\"\ntype = \"webhook\"\n",
        dir.path().join("store").display()
    );
    let d =
        Daemon::start_config(siren::Config::parse(&text, std::path::Path::new("t.toml")).unwrap())
            .await;
    let vectors = vectors();
    assert!(vectors.len() >= 50);
    let client = reqwest::Client::new();
    for (i, v) in vectors.iter().enumerate() {
        let mail = format!(
            "From: x@example.com\r\nTo: ops@alerts.localhost\r\nSubject: xss {i}\r\nMessage-ID: <xss{i}@x>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>before</p>{v}<p>after</p>\r\n"
        );
        deliver(d.smtp, &["ops@alerts.localhost"], mail.as_bytes()).await;
        let body = json!({ "event_type": "create", "Id": format!("xss{i}"), "Title": format!("xss {i}"), "Description": v });
        let resp = client
            .post(format!("http://{}/webhooks/hook", d.http))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    // A plain-text mail carrying markup: `message` is HTML, so the text is escaped, not parsed.
    let plain = "From: x@example.com\r\nTo: ops@alerts.localhost\r\nSubject: plain\r\nMessage-ID: <plain@x>\r\n\r\n\
                 hello <script>alert(1)</script> & <img src=x onerror=alert(1)> (<5% free, contact <root@db01>)\r\n";
    deliver(d.smtp, &["ops@alerts.localhost"], plain.as_bytes()).await;
    let logs = d.logs("ops").await;
    assert_eq!(
        logs[0]["data"]["text"].as_str().unwrap(),
        "hello <script>alert(1)</script> & <img src=x onerror=alert(1)> (<5% free, contact <root@db01>)\r\n"
    );
    let (_, plain_alerts) = d.get("/api/v1/alerts?limit=1").await;
    let description = plain_alerts["alerts"][0]["description"].as_str().unwrap();
    assert!(
        description.contains("(&lt;5% free, contact &lt;root@db01&gt;)"),
        "no text lost: {description}"
    );
    for log in d.logs("ops").await {
        let message = log["data"]["message"].as_str().unwrap();
        assert!(
            active_content(message).is_none(),
            "survived in message: {:?} from {message}",
            active_content(message)
        );
    }
    let (_, alerts) = d.get("/api/v1/alerts?limit=1000").await;
    let alerts = alerts["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2 * vectors.len() + 1);
    for a in alerts {
        let description = a["description"].as_str().unwrap();
        assert!(
            active_content(description).is_none(),
            "survived in {}: {description}",
            a["title"]
        );
    }
    d.stop().await;
}
