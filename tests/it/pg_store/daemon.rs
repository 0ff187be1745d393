//! The whole daemon on PostgreSQL (`[store] backend = "postgres"`): silences through the API, a
//! silenced mail dropped, the console's pages read from the database, and `siren replay` (the
//! real binary) through the running daemon and then from the database directly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::schema;
use crate::helpers::{Daemon, deliver, message};

fn config_text(url: &str, http: &str) -> String {
    format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"siren.test\"\n\
         [http]\nlisten = \"{http}\"\n\
         [store]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n\
         [[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\n"
    )
}

async fn send(
    d: &Daemon,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = reqwest::Client::new().request(method, format!("http://{}{path}", d.http));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// `siren --config PATH replay ARGS` off the runtime: code, stdout, stderr.
async fn replay(config: PathBuf, args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_siren"))
            .arg("--config")
            .arg(&config)
            .arg("replay")
            .args(&args)
            .output()
            .expect("run siren replay");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_daemon_serves_silences_the_console_and_replay() {
    let Some(url) = schema("whole_daemon").await else {
        return;
    };
    let text = config_text(&url, "127.0.0.1:0");
    let config = siren::Config::parse(&text, Path::new("t.toml")).unwrap();
    let d = Daemon::start_config(config).await;
    let ends =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(3600));
    let (status, body) = send(
        &d,
        reqwest::Method::POST,
        "/api/v1/silences",
        Some(json!({"matchers": {"title": "^Maintenance"}, "ends_at": ends.to_string()})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, list) = d.get("/api/v1/silences").await;
    assert_eq!(list["silences"].as_array().map(Vec::len), Some(1), "{list}");

    let to = ["ops@alerts.localhost"];
    deliver(d.smtp, &to, &message("Disk full on db1", "p1@test")).await;
    deliver(d.smtp, &to, &message("Disk full on db1", "p1@test")).await;
    deliver(d.smtp, &to, &message("Maintenance on db2", "p2@test")).await;
    let logs = d.logs("ops").await;
    let outcomes: Vec<_> = logs.iter().map(|l| l["outcome"].clone()).collect();
    assert_eq!(
        outcomes,
        [json!("dropped"), json!("aggregated"), json!("created")]
    );
    let alert = logs[2]["alert_id"].as_str().unwrap().to_string();

    // The console's pages, read from the database.
    let (status, page) = send(&d, reqwest::Method::GET, "/", None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Disk full on db1"), "{page}");
    let (status, page) = send(&d, reqwest::Method::GET, "/?q=maintenance", None).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Maintenance on db2") && !page.contains("Disk full on db1"),
        "{page}"
    );
    let (status, page) = send(&d, reqwest::Method::GET, &format!("/alerts/{alert}"), None).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Created by this input") && page.contains("Aggregated into it"),
        "{page}"
    );
    let (_, page) = send(&d, reqwest::Method::GET, "/integrations", None).await;
    assert!(page.contains("3 inputs"), "{page}");
    let (_, page) = send(
        &d,
        reqwest::Method::GET,
        "/integrations/ops/logs?outcome=dropped",
        None,
    )
    .await;
    assert!(
        page.contains("Maintenance on db2") && !page.contains("Disk full on db1"),
        "{page}"
    );

    // Replay through the daemon, then from the database with the daemon stopped: the same.
    let dir = tempfile::tempdir().unwrap();
    let draft = dir.path().join("draft.toml");
    std::fs::write(&draft, config_text(&url, &d.http.to_string())).unwrap();
    let (code, through_api, err) = replay(draft.clone(), &["--since", "1h", "--all"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("through its API"), "{err}");
    assert!(through_api.contains("Maintenance on db2"), "{through_api}");
    d.stop().await;
    let (code, direct, err) = replay(draft, &["--since", "1h", "--all"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("reading the PostgreSQL store directly"),
        "{err}"
    );
    assert_eq!(direct, through_api);
}
