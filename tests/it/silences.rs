//! Silences over HTTP and from `siren silence`: created, listed, checked and ended through the
//! API; a silenced e-mail is still logged but its alert is dropped and pages no one, while the
//! rest page as usual; silences survive a restart and stop by themselves.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{Daemon, deliver, message};
use crate::hook::{Receiver, alert, config};

async fn api(d: &Daemon, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("http://{}{path}", d.http));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn in_hours(h: u64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(h * 3600),
    )
    .to_string()
}

const OPS: &str =
    "[[integrations]]\nid = \"ops\"\ntype = \"email\"\naddresses = [\"ops@alerts.localhost\"]\n";

#[tokio::test]
async fn silences_are_created_listed_refused_and_ended_over_http() {
    let d = crate::hook::start(OPS).await;
    let post = |body: Value| api(&d, reqwest::Method::POST, "/api/v1/silences", Some(body));
    let (status, s) = post(json!({
        "matchers": {"integration": "ops", "title": "db01", "data.headers.X-Host": "^db01$"},
        "ends_at": in_hours(2), "comment": "kernel upgrade", "created_by": "alice"
    }))
    .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["state"], "active");
    assert_eq!(s["matchers"]["title"], "db01");
    assert_eq!(
        (&s["comment"], &s["created_by"]),
        (&json!("kernel upgrade"), &json!("alice"))
    );
    let id = s["id"].as_str().unwrap().to_string();
    // Refused, each with the reason.
    #[rustfmt::skip]
    let bad: &[(Value, &str)] = &[
        (json!({"matchers": {"host": "db01"}, "ends_at": in_hours(1)}),
            "matchers.host: unknown matcher; use integration, title or data.<field>"),
        (json!({"matchers": {"integration": "nope"}, "ends_at": in_hours(1)}),
            "matchers.integration: no integration \"nope\""),
        (json!({"ends_at": "2001-01-01T00:00:00Z"}), "ends_at is in the past"),
        (json!({"ends_at": in_hours(1), "starts_at": in_hours(2)}), "ends_at must be after starts_at"),
        (json!({"matchers": {"title": "(db01"}, "ends_at": in_hours(1)}),
            "matchers.title: invalid regular expression \"(db01\": unclosed group"),
    ];
    for (body, reason) in bad {
        let (status, err) = post(body.clone()).await;
        assert_eq!(
            (status, err["error"].as_str().unwrap()),
            (400, *reason),
            "{body}"
        );
    }
    let (status, err) = post(json!({"matchers": {}})).await;
    assert_eq!(status, 400);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("missing field `ends_at`"),
        "{err}"
    );
    // A pending one, starting in an hour.
    let (_, pending) = post(json!({"starts_at": in_hours(1), "ends_at": in_hours(3)})).await;
    assert_eq!(pending["state"], "pending");
    let (status, list) = d.get("/api/v1/silences").await;
    assert_eq!(status, 200);
    let states: Vec<&Value> = list["silences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["state"])
        .collect();
    assert_eq!(
        states,
        [&json!("pending"), &json!("active")],
        "newest first: {list}"
    );
    let (status, ended) = api(
        &d,
        reqwest::Method::DELETE,
        &format!("/api/v1/silences/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (status, &ended["state"]),
        (200, &json!("expired")),
        "{ended}"
    );
    let (status, _) = api(&d, reqwest::Method::DELETE, "/api/v1/silences/999999", None).await;
    assert_eq!(status, 404);
    d.stop().await;
}

fn problem(subject: &str, id: &str) -> Vec<u8> {
    message(subject, id)
}

#[tokio::test]
async fn a_silenced_mail_is_logged_and_dropped_and_pages_no_one() {
    let mut hook = Receiver::start().await;
    let rest = format!(
        "{OPS}destinations = [\"pager\"]\n{}",
        hook.destination("pager")
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let d = Daemon::start_config(config(&store, &rest)).await;
    let (status, s) = api(
        &d,
        reqwest::Method::POST,
        "/api/v1/silences",
        Some(json!({"matchers": {"integration": "ops", "title": "on db01$"}, "ends_at": in_hours(2)})),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    let to = &["ops@alerts.localhost"];
    deliver(d.smtp, to, &problem("Disk full on db01", "s1")).await;
    let silenced = d.logs("ops").await.remove(0);
    assert_eq!(silenced["outcome"], "dropped", "{silenced}");
    let by = format!("silenced by silence {}", s["id"].as_str().unwrap());
    assert_eq!(silenced["error"], by.as_str());
    assert_eq!(alert(&d, &silenced["alert_id"]).await["status"], "dropped");
    // Its repeat still aggregates into it, silently.
    deliver(d.smtp, to, &problem("Disk full on db01", "s1")).await;
    let again = d.logs("ops").await.remove(0);
    assert_eq!(
        (&again["outcome"], &again["alert_id"]),
        (&json!("aggregated"), &silenced["alert_id"])
    );
    // What the silence does not match pages as usual; it is the first page the receiver gets.
    deliver(d.smtp, to, &problem("Disk full on db02", "s2")).await;
    let paged = d.logs("ops").await.remove(0);
    assert_eq!(paged["outcome"], "created");
    let got = hook.next().await;
    assert_eq!(
        (&got["event"], &got["alert"]["title"]),
        (&json!("create"), &json!("Disk full on db02"))
    );
    // A restart keeps the silence in force.
    d.stop().await;
    let d = Daemon::start_config(config(&store, &rest)).await;
    let (_, list) = d.get("/api/v1/silences").await;
    assert_eq!(list["silences"][0]["id"], s["id"]);
    deliver(d.smtp, to, &problem("Load high on db01", "s3")).await;
    assert_eq!(d.logs("ops").await[0]["outcome"], "dropped");
    // Ended, it stops: the same mail pages.
    let path = format!("/api/v1/silences/{}", s["id"].as_str().unwrap());
    let (status, _) = api(&d, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 200);
    deliver(d.smtp, to, &problem("Swap full on db01", "s4")).await;
    assert_eq!(d.logs("ops").await[0]["outcome"], "created");
    let got = hook.next().await;
    assert_eq!(got["alert"]["title"], "Swap full on db01", "{got}");
    // A problem first seen under the silence and still repeating after it pages now: its
    // repeat makes a new alert rather than folding into the dropped one nobody was told of.
    deliver(d.smtp, to, &problem("Disk full on db01", "s1")).await;
    let after = d.logs("ops").await.remove(0);
    assert_eq!(after["outcome"], "created", "{after}");
    assert_ne!(after["alert_id"], silenced["alert_id"]);
    let got = hook.next().await;
    assert_eq!(got["alert"]["title"], "Disk full on db01", "{got}");
    // And its next repeat folds into that new alert.
    deliver(d.smtp, to, &problem("Disk full on db01", "s1")).await;
    let again = d.logs("ops").await.remove(0);
    assert_eq!(
        (&again["outcome"], &again["alert_id"]),
        (&json!("aggregated"), &after["alert_id"])
    );
    d.stop().await;
}

fn siren(http: std::net::SocketAddr, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_siren"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/siren.toml"),
        ])
        .args(["silence"])
        .args(args)
        .args(["--url", &format!("http://{http}")])
        .env("USER", "oncall-bob")
        .output()
        .expect("run siren silence");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `siren silence ARGS` against `d`, off the runtime (the daemon runs on it).
async fn silence(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let (http, args): (_, Vec<String>) = (d.http, args.iter().map(|a| a.to_string()).collect());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        siren(http, &args)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn siren_silence_adds_lists_and_ends() {
    let d = crate::hook::start(OPS).await;
    #[rustfmt::skip]
    let args = [
        "add", "--integration", "ops", "--title", "db01", "--match", "data.headers.X-Host=^db01$",
        "--duration", "2h", "--comment", "kernel upgrade",
    ];
    let (code, out, err) = silence(&d, &args).await;
    assert_eq!(code, 0, "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["created_by"], "oncall-bob");
    assert_eq!(s["matchers"]["data.headers.X-Host"], "^db01$");
    let id = s["id"].as_str().unwrap().to_string();
    let (code, table, err) = silence(&d, &["list"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID  STATE   STARTS"), "{table}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[..2], [id.as_str(), "active"], "{table}");
    assert!(
        lines[1].contains("data.headers.X-Host=^db01$ integration=ops title=db01  kernel upgrade"),
        "{table}"
    );
    let (code, out, err) = silence(&d, &["end", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["state"],
        "expired"
    );
    let (code, _, err) = silence(&d, &["add", "--comment", "x"]).await;
    assert_eq!(
        (code, err.as_str()),
        (1, "siren: give --duration or --until\n")
    );
    d.stop().await;
}
