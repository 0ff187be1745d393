//! The `webhook` integration type: a generic body read as PagerTree's `webhook/v3` reads it.
//! `event_type` (`create`, `acknowledge`, `resolve`) is the action, `Id` the third-party id,
//! `dedup_keys` further ids that aggregate, and `Title`, `Description`, `urgency`, `Tags` and
//! `Meta` are optional. Lenient where PagerTree is: keys ignore case (the lower-case spelling
//! wins), `urgency` is found anywhere in its value (`"P1 - critical"`) and falls back to the
//! integration's when there is none, an `event_type` that is not one of the three (or not a
//! string) is `other`, and `Id` may be any scalar. `data` is the body as sent, plus the
//! canonical key names (`Title`, ...) when the sender spelled them another way, so the default
//! templates find them.

use serde_json::{Map, Value};

use super::{AdaptError, Event, dedup_keys, random_id};
use crate::domain::{Action, Urgency};

/// The keys the adapter and the default templates read, spelled as PagerTree documents them.
const CANONICAL_KEYS: [&str; 8] = [
    "event_type",
    "Id",
    "Title",
    "Description",
    "urgency",
    "Tags",
    "Meta",
    "dedup_keys",
];

pub fn adapt(body: &Value) -> Result<Event, AdaptError> {
    let object = body.as_object().ok_or_else(|| {
        AdaptError(format!(
            "the body must be a JSON object, not {}",
            kind(body)
        ))
    })?;
    let action = action(lookup(object, "event_type"));
    let thirdparty_id = thirdparty_id(lookup(object, "Id"))?.unwrap_or_else(random_id);
    let urgency = urgency(lookup(object, "urgency"));
    let dedup_keys = extra_ids(lookup(object, "dedup_keys"), &thirdparty_id);

    let mut data = object.clone();
    for key in CANONICAL_KEYS {
        if !data.contains_key(key)
            && let Some(value) = lookup(object, key)
        {
            data.insert(key.to_string(), value.clone());
        }
    }
    Ok(Event {
        urgency,
        dedup_keys,
        ..Event::new(action, thirdparty_id, Value::Object(data))
    })
}

/// The value of `key`, matched ignoring case: the lower-case spelling wins, then the spelling
/// given, then the first other spelling in the order sent.
fn lookup<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object
        .get(&key.to_ascii_lowercase())
        .or_else(|| object.get(key))
        .or_else(|| {
            object
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
}

/// A scalar as text, as Ruby's `to_s` would give it; `None` for null, arrays and objects.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// `create`, `acknowledge` or `resolve`, ignoring case and spaces; anything else, including a
/// value that is not a string, is `other` (logged, no alert change).
fn action(value: Option<&Value>) -> Action {
    let event_type = value
        .and_then(scalar_text)
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match event_type.as_str() {
        "create" => Action::Create,
        "acknowledge" => Action::Acknowledge,
        "resolve" => Action::Resolve,
        _ => Action::Other,
    }
}

/// `Id` as text (a string, number or boolean); `None` when absent, null or blank.
fn thirdparty_id(value: Option<&Value>) -> Result<Option<String>, AdaptError> {
    let id = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(v @ (Value::Array(_) | Value::Object(_))) => {
            return Err(AdaptError(format!(
                "Id must be a string, a number or a boolean, not {}",
                kind(v)
            )));
        }
        Some(v) => scalar_text(v).unwrap_or_default(),
    };
    Ok(Some(id).filter(|id| !id.trim().is_empty()))
}

/// The first of `low`, `medium`, `high`, `critical` found in the value, ignoring case (so
/// `"P1 - Critical"` is critical); `None`, and so the integration's urgency, otherwise.
fn urgency(value: Option<&Value>) -> Option<Urgency> {
    let text = value.and_then(scalar_text)?.to_ascii_lowercase();
    [
        ("low", Urgency::Low),
        ("medium", Urgency::Medium),
        ("high", Urgency::High),
        ("critical", Urgency::Critical),
    ]
    .into_iter()
    .filter_map(|(word, urgency)| text.find(word).map(|at| (at, urgency)))
    .min_by_key(|(at, _)| *at)
    .map(|(_, urgency)| urgency)
}

/// `dedup_keys`: one scalar or an array of them, as text.
fn extra_ids(value: Option<&Value>, thirdparty_id: &str) -> Vec<String> {
    let texts: Vec<String> = match value {
        Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
        Some(v) => scalar_text(v).into_iter().collect(),
        None => Vec::new(),
    };
    dedup_keys(texts.iter().map(String::as_str), thirdparty_id)
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

    /// Issue 14: PagerTree reads `event_type.to_s`, so a value that is not a string is
    /// `other` (logged, 202), not a 400 as before.
    #[test]
    fn non_string_event_type_is_other() {
        for event_type in [json!(1), json!(true), json!(["create"]), json!({})] {
            let e = adapt(&json!({ "event_type": event_type, "Id": "x" })).unwrap();
            assert_eq!(e.action, Action::Other, "{event_type}");
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
    fn the_lower_case_spelling_wins() {
        let e = adapt(
            &json!({"Id": "A", "id": "b", "EVENT_TYPE": "create", "event_type": "resolve",
                              "URGENCY": "low", "urgency": "high"}),
        )
        .unwrap();
        assert_eq!(e.thirdparty_id, "b");
        assert_eq!(e.action, Action::Resolve);
        assert_eq!(e.urgency, Some(Urgency::High));
        // Then the documented spelling, then the first other one.
        let e = adapt(&json!({"ID": "X", "Id": "Y"})).unwrap();
        assert_eq!(e.thirdparty_id, "Y");
        let e = adapt(&json!({"TITLE": "upper", "title": "lower"})).unwrap();
        assert_eq!(
            e.data["Title"], "lower",
            "the canonical copy for the default template"
        );
    }

    #[test]
    fn tags_meta_and_dedup_keys_are_kept() {
        let e = adapt(&json!({
            "event_type": "create", "id": "main",
            "tags": ["db", "prod"], "meta": {"incident": true, "team": "db"},
            "Dedup_Keys": ["other-1", "", 42, "main", "other-1", ["nested"]]
        }))
        .unwrap();
        assert_eq!(e.data["Tags"], json!(["db", "prod"]));
        assert_eq!(e.data["Meta"]["team"], "db");
        assert_eq!(e.data["tags"], json!(["db", "prod"]), "as sent too");
        assert_eq!(
            e.dedup_keys,
            ["other-1", "42"],
            "text, without blanks, repeats or the id"
        );
        let e = adapt(&json!({"Id": "a", "dedup_keys": "single"})).unwrap();
        assert_eq!(e.dedup_keys, ["single"]);
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
            (json!(true), Some("true")),
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
        for id in [json!([1]), json!({"a": 1})] {
            let err = adapt(&json!({"event_type": "create", "Id": id})).unwrap_err();
            assert!(err.0.contains("Id"), "{err}");
        }
    }

    /// Issue 14: the urgency is found anywhere in the value, and an unknown one falls back to
    /// the integration's (`None` here) instead of a 400.
    #[test]
    fn urgency_by_table() {
        let cases = [
            (json!("low"), Some(Urgency::Low)),
            (json!("Medium"), Some(Urgency::Medium)),
            (json!("HIGH"), Some(Urgency::High)),
            (json!("critical"), Some(Urgency::Critical)),
            (json!("P1 - Critical"), Some(Urgency::Critical)),
            (json!("sev: high (was low)"), Some(Urgency::High)),
            (json!(""), None),
            (Value::Null, None),
            (json!("urgent"), None),
            (json!("p1"), None),
            (json!(3), None),
            (json!(["high"]), None),
        ];
        for (urgency, want) in cases {
            let e = adapt(&json!({"event_type": "create", "urgency": urgency})).unwrap();
            assert_eq!(e.urgency, want, "{urgency}");
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
