//! E-mail read as PagerTree's `email/v3` reads it (issue 14), over real SMTP: a title for a
//! message without a subject, threading on any Message-ID of `References`, spam ignored by a
//! verdict header, and attachments listed with inline `cid:` images shown in the alert.

use serde_json::Value;

use crate::helpers::{Daemon, deliver};

async fn daemon() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[smtp]
listen = ["127.0.0.1:0"]
[http]
listen = "127.0.0.1:0"
[store]
path = "{}"
[[integrations]]
id = "ops"
type = "email"
addresses = ["ops@alerts.localhost"]
[[integrations]]
id = "ses"
type = "email"
addresses = ["ses@alerts.localhost"]
spam_header = "X-SES-Spam-Verdict"
spam_pass = "^PASS$"
"#,
        dir.path().join("store").display()
    );
    let config = siren::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let mut d = Daemon::start_config(config).await;
    d.dir = Some(dir);
    d
}

async fn alert(d: &Daemon, id: &str) -> Value {
    let (status, a) = d.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(status, 200, "{a}");
    a
}

/// The newest log entry of `integration`.
async fn newest_log(d: &Daemon, integration: &str) -> Value {
    d.logs(integration).await.remove(0)
}

#[tokio::test]
async fn a_message_without_a_subject_gets_a_title() {
    let d = daemon().await;
    let msg = b"From: cron@example.com\r\nTo: ops@alerts.localhost\r\nMessage-ID: <nosub@x>\r\n\r\nbackup failed\r\n";
    deliver(d.smtp, &["ops@alerts.localhost"], msg).await;
    let log = newest_log(&d, "ops").await;
    assert_eq!(log["data"]["subject"], "", "the data stays as sent");
    let a = alert(&d, log["alert_id"].as_str().unwrap()).await;
    assert_eq!(a["title"], "Incoming Email - Untitled Alert");
}

#[tokio::test]
async fn a_reply_aggregates_on_any_message_id_in_its_references() {
    let d = daemon().await;
    let mail = |id: &str, references: &str| {
        format!(
            "From: a@example.com\r\nTo: ops@alerts.localhost\r\nSubject: disk\r\nMessage-ID: <{id}>\r\n{references}\r\nbody\r\n"
        )
        .into_bytes()
    };
    deliver(d.smtp, &["ops@alerts.localhost"], &mail("alert-1@mon", "")).await;
    let first = newest_log(&d, "ops").await["alert_id"].clone();
    // The thread began with a message Siren never saw: References[0] alone finds nothing.
    let reply = mail("reply-1@mua", "References: <human-0@mua> <alert-1@mon>\r\n");
    deliver(d.smtp, &["ops@alerts.localhost"], &reply).await;
    let log = newest_log(&d, "ops").await;
    assert_eq!(log["outcome"], "aggregated");
    assert_eq!(log["alert_id"], first);
    // As in PagerTree, an alert is known by the ids of the message that created it (and the
    // ids it was found by), not by every message folded into it: a reply naming only reply-1
    // starts an alert of its own.
    let again = mail(
        "reply-2@mua",
        "In-Reply-To: <reply-1@mua>\r\nReferences: <reply-1@mua>\r\n",
    );
    deliver(d.smtp, &["ops@alerts.localhost"], &again).await;
    let log = newest_log(&d, "ops").await;
    assert_eq!(log["outcome"], "created");
    assert_ne!(log["alert_id"], first);
    // And the thread's first unseen message id now finds the alert directly.
    let by_root = mail("reply-3@mua", "References: <human-0@mua>\r\n");
    deliver(d.smtp, &["ops@alerts.localhost"], &by_root).await;
    assert_eq!(newest_log(&d, "ops").await["alert_id"], first);
    assert_eq!(alert(&d, first.as_str().unwrap()).await["dedup_count"], 2);
}

#[tokio::test]
async fn spam_by_the_verdict_header_is_ignored_with_the_reason() {
    let d = daemon().await;
    let mail = |verdict: &str| {
        format!(
            "From: x@example.com\r\nTo: ses@alerts.localhost\r\nSubject: win\r\nX-SES-Spam-Verdict: {verdict}\r\n\r\nbody\r\n"
        )
        .into_bytes()
    };
    deliver(d.smtp, &["ses@alerts.localhost"], &mail("FAIL")).await;
    let log = newest_log(&d, "ses").await;
    assert_eq!(log["outcome"], "ignored");
    assert!(log["alert_id"].is_null());
    let error = log["error"].as_str().unwrap();
    assert!(
        error.contains("spam") && error.contains("X-SES-Spam-Verdict") && error.contains("FAIL"),
        "{error}"
    );
    deliver(d.smtp, &["ses@alerts.localhost"], &mail("PASS")).await;
    assert_eq!(newest_log(&d, "ses").await["outcome"], "created");
    // Without the header the message is not judged.
    let plain = b"From: x@example.com\r\nTo: ses@alerts.localhost\r\nSubject: s\r\n\r\nb\r\n";
    deliver(d.smtp, &["ses@alerts.localhost"], plain).await;
    assert_eq!(newest_log(&d, "ses").await["outcome"], "created");
}

#[tokio::test]
async fn attachments_are_listed_and_inline_images_show_in_the_alert() {
    let d = daemon().await;
    let msg = b"From: nas@example.com\r\nTo: ops@alerts.localhost\r\nSubject: Volume degraded\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
        --m\r\nContent-Type: multipart/related; boundary=\"r\"\r\n\r\n\
        --r\r\nContent-Type: text/html\r\n\r\n<p>Volume 1 is degraded</p><img src=\"cid:chart@nas\" alt=\"chart\">\r\n\
        --r\r\nContent-Type: image/png; name=\"chart.png\"\r\nContent-ID: <chart@nas>\r\n\
        Content-Disposition: inline; filename=\"chart.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        iVBORw0KGgoAAAANSUhEUg==\r\n--r--\r\n\
        --m\r\nContent-Type: text/csv; name=\"disks.csv\"\r\nContent-Disposition: attachment; filename=\"disks.csv\"\r\n\r\n\
        disk,state\r\nsda,failed\r\n--m--\r\n";
    deliver(d.smtp, &["ops@alerts.localhost"], msg).await;
    let log = newest_log(&d, "ops").await;
    let listed: Vec<(String, String, u64)> = log["data"]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["type"].as_str().unwrap().to_string(),
                a["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("chart.png".to_string(), "image/png".to_string(), 16),
            ("disks.csv".to_string(), "text/csv".to_string(), 22),
        ]
    );
    assert_eq!(log["data"]["attachments"][0]["content_id"], "chart@nas");
    assert!(
        log["size"].as_u64().unwrap() > 600,
        "the raw message, attachments included, is kept"
    );
    let a = alert(&d, log["alert_id"].as_str().unwrap()).await;
    let description = a["description"].as_str().unwrap();
    assert!(
        description.contains("src=\"data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==\""),
        "{description}"
    );
    assert!(description.contains("Volume 1 is degraded"));
}
