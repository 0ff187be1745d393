//! Webhook intake over HTTP: the documented example, PagerTree's aggregation examples replayed
//! as requests, Alertmanager firing/resolved, and every rejection (logged, no alert).

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
max_body_size = 65536
max_alerts_per_request = 3
[store]
path = "{}"
[[integrations]]
id = "custom"
type = "webhook"
token = "change-me"
title = "Custom Data - {{{{data.extra}}}}"
[[integrations]]
id = "i1"
type = "webhook"
token = "t1"
[[integrations]]
id = "i2"
type = "webhook"
token = "t2"
[[integrations]]
id = "am"
type = "alertmanager"
token = "am-token"
[[integrations]]
id = "ops"
type = "email"
addresses = ["ops@alerts.localhost"]
"#,
        dir.path().join("store").display()
    );
    let config = siren::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let mut d = Daemon::start_config(config).await;
    d.dir = Some(dir);
    d
}

/// POSTs `body` (raw bytes) to a webhook; answers status and JSON body.
async fn post_raw(
    d: &Daemon,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}{path}", d.http))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn post(d: &Daemon, integration: &str, token: &str, body: Value) -> Value {
    let (status, resp) = post_raw(
        d,
        &format!("/webhooks/{integration}"),
        Some(token),
        "application/json",
        body.to_string().into_bytes(),
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

/// The single result of a one-event webhook: (outcome, alert id).
fn result(resp: &Value) -> (String, String) {
    let r = &resp["results"][0];
    (
        r["outcome"].as_str().unwrap().to_string(),
        r["alert_id"].as_str().unwrap_or("").to_string(),
    )
}

async fn alert(d: &Daemon, id: &str) -> Value {
    let (status, a) = d.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!(status, 200);
    a
}

fn event(kind: &str, id: &str) -> Value {
    json!({ "event_type": kind, "Id": id, "Title": format!("thing {id}") })
}

#[tokio::test]
async fn documented_example_renders_the_custom_title() {
    let d = daemon().await;
    let resp = post(&d, "custom", "change-me", sample("webhook-create.json")).await;
    assert_eq!(resp["results"][0]["action"], "create");
    let (outcome, id) = result(&resp);
    assert_eq!(outcome, "created");
    let a = alert(&d, &id).await;
    assert_eq!(a["title"], "Custom Data - I want to use this data");
    assert_eq!(a["thirdparty_id"], "example-id-123");
    assert_eq!(a["description"], "Example Incident Description");
    // The token also works as ?token=, and the sample's resolve resolves it.
    let (status, resp) = post_raw(
        &d,
        "/webhooks/custom?token=change-me",
        None,
        "application/json",
        sample("webhook-resolve.json").to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(result(&resp), ("resolved".into(), id.clone()));
    assert_eq!(alert(&d, &id).await["resolved_by"], "integration");
    let logs = d.logs("custom").await;
    assert_eq!(
        logs[1]["data"]["extra"], "I want to use this data",
        "the whole body is the data"
    );
    assert_eq!(logs[1]["source"], "http");
    assert!(
        logs.iter().all(|l| l["error"].is_null()),
        "a resolve renders no template: {logs:?}"
    );
    // A create without the optional Description is not an error either.
    let (_, x) = result(
        &post(
            &d,
            "i1",
            "t1",
            json!({"event_type": "create", "Id": "nodesc", "Title": "t"}),
        )
        .await,
    );
    assert_eq!(alert(&d, &x).await["description"], "");
    assert!(d.logs("i1").await[0]["error"].is_null());
    let resp = reqwest::get(format!("http://{}/webhooks/custom", d.http))
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.json::<Value>().await.unwrap()["error"].is_string());
    d.stop().await;
}

#[tokio::test]
async fn pagertree_examples_over_http() {
    let d = daemon().await;
    // 1 (simple): create, resolve, create again -> a new alert.
    let (_, a1) = result(&post(&d, "i1", "t1", event("create", "simple")).await);
    assert_eq!(
        result(&post(&d, "i1", "t1", event("resolve", "simple")).await),
        ("resolved".into(), a1.clone())
    );
    let (o, a2) = result(&post(&d, "i1", "t1", event("create", "simple")).await);
    assert_eq!(o, "created");
    assert_ne!(a1, a2);
    // 2 (dedup): create, create -> aggregated; resolve; create -> new.
    let (_, b1) = result(&post(&d, "i1", "t1", event("create", "dedup")).await);
    assert_eq!(
        result(&post(&d, "i1", "t1", event("create", "dedup")).await),
        ("aggregated".into(), b1.clone())
    );
    assert_eq!(alert(&d, &b1).await["dedup_count"], 1);
    post(&d, "i1", "t1", event("resolve", "dedup")).await;
    let (o, b2) = result(&post(&d, "i1", "t1", event("create", "dedup")).await);
    assert_eq!(o, "created");
    assert_ne!(b1, b2);
    // 3 (two integrations, same id): separate alerts; I2 keeps deduplicating.
    let (_, c1) = result(&post(&d, "i1", "t1", event("create", "123")).await);
    let (_, c2) = result(&post(&d, "i2", "t2", event("create", "123")).await);
    assert_ne!(c1, c2);
    assert_eq!(
        result(&post(&d, "i1", "t1", event("resolve", "123")).await),
        ("resolved".into(), c1.clone())
    );
    for _ in 0..3 {
        assert_eq!(
            result(&post(&d, "i2", "t2", event("create", "123")).await),
            ("aggregated".into(), c2.clone())
        );
    }
    let x2 = alert(&d, &c2).await;
    assert_eq!(
        (x2["status"].as_str(), x2["dedup_count"].as_u64()),
        (Some("open"), Some(3))
    );
    assert_eq!(alert(&d, &c1).await["status"], "resolved");
    // 4 (user intervention): acknowledge through the API, dedup, user resolve, create -> new.
    let (_, e1) = result(&post(&d, "i1", "t1", event("create", "user")).await);
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/v1/alerts/{e1}/acknowledge", d.http))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        result(&post(&d, "i1", "t1", event("create", "user")).await),
        ("aggregated".into(), e1.clone())
    );
    let acked = alert(&d, &e1).await;
    assert_eq!(
        (acked["status"].as_str(), acked["dedup_count"].as_u64()),
        (Some("acknowledged"), Some(1))
    );
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/v1/alerts/{e1}/resolve", d.http))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(alert(&d, &e1).await["resolved_by"], "user");
    let (o, e2) = result(&post(&d, "i1", "t1", event("create", "user")).await);
    assert_eq!(o, "created");
    assert_ne!(e1, e2);
    // acknowledge through the webhook, and an unknown event type is ignored.
    let (_, f1) = result(&post(&d, "i1", "t1", event("create", "ackme")).await);
    assert_eq!(
        result(&post(&d, "i1", "t1", event("acknowledge", "ackme")).await),
        ("acknowledged".into(), f1)
    );
    assert_eq!(
        result(&post(&d, "i1", "t1", event("escalate", "ackme")).await).0,
        "ignored"
    );
    d.stop().await;
}

#[tokio::test]
async fn alertmanager_firing_then_resolved_and_mixed() {
    let d = daemon().await;
    let firing = post(&d, "am", "am-token", sample("alertmanager-firing.json")).await;
    let results = firing["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(
        results.iter().all(|r| r["outcome"] == "created"),
        "{firing}"
    );
    let ids: Vec<String> = results
        .iter()
        .map(|r| r["alert_id"].as_str().unwrap().to_string())
        .collect();
    let resolved = post(&d, "am", "am-token", sample("alertmanager-resolved.json")).await;
    let results = resolved["results"].as_array().unwrap();
    assert!(
        results.iter().all(|r| r["outcome"] == "resolved"),
        "{resolved}"
    );
    for id in &ids {
        let a = alert(&d, id).await;
        assert_eq!(
            (a["status"].as_str(), a["resolved_by"].as_str()),
            (Some("resolved"), Some("integration"))
        );
        assert!(!a["title"].as_str().unwrap().is_empty());
    }
    // Resolving again changes nothing; nor does resolving an unknown fingerprint.
    let again = post(&d, "am", "am-token", sample("alertmanager-resolved.json")).await;
    assert!(
        again["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "ignored"),
        "{again}"
    );
    // Mixed: one firing (new), one resolved (of an alert firing before).
    let mut first = sample("alertmanager-firing.json");
    first["alerts"].as_array_mut().unwrap().truncate(1);
    let (_, open_id) = result(&post(&d, "am", "am-token", first).await);
    let mut mixed = sample("alertmanager-firing.json");
    mixed["alerts"][0]["status"] = json!("resolved");
    mixed["alerts"][1]["fingerprint"] = json!("00000000feedbeef");
    let resp = post(&d, "am", "am-token", mixed).await;
    let outcomes: Vec<&str> = resp["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["resolved", "created"]);
    assert_eq!(alert(&d, &open_id).await["status"], "resolved");
    d.stop().await;
}

#[tokio::test]
async fn rejected_requests_get_their_status_are_logged_unless_unauthenticated_and_store_no_alert() {
    let d = daemon().await;
    let good = sample("webhook-create.json").to_string().into_bytes();
    // (path, token, content type, body, expected status)
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "/webhooks/custom",
            Some("change-me"),
            "application/json",
            b"{\"event_type\": \"create\",".to_vec(),
            400,
        ),
        (
            "/webhooks/custom",
            Some("change-me"),
            "application/json",
            b"[1, 2]".to_vec(),
            400,
        ),
        (
            "/webhooks/custom",
            Some("wrong"),
            "application/json",
            good.clone(),
            401,
        ),
        (
            "/webhooks/custom",
            None,
            "application/json",
            good.clone(),
            401,
        ),
        (
            "/webhooks/custom",
            Some("change-me"),
            "text/plain",
            good.clone(),
            415,
        ),
        (
            "/webhooks/custom",
            Some("change-me"),
            "application/json",
            vec![b' '; 100_000],
            413,
        ),
        (
            "/webhooks/am",
            Some("am-token"),
            "application/json",
            b"{\"status\": \"firing\"}".to_vec(),
            400,
        ),
    ];
    for (path, token, ct, body, want) in cases {
        let (status, resp) = post_raw(&d, path, token, ct, body).await;
        assert_eq!(status, want, "{path} {ct}: {resp}");
        assert!(
            resp["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: JSON error: {resp}"
        );
    }
    let (status, resp) = post_raw(
        &d,
        "/webhooks/nope",
        Some("x"),
        "application/json",
        good.clone(),
    )
    .await;
    assert_eq!((status, resp["error"].is_string()), (404, true));
    let (status, _) = post_raw(&d, "/webhooks/ops", None, "application/json", good).await;
    assert_eq!(status, 404, "an email integration takes no webhooks");

    let (_, alerts) = d.get("/api/v1/alerts").await;
    assert!(
        alerts["alerts"].as_array().unwrap().is_empty(),
        "no alert from a rejected request"
    );
    // Refusals that passed authentication are logged; the two 401s cost nothing durable.
    let logs = d.logs("custom").await;
    assert_eq!(logs.len(), 4);
    assert!(
        logs.iter()
            .all(|l| !l["error"].as_str().unwrap().starts_with("401")),
        "a request failing authentication is not logged: {logs:?}"
    );
    assert!(
        logs.iter()
            .all(|l| l["outcome"] == "rejected" && l["alert_id"].is_null())
    );
    assert!(
        logs.iter()
            .any(|l| l["error"].as_str().unwrap().contains("not valid JSON"))
    );
    assert_eq!(d.logs("am").await[0]["outcome"], "rejected");
    d.stop().await;
}

#[tokio::test]
async fn store_failure_answers_503_stores_nothing_and_the_retry_succeeds() {
    let d = daemon().await;
    let body = sample("webhook-create.json").to_string().into_bytes();
    d.writer.inject_failure(true);
    let (status, resp) = post_raw(
        &d,
        "/webhooks/custom",
        Some("change-me"),
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(status, 503, "{resp}");
    assert!(resp["error"].is_string());
    d.writer.inject_failure(false);
    let (_, alerts) = d.get("/api/v1/alerts").await;
    assert!(
        alerts["alerts"].as_array().unwrap().is_empty(),
        "nothing half-committed"
    );
    assert!(d.logs("custom").await.is_empty());
    let (status, resp) = post_raw(
        &d,
        "/webhooks/custom",
        Some("change-me"),
        "application/json",
        body,
    )
    .await;
    assert_eq!(status, 202, "{resp}");
    assert_eq!(result(&resp).0, "created");
    d.stop().await;
}

/// Issue 12: a notification's cost is bounded by the input. Past `http.max_alerts_per_request`
/// it is refused whole with 413 naming the key: no alert, and one `rejected` entry without the
/// body.
#[tokio::test]
async fn a_notification_over_max_alerts_per_request_gets_413_and_stores_no_alert() {
    let d = daemon().await;
    let mut body = sample("alertmanager-firing.json");
    let one = body["alerts"][0].clone();
    body["alerts"] = json!([one, one, one, one]);
    let (status, resp) = post_raw(
        &d,
        "/webhooks/am",
        Some("am-token"),
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 413, "{resp}");
    assert!(
        resp["error"]
            .as_str()
            .unwrap()
            .contains("http.max_alerts_per_request"),
        "{resp}"
    );
    let (_, alerts) = d.get("/api/v1/alerts").await;
    assert!(alerts["alerts"].as_array().unwrap().is_empty());
    let logs = d.logs("am").await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["outcome"], "rejected");
    assert_eq!((&logs[0]["size"], &logs[0]["raw"]), (&json!(0), &json!("")));
    assert!(logs[0]["data"].is_null());
    d.stop().await;
}

/// The entries one notification makes each show its raw body (stored once, see the store's
/// tests); a list carries only their summaries, the detail their data.
#[tokio::test]
async fn a_notifications_entries_share_its_body_and_lists_show_summaries() {
    let d = daemon().await;
    let body = sample("alertmanager-firing.json");
    let text = body.to_string();
    post(&d, "am", "am-token", body).await;
    let (status, list) = d.get("/api/v1/integrations/am/logs").await;
    assert_eq!(status, 200);
    let list = list["logs"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for entry in list {
        assert!(entry.get("data").is_none(), "a list has no data: {entry}");
        assert!(!entry["summary"].as_str().unwrap().is_empty(), "{entry}");
        assert_eq!(entry["size"], text.len());
    }
    let logs = d.logs("am").await;
    assert!(logs.iter().all(|l| l["raw"] == text.as_str()));
    assert_ne!(
        logs[0]["data"]["fingerprint"], logs[1]["data"]["fingerprint"],
        "each entry has its own alert's data"
    );
    d.stop().await;
}

/// A 202 is sent once the input is durable, while the writer may still be putting its group
/// into sled: a read right after the answer must see the alert (reads wait at the store's
/// gate). Sixteen clients, each posting and at once reading back, keep groups large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_readable_as_soon_as_its_202_arrives() {
    let d = std::sync::Arc::new(daemon().await);
    let clients = (0..16).map(|c| {
        let d = d.clone();
        tokio::spawn(async move {
            for n in 0..20 {
                let resp = post(&d, "i1", "t1", event("create", &format!("rw-{c}-{n}"))).await;
                let (outcome, id) = result(&resp);
                assert_eq!(outcome, "created", "{resp}");
                let (status, a) = d.get(&format!("/api/v1/alerts/{id}")).await;
                assert_eq!(status, 200, "alert {id} not readable after its 202: {a}");
                assert_eq!(a["title"], format!("thing rw-{c}-{n}"));
            }
        })
    });
    for client in clients.collect::<Vec<_>>() {
        client.await.unwrap();
    }
}
