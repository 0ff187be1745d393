//! The integration types PagerTree users bring (issue 14) over real HTTP: Grafana's webhook in
//! both formats, Alertmanager grouped by notification, and the generic webhook read as leniently
//! as PagerTree's `webhook/v3` (forms, query parameters, the `pagertree-token` header, urgency in
//! free text, `dedup_keys`).

use serde_json::{Value, json};

use crate::helpers::Daemon;

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
id = "grafana"
type = "grafana"
token = "g-token"
[[integrations]]
id = "am-group"
type = "alertmanager"
group_by = "group"
[[integrations]]
id = "hook"
type = "webhook"
token = "pt"
urgency = "low"
title = "{{{{data.Title}}}} [{{{{join data.Tags \",\"}}}}]"
"#,
        dir.path().join("store").display()
    );
    let config = siren::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let mut d = Daemon::start_config(config).await;
    d.dir = Some(dir);
    d
}

/// POSTs `body` with `content_type` and the extra headers; answers status and JSON body.
async fn post(
    d: &Daemon,
    path: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}{path}", d.http))
        .header("content-type", content_type)
        .body(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn post_json(d: &Daemon, path: &str, token: &str, body: &Value) -> Value {
    let auth = format!("Bearer {token}");
    let (status, resp) = post(
        d,
        path,
        &[("authorization", &auth)],
        "application/json",
        body.to_string(),
    )
    .await;
    assert_eq!(status, 202, "{resp}");
    resp
}

fn sample(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// (outcome, alert id) of each result.
fn results(resp: &Value) -> Vec<(String, String)> {
    resp["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_string(),
                r["alert_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn alert(d: &Daemon, id: &str) -> Value {
    let (status, a) = d.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(status, 200, "{a}");
    a
}

#[tokio::test]
async fn grafana_unified_alerts_fire_and_resolve_by_fingerprint() {
    let d = daemon().await;
    let resp = post_json(
        &d,
        "/webhooks/grafana",
        "g-token",
        &sample("grafana-firing.json"),
    )
    .await;
    let created = results(&resp);
    assert_eq!(created.len(), 2, "one alert per element of alerts");
    assert!(created.iter().all(|(o, _)| o == "created"));
    let eu = alert(&d, &created[0].1).await;
    assert_eq!(eu["thirdparty_id"], "a1f2b3c4d5e6f708");
    assert_eq!(eu["title"], "HighLatency: p99 latency above 2s on api-eu");
    assert_eq!(eu["urgency"], "critical");
    assert_eq!(alert(&d, &created[1].1).await["urgency"], "medium");
    let log = &d.logs("grafana").await[1];
    assert_eq!(
        log["data"]["dashboardURL"],
        "http://grafana.example.com:3000/d/api-latency?orgId=1"
    );
    assert_eq!(log["data"]["values"]["B"], 2.31);

    let resp = post_json(
        &d,
        "/webhooks/grafana",
        "g-token",
        &sample("grafana-resolved.json"),
    )
    .await;
    assert_eq!(
        results(&resp),
        [("resolved".to_string(), created[0].1.clone())]
    );
    assert_eq!(alert(&d, &created[0].1).await["status"], "resolved");
    assert_eq!(alert(&d, &created[1].1).await["status"], "open");
}

#[tokio::test]
async fn grafana_legacy_alerting_creates_ok_resolves_and_no_data_is_ignored() {
    let d = daemon().await;
    let legacy = sample("grafana-legacy.json");
    let resp = post_json(&d, "/webhooks/grafana", "g-token", &legacy).await;
    let (outcome, id) = results(&resp).remove(0);
    assert_eq!(outcome, "created");
    let a = alert(&d, &id).await;
    assert_eq!(
        (a["thirdparty_id"].as_str(), a["urgency"].as_str()),
        (Some("7"), Some("high"))
    );
    assert_eq!(a["title"], "[Alerting] Disk usage alert");
    assert_eq!(a["description"], "Disk usage on db-1 is above 90%");

    let mut no_data = legacy.clone();
    no_data["state"] = json!("no_data");
    let resp = post_json(&d, "/webhooks/grafana", "g-token", &no_data).await;
    assert_eq!(results(&resp)[0].0, "ignored");
    let mut ok = legacy;
    ok["state"] = json!("ok");
    let resp = post_json(&d, "/webhooks/grafana", "g-token", &ok).await;
    assert_eq!(results(&resp), [("resolved".to_string(), id)]);
    // Neither format: 400, logged as rejected.
    let (status, body) = post(
        &d,
        "/webhooks/grafana",
        &[("authorization", "Bearer g-token")],
        "application/json",
        "{\"hello\": 1}",
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a Grafana webhook payload")
    );
}

#[tokio::test]
async fn alertmanager_group_by_group_is_one_alert_per_notification() {
    let d = daemon().await;
    let firing = sample("alertmanager-firing.json");
    let resp = post_json(&d, "/webhooks/am-group", "", &firing).await;
    let created = results(&resp);
    assert_eq!(created.len(), 1, "two alerts, one notification");
    let a = alert(&d, &created[0].1).await;
    assert_eq!(a["thirdparty_id"], firing["groupKey"]);
    assert_eq!(a["title"], "HighCPUUsage");
    // The same notification again aggregates; its resolution resolves.
    let resp = post_json(&d, "/webhooks/am-group", "", &firing).await;
    assert_eq!(
        results(&resp)[0],
        ("aggregated".to_string(), created[0].1.clone())
    );
    let resp = post_json(
        &d,
        "/webhooks/am-group",
        "",
        &sample("alertmanager-resolved.json"),
    )
    .await;
    assert_eq!(
        results(&resp)[0],
        ("resolved".to_string(), created[0].1.clone())
    );
}

#[tokio::test]
async fn a_form_with_query_parameters_and_the_pagertree_token_header() {
    let d = daemon().await;
    let form =
        "event_type=create&Id=42&Title=Disk+full&Tags[]=db&Tags[]=prod&urgency=P1+-+Critical";
    // Without the token: 401, whichever way it is missing.
    let (status, _) = post(
        &d,
        "/webhooks/hook",
        &[("pagertree-token", "wrong")],
        "application/x-www-form-urlencoded",
        form,
    )
    .await;
    assert_eq!(status, 401);
    let (status, resp) = post(
        &d,
        "/webhooks/hook?Meta[team]=db&Title=ignored&token=not-data",
        &[("pagertree-token", "pt")],
        "application/x-www-form-urlencoded",
        form,
    )
    .await;
    assert_eq!(status, 202, "{resp}");
    let (outcome, id) = results(&resp).remove(0);
    assert_eq!(outcome, "created");
    let a = alert(&d, &id).await;
    assert_eq!(
        a["title"], "Disk full [db,prod]",
        "the body wins over the query"
    );
    assert_eq!(a["thirdparty_id"], "42");
    assert_eq!(a["urgency"], "critical", "found in \"P1 - Critical\"");
    let data = &d.logs("hook").await[0]["data"];
    assert_eq!(data["Meta"]["team"], "db", "query parameters are data");
    assert!(data.get("token").is_none(), "the token is not");
}

#[tokio::test]
async fn lenient_json_falls_back_instead_of_refusing() {
    let d = daemon().await;
    let post = |body: Value| {
        let d = &d;
        async move { post_json(d, "/webhooks/hook", "pt", &body).await }
    };
    // An unknown urgency is the integration's; a numeric event_type is `other` (202, logged).
    let resp =
        post(json!({"event_type": "create", "id": 7, "title": "t", "urgency": "urgent"})).await;
    let (_, id) = results(&resp).remove(0);
    let a = alert(&d, &id).await;
    assert_eq!(
        (a["urgency"].as_str(), a["thirdparty_id"].as_str()),
        (Some("low"), Some("7"))
    );
    let resp = post(json!({"event_type": 1, "Id": "x"})).await;
    assert_eq!(resp["results"][0]["action"], "other");
    assert_eq!(results(&resp)[0].0, "ignored");
    // A boolean Id is an id too.
    let resp = post(json!({"event_type": "create", "Id": true})).await;
    assert_eq!(
        alert(&d, &results(&resp)[0].1).await["thirdparty_id"],
        "true"
    );
}

#[tokio::test]
async fn dedup_keys_aggregate_into_the_alert_that_named_them() {
    let d = daemon().await;
    let first = json!({"event_type": "create", "Id": "db-1/disk", "Title": "Disk",
                       "dedup_keys": ["ticket-17", "db-1"]});
    let resp = post_json(&d, "/webhooks/hook", "pt", &first).await;
    let (_, id) = results(&resp).remove(0);
    // Another sender's id that the first alert named folds into it...
    let second = json!({"event_type": "create", "Id": "ticket-17", "Title": "Ticket"});
    let resp = post_json(&d, "/webhooks/hook", "pt", &second).await;
    assert_eq!(results(&resp)[0], ("aggregated".to_string(), id.clone()));
    // ...and so does an input whose own dedup_keys name the first one's id.
    let third = json!({"event_type": "create", "Id": "new", "dedup_keys": "db-1/disk"});
    let resp = post_json(&d, "/webhooks/hook", "pt", &third).await;
    assert_eq!(results(&resp)[0], ("aggregated".to_string(), id.clone()));
    assert_eq!(alert(&d, &id).await["dedup_count"], 2);
    // An unrelated id is a new alert.
    let other = json!({"event_type": "create", "Id": "db-2/disk"});
    let resp = post_json(&d, "/webhooks/hook", "pt", &other).await;
    assert_eq!(results(&resp)[0].0, "created");
}
