//! `siren replay` (the real binary) on a log filled over SMTP (lettre) and HTTP: through the
//! running daemon's API, and from the store itself once the daemon has stopped; the draft's
//! preset and normalize change outcomes and titles, nothing is written, alerts created before
//! the replayed span are found by what it replays, and 8-bit input comes back exactly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::json;

use crate::helpers::Daemon;
use crate::hook::{config, result};

const LIVE: &str = "[[integrations]]\nid = \"nagios\"\ntype = \"email\"\naddresses = [\"nagios@alerts.localhost\"]\n\
                    [[integrations]]\nid = \"checks\"\ntype = \"webhook\"\n";

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("samples")
            .join(name),
    )
    .unwrap()
}

async fn send(d: &Daemon, file: &str) {
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(d.smtp.port())
        .build();
    let envelope = Envelope::new(
        Some("nagios@monitor.example.com".parse().unwrap()),
        vec!["nagios@alerts.localhost".parse().unwrap()],
    )
    .unwrap();
    mailer.send_raw(&envelope, &sample(file)).await.unwrap();
}

/// A draft next to the store: the same store and HTTP address, and `integrations`.
fn draft(dir: &Path, store: &Path, http: SocketAddr, integrations: &str) -> PathBuf {
    let path = dir.join("draft.toml");
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"{http}\"\n[store]\npath = \"{}\"\n{integrations}",
        store.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `siren --config DRAFT replay ARGS` off the runtime; answers code, stdout, stderr.
async fn replay(draft: &Path, args: &[&str]) -> (i32, String, String) {
    let (draft, args): (PathBuf, Vec<String>) = (
        draft.to_owned(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_siren"))
            .arg("--config")
            .arg(&draft)
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

const DRAFT: &str = "[[integrations]]\nid = \"nagios\"\ntype = \"email\"\naddresses = [\"nagios@alerts.localhost\"]\n\
                     preset = \"nagios\"\n\
                     [[integrations]]\nid = \"checks\"\ntype = \"webhook\"\naggregate = \"1h\"\nnormalize = true\n";

#[tokio::test]
async fn replay_shows_what_a_draft_would_change_through_the_daemon_then_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let d = Daemon::start_config(config(&store, LIVE)).await;
    for file in [
        "nagios-problem.eml",
        "nagios-acknowledgement.eml",
        "nagios-recovery.eml",
        "iso-8859-1.eml",
    ] {
        send(&d, file).await;
    }
    for (id, title) in [
        ("c1", "Disk 91% full on db01"),
        ("c2", "Disk 93% full on db01"),
    ] {
        result(
            d.http,
            "checks",
            json!({"event_type": "create", "Id": id, "Title": title}),
        )
        .await;
    }
    let logs_before = (d.logs("nagios").await, d.logs("checks").await);
    let path = draft(dir.path(), &store, d.http, DRAFT);
    let (code, out, err) = replay(&path, &["--since", "1h"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("through its API at http://"), "{err}");
    let nagios = &logs_before.0;
    let (problem, ack, recovery) = (&nagios[3]["id"], &nagios[2]["id"], &nagios[1]["id"]);
    let p = problem.as_str().unwrap();
    let want = [
        format!("    today: created #{p} \"** PROBLEM Service Alert: web01/HTTP is CRITICAL **\""),
        format!("    draft: created #{p} \"web01/HTTP is CRITICAL\""),
        format!("    draft: acknowledged #{p} \"web01/HTTP is CRITICAL\""),
        format!("    draft: resolved #{p} \"web01/HTTP is CRITICAL\""),
    ];
    for line in &want {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    for id in [ack, recovery] {
        assert!(
            out.contains(&format!("#{} nagios ", id.as_str().unwrap())),
            "{out}"
        );
    }
    let c1 = logs_before.1[1]["id"].as_str().unwrap();
    assert!(
        out.contains(&format!(
            "    draft: aggregated #{c1} \"Disk 93% full on db01\""
        )),
        "{out}"
    );
    let latin = nagios[0]["id"].as_str().unwrap();
    assert!(
        !out.contains(&format!("#{latin} ")),
        "an unchanged entry is not listed:\n{out}"
    );
    assert_eq!(
        out.lines().last().unwrap(),
        "6 entries, 5 would change: 1 more acknowledged, 1 more aggregated, 3 fewer created, 1 more resolved, 2 with another title"
    );
    // Nothing was written.
    assert_eq!(
        (d.logs("nagios").await, d.logs("checks").await),
        logs_before
    );
    // 8-bit input comes back exactly (the API adds raw_base64).
    let (_, entry) = d.get(&format!("/api/v1/logs/{latin}")).await;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(
            entry["raw_base64"]
                .as_str()
                .expect("raw_base64 for 8-bit input"),
        )
        .unwrap();
    // (The client may add the CRLF that ends the last line.)
    assert!(
        raw.starts_with(&sample("iso-8859-1.eml")),
        "the exact bytes"
    );
    // Stopped, the daemon leaves the store to replay: the same answer, read directly.
    d.stop().await;
    let (code, again, err) = replay(&path, &["--since", "1h"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("reading the store at"), "{err}");
    assert_eq!(again, out);
}

#[tokio::test]
async fn an_alert_created_before_the_span_is_found_by_the_entries_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let d = Daemon::start_config(config(&store, DRAFT)).await;
    send(&d, "nagios-problem.eml").await;
    send(&d, "nagios-recovery.eml").await;
    let logs = d.logs("nagios").await;
    assert_eq!(logs[0]["outcome"], "resolved");
    let since = logs[0]["received_at"].as_str().unwrap().to_string();
    // Only the recovery is replayed; the draft is the live configuration with another title.
    let titled = DRAFT.replace(
        "preset = \"nagios\"\n",
        "preset = \"nagios\"\ntitle = \"{{data.subject}}\"\n",
    );
    let path = draft(dir.path(), &store, d.http, &titled);
    let (code, out, err) = replay(
        &path,
        &["--since", &since, "--integration", "nagios", "--all"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let p = logs[1]["id"].as_str().unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[1],
        format!("    today: resolved #{p} \"web01/HTTP is CRITICAL\""),
        "{out}"
    );
    assert_eq!(lines[2], lines[1].replace("today", "draft"), "{out}");
    assert_eq!(lines[3], "1 entries, 0 would change");
    // A mistyped integration is an error, not an empty replay.
    let (code, out, err) = replay(&path, &["--integration", "nagois"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("--integration nagois: the draft has no such integration (it has: "),
        "{err}"
    );
    d.stop().await;
}

#[tokio::test]
async fn what_a_silence_dropped_stays_dropped_under_the_draft() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let d = Daemon::start_config(config(&store, DRAFT)).await;
    let ends = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    );
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/v1/silences", d.http))
        .json(&json!({"matchers": {"integration": "nagios"}, "ends_at": ends.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    send(&d, "nagios-host-down.eml").await;
    assert_eq!(d.logs("nagios").await[0]["outcome"], "dropped");
    let path = draft(dir.path(), &store, d.http, DRAFT);
    let (code, out, err) = replay(
        &path,
        &["--since", "1h", "--integration", "nagios", "--all"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[1].starts_with("    today: dropped #"), "{out}");
    assert_eq!(lines[2], lines[1].replace("today", "draft"), "{out}");
    assert_eq!(lines[3], "1 entries, 0 would change");
    d.stop().await;
}
