//! The `webhook` integration type: a generic, PagerTree-compatible JSON body. `event_type`
//! (`create`, `acknowledge`, `resolve`) is the action, `Id` the third-party id, and `Title`,
//! `Description`, `urgency` are optional. Keys and the values of `event_type` and `urgency` are
//! case-insensitive. `data` is the body as sent, plus the canonical key names (`Title`, ...)
//! when the sender spelled them another way, so the default templates find them.

use serde_json::{Map, Value};

use super::{AdaptError, Event, random_id};
use crate::domain::{Action, Urgency};

/// The keys the adapter reads, spelled as the default templates and PagerTree spell them.
const CANONICAL_KEYS: [&str; 5] = ["event_type", "Id", "Title", "Description", "urgency"];

const URGENCIES: &str = "low, medium, high, critical";

pub fn adapt(body: &Value) -> Result<Event, AdaptError> {
    let object = body.as_object().ok_or_else(|| {
        AdaptError(format!(
            "the body must be a JSON object, not {}",
            kind(body)
        ))
    })?;
    let action = action(lookup(object, "event_type"))?;
    let thirdparty_id = thirdparty_id(lookup(object, "Id"))?.unwrap_or_else(random_id);
    let urgency = urgency(lookup(object, "urgency"))?;

    let mut data = object.clone();
    for key in CANONICAL_KEYS {
        if !data.contains_key(key)
            && let Some(value) = lookup(object, key)
        {
            data.insert(key.to_string(), value.clone());
        }
    }
    Ok(Event {
        action,
        thirdparty_id,
        data: Value::Object(data),
        urgency,
        rule: None,
    })
}

/// The value of `key`, matched case-insensitively; an exact match wins over other spellings,
/// and among those the first in key order wins.
fn lookup<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn action(value: Option<&Value>) -> Result<Action, AdaptError> {
    let event_type = match value {
        None | Some(Value::Null) => return Ok(Action::Other),
        Some(Value::String(s)) => s.trim().to_ascii_lowercase(),
        Some(other) => {
            return Err(AdaptError(format!(
                "event_type must be a string (create, acknowledge or resolve), not {}",
                kind(other)
            )));
        }
    };
    Ok(match event_type.as_str() {
        "create" => Action::Create,
        "acknowledge" => Action::Acknowledge,
        "resolve" => Action::Resolve,
        _ => Action::Other,
    })
}

/// `Id` as text; `None` when absent, null or blank.
fn thirdparty_id(value: Option<&Value>) -> Result<Option<String>, AdaptError> {
    let id = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(AdaptError(format!(
                "Id must be a string or a number, not {}",
                kind(other)
            )));
        }
    };
    Ok(Some(id).filter(|id| !id.trim().is_empty()))
}

/// `urgency`; `None` when absent, null or blank.
fn urgency(value: Option<&Value>) -> Result<Option<Urgency>, AdaptError> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().to_ascii_lowercase(),
        Some(other) => {
            return Err(AdaptError(format!(
                "urgency must be a string ({URGENCIES}), not {}",
                kind(other)
            )));
        }
    };
    match text.as_str() {
        "" => Ok(None),
        "low" => Ok(Some(Urgency::Low)),
        "medium" => Ok(Some(Urgency::Medium)),
        "high" => Ok(Some(Urgency::High)),
        "critical" => Ok(Some(Urgency::Critical)),
        _ => Err(AdaptError(format!(
            "unknown urgency {text:?}: allowed values are {URGENCIES}"
        ))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> Value {
        json!({
            "event_type": "create",
            "Id": "example-id-123",
            "Title": "Example Incident Title",
            "Description": "Example Incident Description",
            "extra": "I want to use this data"
        })
    }

    #[test]
    fn pagertree_example_payload() {
        let body = example();
        let e = adapt(&body).unwrap();
        assert_eq!(e.action, Action::Create);
        assert_eq!(e.thirdparty_id, "example-id-123");
        assert_eq!(e.urgency, None);
        assert_eq!(e.data, body, "data is the body as sent");
        assert_eq!(e.data["extra"], "I want to use this data");
    }

    #[test]
    fn action_by_table() {
        let cases = [
            (json!("create"), Action::Create),
            (json!("CREATE"), Action::Create),
            (json!(" Create "), Action::Create),
            (json!("acknowledge"), Action::Acknowledge),
            (json!("Acknowledge"), Action::Acknowledge),
            (json!("resolve"), Action::Resolve),
            (json!("RESOLVE"), Action::Resolve),
            (json!("resolved"), Action::Other),
            (json!("triggered"), Action::Other),
            (json!(""), Action::Other),
            (Value::Null, Action::Other),
        ];
        for (event_type, want) in cases {
            let body = json!({"event_type": event_type, "Id": "x"});
            assert_eq!(adapt(&body).unwrap().action, want, "{event_type}");
        }
        assert_eq!(adapt(&json!({"Id": "x"})).unwrap().action, Action::Other);
    }

    #[test]
    fn non_string_event_type_is_an_error() {
        for event_type in [json!(1), json!(true), json!(["create"]), json!({})] {
            let err = adapt(&json!({ "event_type": event_type })).unwrap_err();
            assert!(err.0.contains("event_type"), "{err}");
        }
    }

    #[test]
    fn keys_are_case_insensitive() {
        let body = json!({
            "EVENT_TYPE": "Resolve",
            "id": "abc",
            "title": "lower title",
            "DESCRIPTION": "upper description",
            "Urgency": "HIGH",
            "extra": 1
        });
        let e = adapt(&body).unwrap();
        assert_eq!(e.action, Action::Resolve);
        assert_eq!(e.thirdparty_id, "abc");
        assert_eq!(e.urgency, Some(Urgency::High));
        // The canonical names are there for the default templates...
        assert_eq!(e.data["Title"], "lower title");
        assert_eq!(e.data["Description"], "upper description");
        assert_eq!(e.data["Id"], "abc");
        assert_eq!(e.data["event_type"], "Resolve");
        assert_eq!(e.data["urgency"], "HIGH");
        // ...and everything sent is kept as sent.
        for (key, value) in body.as_object().unwrap() {
            assert_eq!(&e.data[key], value, "{key}");
        }
    }

    #[test]
    fn exact_key_wins_over_other_spellings() {
        let body = json!({"Title": "exact", "title": "other", "TITLE": "upper", "Id": "1"});
        let e = adapt(&body).unwrap();
        assert_eq!(e.data["Title"], "exact");
        assert_eq!(e.data["title"], "other");
        assert_eq!(e.data["TITLE"], "upper");
    }

    #[test]
    fn canonical_keys_are_not_invented() {
        let e = adapt(&json!({"event_type": "create"})).unwrap();
        assert_eq!(e.data, json!({"event_type": "create"}));
    }

    #[test]
    fn thirdparty_id_by_table() {
        let cases = [
            (json!("abc"), Some("abc")),
            (json!(42), Some("42")),
            (json!(-7), Some("-7")),
            (json!(1.5), Some("1.5")),
            (json!(""), None),
            (json!("   "), None),
            (Value::Null, None),
        ];
        for (id, want) in cases {
            let e = adapt(&json!({"event_type": "create", "Id": id})).unwrap();
            match want {
                Some(want) => assert_eq!(e.thirdparty_id, want, "{id}"),
                None => assert_eq!(e.thirdparty_id.len(), 36, "a random id for {id}"),
            }
        }
    }

    #[test]
    fn missing_id_is_random() {
        let body = json!({"event_type": "create", "Title": "t"});
        let a = adapt(&body).unwrap();
        let b = adapt(&body).unwrap();
        assert_eq!(a.thirdparty_id.len(), 36);
        assert_ne!(a.thirdparty_id, b.thirdparty_id);
        assert!(
            a.data.get("Id").is_none(),
            "the random id is not put in data"
        );
    }

    #[test]
    fn bad_id_type_is_an_error() {
        for id in [json!(true), json!([1]), json!({"a": 1})] {
            let err = adapt(&json!({"event_type": "create", "Id": id})).unwrap_err();
            assert!(err.0.contains("Id"), "{err}");
        }
    }

    #[test]
    fn urgency_by_table() {
        let cases = [
            (json!("low"), Ok(Some(Urgency::Low))),
            (json!("Medium"), Ok(Some(Urgency::Medium))),
            (json!("HIGH"), Ok(Some(Urgency::High))),
            (json!("critical"), Ok(Some(Urgency::Critical))),
            (json!(""), Ok(None)),
            (Value::Null, Ok(None)),
            (json!("urgent"), Err(())),
            (json!("p1"), Err(())),
            (json!(3), Err(())),
        ];
        for (urgency, want) in cases {
            let got = adapt(&json!({"event_type": "create", "urgency": urgency}));
            match (got, want) {
                (Ok(e), Ok(want)) => assert_eq!(e.urgency, want, "{urgency}"),
                (Err(err), Err(())) => {
                    assert!(err.0.contains("urgency"), "{err}");
                    assert!(err.0.contains(URGENCIES), "names the allowed values: {err}");
                }
                (got, _) => panic!("{urgency}: unexpected {got:?}"),
            }
        }
        assert_eq!(adapt(&example()).unwrap().urgency, None);
    }

    #[test]
    fn non_object_is_an_error() {
        for body in [
            json!([example()]),
            json!("create"),
            json!(1),
            json!(null),
            json!(true),
        ] {
            let err = adapt(&body).unwrap_err();
            assert!(err.0.contains("must be a JSON object"), "{err}");
        }
    }

    #[test]
    fn title_and_description_are_optional() {
        let e = adapt(&json!({"event_type": "create", "Id": "1"})).unwrap();
        assert_eq!(e.action, Action::Create);
        assert!(e.data.get("Title").is_none());
        assert!(e.data.get("Description").is_none());
    }

    #[test]
    fn samples() {
        let create: Value =
            serde_json::from_str(include_str!("../../samples/webhook-create.json")).unwrap();
        assert_eq!(create, example(), "the sample is the documented example");
        let e = adapt(&create).unwrap();
        assert_eq!(e.action, Action::Create);
        assert_eq!(e.thirdparty_id, "example-id-123");
        assert_eq!(e.data["Title"], "Example Incident Title");
        assert_eq!(e.data["extra"], "I want to use this data");

        let resolve: Value =
            serde_json::from_str(include_str!("../../samples/webhook-resolve.json")).unwrap();
        let e = adapt(&resolve).unwrap();
        assert_eq!(e.action, Action::Resolve);
        assert_eq!(e.thirdparty_id, "example-id-123");
    }
}
