//! Routing end to end: one message to several integrations reaches each exactly once,
//! sub-address tags land in the data, and matching ignores case.

use crate::helpers::{Daemon, deliver, message};

#[tokio::test]
async fn message_to_two_integrations_reaches_each_once() {
    let d = Daemon::start().await;
    deliver(
        d.smtp,
        &[
            "ops@alerts.localhost",
            "web01@nagios.alerts.localhost",
            "ops+db@alerts.localhost",
            "Zabbix@ALERTS.localhost",
        ],
        &message("fan out", "fan@x"),
    )
    .await;
    let ops = d.logs("ops").await;
    let zabbix = d.logs("zabbix").await;
    assert_eq!(ops.len(), 1, "three addresses of ops make one entry");
    assert_eq!(zabbix.len(), 1);
    assert!(d.logs("db").await.is_empty());
    assert!(d.logs("prometheus").await.is_empty());
    // Each integration's envelope names only the recipients that route to it.
    assert_eq!(
        ops[0]["data"]["envelope"]["rcpt_to"],
        serde_json::json!([
            "ops@alerts.localhost",
            "web01@nagios.alerts.localhost",
            "ops+db@alerts.localhost"
        ])
    );
    assert_eq!(
        zabbix[0]["data"]["envelope"]["rcpt_to"],
        serde_json::json!(["Zabbix@ALERTS.localhost"])
    );
    assert_eq!(ops[0]["data"]["message_id"], "fan@x");
    assert_eq!(zabbix[0]["data"]["message_id"], "fan@x");
    d.stop().await;
}

#[tokio::test]
async fn sub_address_tag_is_in_the_data_and_exact_claims_win() {
    let d = Daemon::start().await;
    deliver(
        d.smtp,
        &["OPS+Database@alerts.localhost"],
        &message("tagged", "tag@x"),
    )
    .await;
    // `ops+special@` is claimed literally by `db`, so it does not fall back to `ops`.
    deliver(
        d.smtp,
        &["ops+special@alerts.localhost"],
        &message("literal", "lit@x"),
    )
    .await;
    deliver(
        d.smtp,
        &["anything+web01@nagios.alerts.localhost"],
        &message("wild", "wild@x"),
    )
    .await;
    let ops = d.logs("ops").await;
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0]["data"]["message_id"], "wild@x");
    assert_eq!(ops[0]["data"]["tag"], "web01");
    assert_eq!(ops[1]["data"]["message_id"], "tag@x");
    assert_eq!(ops[1]["data"]["tag"], "database");
    let db = d.logs("db").await;
    assert_eq!(db.len(), 1);
    assert_eq!(db[0]["data"]["message_id"], "lit@x");
    assert!(db[0]["data"]["tag"].is_null());
    d.stop().await;
}

#[tokio::test]
async fn log_listing_pages_newest_first() {
    let d = Daemon::start().await;
    for i in 0..5 {
        deliver(
            d.smtp,
            &["ops@alerts.localhost"],
            &message(&format!("page p{i}"), &format!("p{i}@x")),
        )
        .await;
    }
    let (_, first) = d.get("/api/v1/integrations/ops/logs?limit=2").await;
    let ids: Vec<&str> = first["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["summary"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["page p4", "page p3"]);
    let next = first["next"].as_str().expect("a next cursor").to_string();
    let (_, second) = d
        .get(&format!(
            "/api/v1/integrations/ops/logs?limit=2&cursor={next}"
        ))
        .await;
    let ids: Vec<&str> = second["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["summary"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["page p2", "page p1"]);
    let (_, last) = d
        .get(&format!(
            "/api/v1/integrations/ops/logs?limit=2&cursor={}",
            second["next"].as_str().unwrap()
        ))
        .await;
    assert_eq!(last["logs"].as_array().unwrap().len(), 1);
    assert!(last["next"].is_null());
    let (status, _) = d.get("/api/v1/integrations/ops/logs?limit=0").await;
    assert_eq!(status, 400);
    let (status, body) = d.get("/api/v1/integrations/ops/logs?limit=abc").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].is_string(),
        "a JSON error, not the framework's text: {body}"
    );
    d.stop().await;
}
