//! The alert API over HTTP: list with filters and cursor pages, show, acknowledge, resolve,
//! integrations, and the API token.

use serde_json::Value;

use crate::helpers::{Daemon, deliver, message};

async fn post(d: &Daemon, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("http://{}{path}", d.http));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

fn titles(body: &Value) -> Vec<String> {
    body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn list_filter_page_show_acknowledge_resolve() {
    let d = Daemon::start().await;
    for i in 0..3 {
        deliver(
            d.smtp,
            &["ops@alerts.localhost"],
            &message(&format!("ops {i}"), &format!("o{i}@x")),
        )
        .await;
    }
    deliver(
        d.smtp,
        &["zabbix@alerts.localhost"],
        &message("zabbix 0", "z0@x"),
    )
    .await;

    let (status, all) = d.get("/api/v1/alerts").await;
    assert_eq!(status, 200);
    assert_eq!(
        titles(&all),
        ["zabbix 0", "ops 2", "ops 1", "ops 0"],
        "newest first"
    );
    assert!(all["next"].is_null());
    let a = &all["alerts"][1];
    for key in [
        "id",
        "integration",
        "thirdparty_id",
        "title",
        "description",
        "urgency",
        "status",
        "dedup_count",
        "created_at",
        "updated_at",
        "resolved_at",
        "resolved_by",
        "log_id",
    ] {
        assert!(a.get(key).is_some(), "alert JSON lacks {key}: {a}");
    }
    assert_eq!(a["thirdparty_id"], "o2@x");
    assert_eq!(a["urgency"], "medium");
    assert_eq!(
        a["description"], "body of ops 2\n",
        "rendered, then sanitized (html5ever normalizes CRLF)"
    );

    let (_, page1) = d.get("/api/v1/alerts?integration=ops&limit=2").await;
    assert_eq!(titles(&page1), ["ops 2", "ops 1"]);
    let next = page1["next"].as_str().unwrap();
    let (_, page2) = d
        .get(&format!(
            "/api/v1/alerts?integration=ops&limit=2&cursor={next}"
        ))
        .await;
    assert_eq!(titles(&page2), ["ops 0"]);

    let id = all["alerts"][2]["id"].as_str().unwrap().to_string(); // ops 1
    let (status, acked) = post(&d, &format!("/api/v1/alerts/{id}/acknowledge"), None).await;
    assert_eq!(
        (status, acked["status"].as_str()),
        (200, Some("acknowledged"))
    );
    let (_, open) = d.get("/api/v1/alerts?status=open").await;
    assert_eq!(titles(&open), ["zabbix 0", "ops 2", "ops 0"]);
    let (_, ack) = d
        .get("/api/v1/alerts?status=acknowledged&integration=ops")
        .await;
    assert_eq!(titles(&ack), ["ops 1"]);

    let (status, resolved) = post(&d, &format!("/api/v1/alerts/{id}/resolve"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            resolved["status"].as_str(),
            resolved["resolved_by"].as_str()
        ),
        (Some("resolved"), Some("user"))
    );
    assert!(resolved["resolved_at"].is_string());
    let (status, _) = post(&d, &format!("/api/v1/alerts/{id}/acknowledge"), None).await;
    assert_eq!(status, 409, "a resolved alert cannot be acknowledged");
    let (status, shown) = d.get(&format!("/api/v1/alerts/{id}")).await;
    assert_eq!((status, shown["status"].as_str()), (200, Some("resolved")));

    let (status, _) = d.get("/api/v1/alerts/424242").await;
    assert_eq!(status, 404);
    let (status, body) = d.get("/api/v1/alerts?status=bogus").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("status"));
    let (_, since) = d
        .get("/api/v1/alerts?since=2000-01-01T00:00:00Z&limit=1")
        .await;
    assert_eq!(titles(&since), ["zabbix 0"]);
    let (status, offset) = d
        .get("/api/v1/alerts?since=2000-01-01T01:00:00%2B01:00&limit=1")
        .await;
    assert_eq!(
        (status, titles(&offset)),
        (200, vec!["zabbix 0".to_string()]),
        "RFC 3339 with an offset"
    );
    let (_, none) = d.get("/api/v1/alerts?since=2999-01-01T00:00:00Z").await;
    assert!(none["alerts"].as_array().unwrap().is_empty());

    let (_, integrations) = d.get("/api/v1/integrations").await;
    let ids: Vec<&str> = integrations["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ops", "zabbix", "prometheus", "db"]);
    d.stop().await;
}

#[tokio::test]
async fn api_token_is_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\napi_token = \"s3cret\"\n[store]\npath = \"{}\"\n",
        dir.path().join("store").display()
    );
    let config = siren::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let d = Daemon::start_config(config).await;
    let (status, body) = d.get("/api/v1/alerts").await;
    assert_eq!(status, 401);
    assert!(body["error"].is_string());
    let (status, _) = post(&d, "/api/v1/alerts/1/resolve", Some("wrong")).await;
    assert_eq!(status, 401);
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/v1/alerts", d.http))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _) = d.get("/healthz").await;
    assert_eq!(status, 200, "health needs no token");
    d.stop().await;
}
