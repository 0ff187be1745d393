//! The `alertmanager` integration type: the Prometheus Alertmanager webhook payload, version 4.
//! By default (`group_by = "alert"`) one event per element of `alerts`: its `fingerprint` is the
//! third-party id, `firing` creates and `resolved` resolves. Each event's `data` is the alert as
//! sent plus the group's fields, with a default `title` and `description` for the default
//! templates; `labels.severity` sets the urgency. `group_by = "group"` is PagerTree's reading:
//! one event per notification, keyed by `groupKey`, from the common labels and annotations.

use serde_json::{Map, Value};

use super::{AdaptError, Event, random_id, severity};
use crate::domain::{Action, GroupBy};

/// The payload's group-level fields copied into each alert's `data`.
const GROUP_FIELDS: [&str; 6] = [
    "receiver",
    "groupKey",
    "externalURL",
    "commonLabels",
    "commonAnnotations",
    "groupLabels",
];

pub fn adapt(body: &Value, group_by: GroupBy) -> Result<Vec<Event>, AdaptError> {
    let not_alertmanager =
        |why: &str| AdaptError(format!("not an Alertmanager webhook payload: {why}"));
    let payload = body
        .as_object()
        .ok_or_else(|| not_alertmanager("the body must be a JSON object"))?;
    let alerts = match payload.get("alerts") {
        Some(Value::Array(alerts)) => alerts,
        Some(_) => return Err(not_alertmanager("\"alerts\" must be an array")),
        None => return Err(not_alertmanager("it has no \"alerts\" array")),
    };
    version(payload, 4, "Alertmanager")?;
    let group_status = payload.get("status").and_then(Value::as_str);
    if group_by == GroupBy::Group {
        return Ok(vec![adapt_group(payload)]);
    }
    each_alert(alerts, |alert| adapt_alert(alert, payload, group_status))
}

/// Refuses a payload whose `version` is given and is not `expected` (as text or a number).
pub(super) fn version(
    payload: &Map<String, Value>,
    expected: u64,
    sender: &str,
) -> Result<(), AdaptError> {
    match payload.get("version") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(v)) if v.trim() == expected.to_string() => Ok(()),
        Some(Value::Number(n)) if n.as_u64() == Some(expected) => Ok(()),
        Some(other) => Err(AdaptError(format!(
            "unsupported {sender} payload version {other}: only version \"{expected}\" is supported"
        ))),
    }
}

/// One event per element of `alerts`, each of which must be an object: the shape Alertmanager's
/// and Grafana's unified alerting payloads share.
pub(super) fn each_alert(
    alerts: &[Value],
    event: impl Fn(&Map<String, Value>) -> Event,
) -> Result<Vec<Event>, AdaptError> {
    alerts
        .iter()
        .enumerate()
        .map(|(i, alert)| {
            let alert = alert.as_object().ok_or_else(|| {
                AdaptError(format!("alerts[{i}] must be a JSON object, not {alert}"))
            })?;
            Ok(event(alert))
        })
        .collect()
}

fn adapt_alert(
    alert: &Map<String, Value>,
    payload: &Map<String, Value>,
    group_status: Option<&str>,
) -> Event {
    let empty = Map::new();
    let labels = alert
        .get("labels")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let annotations = alert
        .get("annotations")
        .and_then(Value::as_object)
        .unwrap_or(&empty);

    let status = alert
        .get("status")
        .and_then(Value::as_str)
        .or(group_status)
        .unwrap_or_default();
    let thirdparty_id = non_empty(alert.get("fingerprint"))
        .map(str::to_string)
        .or_else(|| Some(label_list(labels, ",")).filter(|id| !id.is_empty()))
        .unwrap_or_else(random_id);
    let (title, description) = title_and_description(labels, annotations, &thirdparty_id);

    let mut data = alert.clone();
    for field in GROUP_FIELDS {
        if let Some(value) = payload.get(field)
            && !data.contains_key(field)
        {
            data.insert(field.to_string(), value.clone());
        }
    }
    data.insert("title".to_string(), Value::String(title));
    data.insert("description".to_string(), Value::String(description));

    Event {
        urgency: non_empty(labels.get("severity")).and_then(severity),
        ..Event::new(action(status), thirdparty_id, Value::Object(data))
    }
}

/// `group_by = "group"`, as PagerTree reads a notification: `groupKey` is the id, `status` the
/// action, the title `commonLabels.alertname` (else "Prometheus <receiver> firing"), the
/// description `commonAnnotations.summary`, the urgency `commonLabels.severity`; `data` is the
/// whole notification plus that `title` and `description`.
fn adapt_group(payload: &Map<String, Value>) -> Event {
    let empty = Map::new();
    let object = |key: &str| {
        payload
            .get(key)
            .and_then(Value::as_object)
            .unwrap_or(&empty)
    };
    let (labels, annotations) = (object("commonLabels"), object("commonAnnotations"));
    let status = payload.get("status").and_then(Value::as_str).unwrap_or("");
    let thirdparty_id = non_empty(payload.get("groupKey"))
        .map(str::to_string)
        .unwrap_or_else(random_id);
    let title = non_empty(labels.get("alertname"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            let receiver = non_empty(payload.get("receiver"));
            ["Prometheus", receiver.unwrap_or(""), "firing"]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        });
    let description = non_empty(annotations.get("summary"))
        .unwrap_or("")
        .to_string();
    let mut data = payload.clone();
    data.insert("title".to_string(), Value::String(title));
    data.insert("description".to_string(), Value::String(description));
    Event {
        urgency: non_empty(labels.get("severity")).and_then(severity),
        ..Event::new(action(status), thirdparty_id, Value::Object(data))
    }
}

/// `firing` creates, `resolved` resolves (ignoring case); anything else changes nothing.
pub(super) fn action(status: &str) -> Action {
    match status.trim().to_ascii_lowercase().as_str() {
        "firing" => Action::Create,
        "resolved" => Action::Resolve,
        _ => Action::Other,
    }
}

/// The default title (`alertname: summary`, either alone, else `id`) and description
/// (`description`, else `summary`, else the label list) of a Prometheus-style alert.
pub(super) fn title_and_description(
    labels: &Map<String, Value>,
    annotations: &Map<String, Value>,
    id: &str,
) -> (String, String) {
    let alertname = non_empty(labels.get("alertname"));
    let summary = non_empty(annotations.get("summary"));
    let title = match (alertname, summary) {
        (Some(name), Some(summary)) => format!("{name}: {summary}"),
        (Some(text), None) | (None, Some(text)) => text.to_string(),
        (None, None) => id.to_string(),
    };
    let description = non_empty(annotations.get("description"))
        .or(summary)
        .map(str::to_string)
        .unwrap_or_else(|| label_list(labels, ", "));
    (title, description)
}

/// A string value that is not blank, trimmed.
pub(super) fn non_empty(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `key=value` for every label, sorted by key, joined by `separator`. Sorted here because
/// JSON maps keep the sender's order (serde_json's `preserve_order`, for `JSONstringify`),
/// and the id derived from it must not depend on that order.
pub(super) fn label_list(labels: &Map<String, Value>, separator: &str) -> String {
    let mut pairs: Vec<(&String, &Value)> = labels.iter().collect();
    pairs.sort_by_key(|(key, _)| *key);
    pairs
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(s) => format!("{key}={s}"),
            other => format!("{key}={other}"),
        })
        .collect::<Vec<_>>()
        .join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Urgency;
    use serde_json::json;

    /// The default reading, one event per alert.
    fn adapt(body: &Value) -> Result<Vec<Event>, AdaptError> {
        super::adapt(body, GroupBy::Alert)
    }

    fn alert(status: &str, fingerprint: &str, instance: &str) -> Value {
        json!({
            "status": status,
            "labels": {
                "alertname": "InstanceDown",
                "instance": instance,
                "job": "node",
                "severity": "critical"
            },
            "annotations": {
                "summary": format!("{instance} is down"),
                "description": format!("{instance} has been unreachable for more than 5 minutes.")
            },
            "startsAt": "2024-05-14T09:21:37.123Z",
            "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { "2024-05-14T09:40:07.123Z" },
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
            "fingerprint": fingerprint
        })
    }

    fn payload(alerts: Vec<Value>) -> Value {
        json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"InstanceDown\"}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "siren",
            "groupLabels": {"alertname": "InstanceDown"},
            "commonLabels": {"alertname": "InstanceDown", "job": "node", "severity": "critical"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": alerts
        })
    }

    /// One alert with only these labels and annotations.
    fn bare(labels: Value, annotations: Value) -> Event {
        let body =
            json!({"alerts": [{"status": "firing", "labels": labels, "annotations": annotations}]});
        adapt(&body).unwrap().remove(0)
    }

    #[test]
    fn two_firing_alerts() {
        let body = payload(vec![
            alert("firing", "0a1b2c3d4e5f6a7b", "db1:9100"),
            alert("firing", "1b2c3d4e5f6a7b8c", "db2:9100"),
        ]);
        let events = adapt(&body).unwrap();
        assert_eq!(events.len(), 2);
        let ids: Vec<_> = events.iter().map(|e| e.thirdparty_id.as_str()).collect();
        assert_eq!(ids, ["0a1b2c3d4e5f6a7b", "1b2c3d4e5f6a7b8c"]);
        for e in &events {
            assert_eq!(e.action, Action::Create);
            assert_eq!(e.urgency, Some(Urgency::Critical));
        }
        let e = &events[0];
        assert_eq!(e.data["title"], "InstanceDown: db1:9100 is down");
        assert_eq!(
            e.data["description"],
            "db1:9100 has been unreachable for more than 5 minutes."
        );
        assert_eq!(e.data["labels"]["instance"], "db1:9100");
        assert_eq!(e.data["annotations"]["summary"], "db1:9100 is down");
        assert_eq!(e.data["status"], "firing");
        assert_eq!(e.data["fingerprint"], "0a1b2c3d4e5f6a7b");
        assert_eq!(e.data["startsAt"], "2024-05-14T09:21:37.123Z");
        assert_eq!(e.data["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(e.data["receiver"], "siren");
        assert_eq!(e.data["groupKey"], "{}:{alertname=\"InstanceDown\"}");
        assert_eq!(e.data["externalURL"], "http://alertmanager:9093");
        assert_eq!(e.data["commonLabels"]["job"], "node");
        assert_eq!(e.data["groupLabels"]["alertname"], "InstanceDown");
        assert_eq!(e.data["commonAnnotations"], json!({}));
        assert!(e.data.get("alerts").is_none(), "not the other alerts");
    }

    #[test]
    fn mixed_firing_and_resolved() {
        let body = payload(vec![
            alert("firing", "0a1b2c3d4e5f6a7b", "db1:9100"),
            alert("resolved", "1b2c3d4e5f6a7b8c", "db2:9100"),
            alert("pending", "2c3d4e5f6a7b8c9d", "db3:9100"),
        ]);
        let got: Vec<_> = adapt(&body)
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.thirdparty_id))
            .collect();
        assert_eq!(
            got,
            [
                (Action::Create, "0a1b2c3d4e5f6a7b".to_string()),
                (Action::Resolve, "1b2c3d4e5f6a7b8c".to_string()),
                (Action::Other, "2c3d4e5f6a7b8c9d".to_string()),
            ]
        );
    }

    #[test]
    fn status_is_case_insensitive_and_falls_back_to_the_group() {
        let body = json!({"status": "resolved", "alerts": [
            {"status": "FIRING", "fingerprint": "a"},
            {"fingerprint": "b"}
        ]});
        let actions: Vec<_> = adapt(&body).unwrap().iter().map(|e| e.action).collect();
        assert_eq!(actions, [Action::Create, Action::Resolve]);
    }

    #[test]
    fn invalid_payloads_by_table() {
        let cases = [
            (json!([]), "not an Alertmanager webhook payload"),
            (json!("x"), "not an Alertmanager webhook payload"),
            (
                json!({"version": "4", "status": "firing"}),
                "not an Alertmanager webhook payload",
            ),
            (
                json!({"alerts": {"status": "firing"}}),
                "not an Alertmanager webhook payload",
            ),
            (json!({"version": "3", "alerts": []}), "version"),
            (json!({"version": 5, "alerts": []}), "version"),
            (json!({"alerts": ["firing"]}), "alerts[0]"),
        ];
        for (body, want) in cases {
            let err = adapt(&body).unwrap_err();
            assert!(err.0.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn version_four_or_absent_is_accepted() {
        for version in [json!("4"), json!(4), Value::Null] {
            let body = json!({"version": version, "alerts": []});
            assert_eq!(adapt(&body).unwrap(), vec![], "{version}");
        }
        assert_eq!(adapt(&json!({"alerts": []})).unwrap(), vec![]);
    }

    #[test]
    fn severity_by_table() {
        let cases = [
            ("critical", Some(Urgency::Critical)),
            ("page", Some(Urgency::Critical)),
            ("CRITICAL", Some(Urgency::Critical)),
            ("error", Some(Urgency::High)),
            ("high", Some(Urgency::High)),
            ("warning", Some(Urgency::Medium)),
            ("warn", Some(Urgency::Medium)),
            ("Warning", Some(Urgency::Medium)),
            ("info", Some(Urgency::Low)),
            ("none", Some(Urgency::Low)),
            ("low", Some(Urgency::Low)),
            // PagerTree's own value (issue 14; was None before).
            ("medium", Some(Urgency::Medium)),
            ("p1", None),
            ("", None),
        ];
        for (severity, want) in cases {
            let e = bare(json!({"alertname": "A", "severity": severity}), json!({}));
            assert_eq!(e.urgency, want, "{severity:?}");
        }
        assert_eq!(bare(json!({"alertname": "A"}), json!({})).urgency, None);
    }

    #[test]
    fn title_and_description_defaults_by_table() {
        // (labels, annotations, fingerprint, title, description)
        let cases = [
            (
                json!({"alertname": "DiskFull", "instance": "db1"}),
                json!({"summary": "Disk full on db1", "description": "/var is 99% full"}),
                Some("f0"),
                "DiskFull: Disk full on db1",
                "/var is 99% full",
            ),
            (
                json!({"alertname": "DiskFull", "instance": "db1"}),
                json!({"summary": "Disk full on db1"}),
                Some("f0"),
                "DiskFull: Disk full on db1",
                "Disk full on db1",
            ),
            (
                json!({"alertname": "DiskFull", "instance": "db1"}),
                json!({}),
                Some("f0"),
                "DiskFull",
                "alertname=DiskFull, instance=db1",
            ),
            (
                json!({"instance": "db1", "job": "node"}),
                json!({"summary": "Disk full on db1"}),
                Some("f0"),
                "Disk full on db1",
                "Disk full on db1",
            ),
            (
                json!({"instance": "db1", "job": "node"}),
                json!({"summary": "  ", "description": ""}),
                Some("f0"),
                "f0",
                "instance=db1, job=node",
            ),
            (json!({}), json!({}), Some("f0"), "f0", ""),
        ];
        for (labels, annotations, fingerprint, title, description) in cases {
            let body = json!({"alerts": [{
                "status": "firing",
                "labels": labels,
                "annotations": annotations,
                "fingerprint": fingerprint,
            }]});
            let e = adapt(&body).unwrap().remove(0);
            assert_eq!(e.data["title"], title, "{body}");
            assert_eq!(e.data["description"], description, "{body}");
        }
    }

    #[test]
    fn missing_fingerprint_derives_a_stable_id_from_labels() {
        let labels = json!({"job": "node", "alertname": "InstanceDown", "instance": "db1:9100"});
        let e = bare(labels.clone(), json!({}));
        assert_eq!(
            e.thirdparty_id,
            "alertname=InstanceDown,instance=db1:9100,job=node"
        );
        assert_eq!(bare(labels, json!({})).thirdparty_id, e.thirdparty_id);
        assert!(e.data.get("fingerprint").is_none());
        // With neither a fingerprint nor labels, the title falls back to the id.
        let e = bare(json!({}), json!({}));
        assert_eq!(e.thirdparty_id.len(), 36, "a random id");
        assert_eq!(e.data["title"], e.thirdparty_id.as_str());
    }

    #[test]
    fn samples() {
        let firing: Value =
            serde_json::from_str(include_str!("../../samples/alertmanager-firing.json")).unwrap();
        let resolved: Value =
            serde_json::from_str(include_str!("../../samples/alertmanager-resolved.json")).unwrap();
        let firing = adapt(&firing).unwrap();
        let resolved = adapt(&resolved).unwrap();
        assert_eq!(firing.len(), 2);
        assert_eq!(resolved.len(), 2);
        for (f, r) in firing.iter().zip(&resolved) {
            assert_eq!(f.action, Action::Create);
            assert_eq!(r.action, Action::Resolve);
            assert_eq!(f.thirdparty_id, r.thirdparty_id, "resolves what fired");
            assert_eq!(f.thirdparty_id.len(), 16);
            assert!(f.thirdparty_id.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(f.data["endsAt"], "0001-01-01T00:00:00Z");
            assert_ne!(r.data["endsAt"], "0001-01-01T00:00:00Z");
            assert_eq!(f.urgency, Some(Urgency::Medium));
        }
        assert_ne!(firing[0].thirdparty_id, firing[1].thirdparty_id);
        assert_eq!(
            firing[0].data["title"],
            "HighCPUUsage: High CPU usage on node01.example.com:9100"
        );
        assert_eq!(
            firing[1].data["labels"]["instance"],
            "node02.example.com:9100"
        );
        assert_eq!(firing[0].data["receiver"], "siren");
    }

    #[test]
    fn group_by_group_makes_one_event_per_notification() {
        let body = payload(vec![
            alert("firing", "0a1b2c3d4e5f6a7b", "db1:9100"),
            alert("firing", "1b2c3d4e5f6a7b8c", "db2:9100"),
        ]);
        let mut body_with_summary = body.clone();
        body_with_summary["commonAnnotations"] = json!({"summary": "Instances are down"});
        let events = super::adapt(&body_with_summary, GroupBy::Group).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.action, Action::Create);
        assert_eq!(e.thirdparty_id, "{}:{alertname=\"InstanceDown\"}");
        assert_eq!(e.data["title"], "InstanceDown");
        assert_eq!(e.data["description"], "Instances are down");
        assert_eq!(e.urgency, Some(Urgency::Critical));
        assert_eq!(e.data["alerts"].as_array().map(Vec::len), Some(2));
        assert_eq!(e.data["receiver"], "siren");

        let mut resolved = body.clone();
        resolved["status"] = json!("resolved");
        let e = super::adapt(&resolved, GroupBy::Group).unwrap().remove(0);
        assert_eq!(e.action, Action::Resolve);
        assert_eq!(e.thirdparty_id, "{}:{alertname=\"InstanceDown\"}");
        assert_eq!(e.data["description"], "", "no commonAnnotations.summary");
    }

    #[test]
    fn group_by_group_without_alertname_or_group_key() {
        let body = json!({"status": "firing", "receiver": "team-x", "alerts": [],
                          "commonLabels": {"severity": "warning"}});
        let e = super::adapt(&body, GroupBy::Group).unwrap().remove(0);
        assert_eq!(e.data["title"], "Prometheus team-x firing");
        assert_eq!(e.thirdparty_id.len(), 36, "a random id");
        assert_eq!(e.urgency, Some(Urgency::Medium));
        let e = super::adapt(&json!({"status": "x", "alerts": []}), GroupBy::Group)
            .unwrap()
            .remove(0);
        assert_eq!(
            (e.action, e.data["title"].as_str()),
            (Action::Other, Some("Prometheus firing"))
        );
        // The payload must still be an Alertmanager one.
        assert!(super::adapt(&json!({"status": "firing"}), GroupBy::Group).is_err());
    }

    #[test]
    fn group_samples() {
        for (file, action) in [
            (
                include_str!("../../samples/alertmanager-firing.json"),
                Action::Create,
            ),
            (
                include_str!("../../samples/alertmanager-resolved.json"),
                Action::Resolve,
            ),
        ] {
            let body: Value = serde_json::from_str(file).unwrap();
            let e = super::adapt(&body, GroupBy::Group).unwrap().remove(0);
            assert_eq!(e.action, action);
            assert_eq!(e.thirdparty_id, body["groupKey"].as_str().unwrap());
            assert_eq!(e.data["title"], "HighCPUUsage");
        }
    }
}
