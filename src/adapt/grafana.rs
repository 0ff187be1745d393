//! The `grafana` integration type: Grafana's webhook contact point, in both of its formats.
//!
//! Unified alerting (Grafana 8+, `"version": "1"`, an `alerts` array): one event per alert, its
//! `fingerprint` the third-party id, `status` `firing` creating and `resolved` resolving. `data`
//! is the alert as sent (`labels`, `annotations`, `values`, `dashboardURL`, `panelURL`,
//! `silenceURL`, ...) plus the notification's group fields, a `title` and a `description`.
//!
//! Legacy alerting (a `state`, no `alerts`): one event; `alerting` creates, `ok` resolves,
//! `no_data` and `paused` change nothing (as PagerTree reads them); `ruleId`, else `ruleName`,
//! is the third-party id. `data` is the body as sent, with `title` (Grafana's, else `ruleName`)
//! and `description` (`message`) filled in when absent. Urgency comes from a `severity` label
//! (unified) or tag (legacy).

use serde_json::{Map, Value};

use super::alertmanager::{
    action, each_alert, label_list, non_empty, title_and_description, version,
};
use super::{AdaptError, Event, random_id, severity};
use crate::domain::Action;

/// The notification's fields copied into each alert's `data` (unified alerting).
const GROUP_FIELDS: [&str; 8] = [
    "receiver",
    "groupKey",
    "externalURL",
    "commonLabels",
    "commonAnnotations",
    "groupLabels",
    "orgId",
    "truncatedAlerts",
];

pub fn adapt(body: &Value) -> Result<Vec<Event>, AdaptError> {
    let not_grafana = |why: &str| AdaptError(format!("not a Grafana webhook payload: {why}"));
    let payload = body
        .as_object()
        .ok_or_else(|| not_grafana("the body must be a JSON object"))?;
    match payload.get("alerts") {
        Some(Value::Array(alerts)) => unified(payload, alerts),
        Some(_) => Err(not_grafana("\"alerts\" must be an array")),
        None if payload.contains_key("state") => Ok(vec![legacy(payload)]),
        None => Err(not_grafana(
            "it has neither an \"alerts\" array (unified alerting) nor a \"state\" (legacy alerting)",
        )),
    }
}

fn unified(payload: &Map<String, Value>, alerts: &[Value]) -> Result<Vec<Event>, AdaptError> {
    version(payload, 1, "Grafana")?;
    let group_status = payload.get("status").and_then(Value::as_str);
    each_alert(alerts, |alert| unified_alert(alert, payload, group_status))
}

fn unified_alert(
    alert: &Map<String, Value>,
    payload: &Map<String, Value>,
    group_status: Option<&str>,
) -> Event {
    let empty = Map::new();
    let object = |key: &str| alert.get(key).and_then(Value::as_object).unwrap_or(&empty);
    let (labels, annotations) = (object("labels"), object("annotations"));
    let status = alert
        .get("status")
        .and_then(Value::as_str)
        .or(group_status)
        .unwrap_or_default();
    let thirdparty_id = non_empty(alert.get("fingerprint"))
        .map(str::to_string)
        .or_else(|| Some(label_list(labels, ",")).filter(|id| !id.is_empty()))
        .unwrap_or_else(random_id);
    let (title, mut description) = title_and_description(labels, annotations, &thirdparty_id);
    if non_empty(annotations.get("description"))
        .or(non_empty(annotations.get("summary")))
        .is_none()
        && let Some(values) = non_empty(alert.get("valueString"))
    {
        // Grafana's own rendering of the query values says more than the label list.
        description = values.to_string();
    }
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

fn legacy(payload: &Map<String, Value>) -> Event {
    let state = payload.get("state").and_then(Value::as_str).unwrap_or("");
    let action = match state.trim().to_ascii_lowercase().as_str() {
        "alerting" => Action::Create,
        "ok" => Action::Resolve,
        // `no_data`, `paused`, `pending` and anything else: logged, no alert change.
        _ => Action::Other,
    };
    let rule_name = non_empty(payload.get("ruleName"));
    let thirdparty_id = match payload.get("ruleId") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
    .or_else(|| rule_name.map(str::to_string))
    .unwrap_or_else(random_id);
    let mut data = payload.clone();
    if non_empty(data.get("title")).is_none() {
        let title = rule_name.unwrap_or(&thirdparty_id).to_string();
        data.insert("title".to_string(), Value::String(title));
    }
    if non_empty(data.get("description")).is_none() {
        let message = non_empty(payload.get("message")).unwrap_or("").to_string();
        data.insert("description".to_string(), Value::String(message));
    }
    let urgency = payload
        .get("tags")
        .and_then(Value::as_object)
        .and_then(|tags| non_empty(tags.get("severity")))
        .and_then(severity);
    Event {
        urgency,
        ..Event::new(action, thirdparty_id, Value::Object(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Urgency;
    use serde_json::json;

    fn sample(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn unified_sample_one_event_per_alert() {
        let events = adapt(&sample(include_str!("../../samples/grafana-firing.json"))).unwrap();
        assert_eq!(events.len(), 2);
        let e = &events[0];
        assert_eq!(e.action, Action::Create);
        assert_eq!(e.thirdparty_id, "a1f2b3c4d5e6f708");
        assert_eq!(e.urgency, Some(Urgency::Critical));
        assert_eq!(
            e.data["title"],
            "HighLatency: p99 latency above 2s on api-eu"
        );
        assert_eq!(
            e.data["description"],
            "The p99 latency of api-eu has been above 2s for 5 minutes."
        );
        for key in ["dashboardURL", "panelURL", "silenceURL", "generatorURL"] {
            assert!(
                e.data[key]
                    .as_str()
                    .is_some_and(|u| u.starts_with("http://")),
                "{key}"
            );
        }
        assert_eq!(e.data["values"]["B"], 2.31);
        assert_eq!(e.data["labels"]["service"], "api-eu");
        assert_eq!(e.data["receiver"], "siren");
        assert_eq!(e.data["orgId"], 1);
        assert!(e.data.get("alerts").is_none(), "not the other alerts");
        assert_ne!(events[1].thirdparty_id, e.thirdparty_id);
        assert_eq!(events[1].urgency, Some(Urgency::Medium));
    }

    #[test]
    fn unified_resolved_sample_resolves_what_fired() {
        let firing = adapt(&sample(include_str!("../../samples/grafana-firing.json"))).unwrap();
        let resolved = adapt(&sample(include_str!("../../samples/grafana-resolved.json"))).unwrap();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].action, Action::Resolve);
        assert_eq!(resolved[0].thirdparty_id, firing[0].thirdparty_id);
    }

    #[test]
    fn unified_status_falls_back_to_the_notification_and_values_describe() {
        let body = json!({"version": "1", "status": "resolved", "alerts": [
            {"fingerprint": "f1", "labels": {"alertname": "A"}, "valueString": "[ var='B' value=3 ]"},
            {"status": "Firing", "fingerprint": "f2"}
        ]});
        let events = adapt(&body).unwrap();
        assert_eq!(events[0].action, Action::Resolve);
        assert_eq!(events[0].data["description"], "[ var='B' value=3 ]");
        assert_eq!(events[1].action, Action::Create);
        assert_eq!(
            events[1].data["title"], "f2",
            "no alertname or summary: the id"
        );
    }

    #[test]
    fn legacy_sample_and_states_by_table() {
        let body = sample(include_str!("../../samples/grafana-legacy.json"));
        let e = adapt(&body).unwrap().remove(0);
        assert_eq!(e.action, Action::Create);
        assert_eq!(e.thirdparty_id, "7");
        assert_eq!(e.data["title"], "[Alerting] Disk usage alert");
        assert_eq!(e.data["description"], "Disk usage on db-1 is above 90%");
        assert_eq!(e.data["ruleUrl"], body["ruleUrl"]);
        assert_eq!(e.urgency, Some(Urgency::High));
        let cases = [
            ("alerting", Action::Create),
            ("ok", Action::Resolve),
            ("OK", Action::Resolve),
            ("no_data", Action::Other),
            ("paused", Action::Other),
            ("pending", Action::Other),
        ];
        for (state, want) in cases {
            let e = adapt(&json!({"state": state, "ruleId": 3}))
                .unwrap()
                .remove(0);
            assert_eq!((e.action, e.thirdparty_id.as_str()), (want, "3"), "{state}");
        }
    }

    #[test]
    fn legacy_id_is_rule_id_else_rule_name_else_random() {
        let e = adapt(&json!({"state": "alerting", "ruleId": "9", "ruleName": "R"})).unwrap();
        assert_eq!(e[0].thirdparty_id, "9");
        let e = adapt(&json!({"state": "alerting", "ruleName": "Disk", "message": "m"})).unwrap();
        assert_eq!(e[0].thirdparty_id, "Disk");
        assert_eq!(
            e[0].data["title"], "Disk",
            "ruleName when there is no title"
        );
        assert_eq!(e[0].data["description"], "m");
        let e = adapt(&json!({"state": "alerting"})).unwrap();
        assert_eq!(e[0].thirdparty_id.len(), 36);
    }

    #[test]
    fn invalid_payloads_by_table() {
        let cases = [
            (json!([]), "not a Grafana webhook payload"),
            (json!({"title": "x"}), "neither an \"alerts\" array"),
            (json!({"alerts": {}}), "\"alerts\" must be an array"),
            (json!({"version": "4", "alerts": []}), "version"),
            (json!({"alerts": [1]}), "alerts[0]"),
        ];
        for (body, want) in cases {
            let err = adapt(&body).unwrap_err();
            assert!(err.0.contains(want), "{body}: {err}");
        }
    }
}
