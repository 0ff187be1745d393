//! What an HTTP sender may send besides a JSON object, read as PagerTree (Rails) reads it: a
//! form-encoded body (`application/x-www-form-urlencoded`) and query-string parameters. Both
//! become one JSON object, so the adapters see one shape. Rails's brackets make arrays
//! (`Tags[]=a&Tags[]=b`) and objects (`Meta[team]=db`); a repeated plain key keeps its last
//! value. Pure: no I/O.

use serde_json::{Map, Value};

/// Brackets nest at most this deep (`a[b][c]...`); deeper keys are kept whole, as text.
const DEPTH_MAX: usize = 8;

/// Why a body cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Neither JSON nor a form: the sender gets 415.
    #[error(
        "content type \"{0}\" is not supported; send application/json or application/x-www-form-urlencoded"
    )]
    UnsupportedMediaType(String),
    /// Said to be JSON and is not: the sender gets 400.
    #[error("the body is not valid JSON: {0}")]
    BadJson(String),
}

/// The body by its content type: JSON (also `+json` types, and when no type is given) or a
/// form read into an object.
pub fn decode(content_type: Option<&str>, body: &[u8]) -> Result<Value, DecodeError> {
    let essence = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|| "application/json".into());
    if essence == "application/x-www-form-urlencoded" {
        return Ok(Value::Object(parse(body)));
    }
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(DecodeError::UnsupportedMediaType(essence));
    }
    serde_json::from_slice(body).map_err(|e| DecodeError::BadJson(e.to_string()))
}

/// `body` with the query string's parameters added where the body does not set them (the
/// body wins, as in Rails). `token` is left out: it is the integration's secret, not data.
/// A body that is not an object is returned unchanged.
pub fn with_query(body: Value, query: Option<&str>) -> Value {
    match (body, query) {
        (Value::Object(mut object), Some(query)) => {
            for (key, value) in parse(query.as_bytes()) {
                if key != "token" && !object.contains_key(&key) {
                    object.insert(key, value);
                }
            }
            Value::Object(object)
        }
        (body, _) => body,
    }
}

/// `a=1&b[]=2&c[d]=3` -> `{"a":"1","b":["2"],"c":{"d":"3"}}`.
pub fn parse(form: &[u8]) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in form_urlencoded::parse(form) {
        let path = segments(&key);
        insert(&mut out, &path, Value::String(value.into_owned()));
    }
    out
}

/// `a[b][]` -> `["a", "b", ""]`; a key whose brackets do not close, or nest too deep, is one
/// segment.
fn segments(key: &str) -> Vec<&str> {
    let Some(open) = key.find('[').filter(|&i| i > 0) else {
        return vec![key];
    };
    let mut out = vec![&key[..open]];
    let mut rest = &key[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return vec![key];
        };
        out.push(&inner[..close]);
        rest = &inner[close + 1..];
    }
    if !rest.is_empty() || out.len() > DEPTH_MAX {
        return vec![key];
    }
    out
}

fn insert(object: &mut Map<String, Value>, path: &[&str], value: Value) {
    let (first, rest) = path.split_first().expect("a key has at least one segment");
    match rest.first() {
        None => {
            object.insert(first.to_string(), value);
        }
        // `a[]=x`: append to the array at `a` (a scalar there becomes an array).
        Some(&"") => {
            let slot = object
                .entry(first.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            if let Value::Array(items) = slot {
                items.push(value);
            }
        }
        Some(_) => {
            let slot = object
                .entry(first.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(inner) = slot {
                insert(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forms_by_table() {
        let cases = [
            (
                "event_type=create&Id=42",
                json!({"event_type": "create", "Id": "42"}),
            ),
            (
                "Title=Disk+full&x=%C3%A9",
                json!({"Title": "Disk full", "x": "é"}),
            ),
            ("a=1&a=2", json!({"a": "2"})),
            ("Tags[]=db&Tags[]=prod", json!({"Tags": ["db", "prod"]})),
            (
                "Meta[team]=db&Meta[incident]=true",
                json!({"Meta": {"team": "db", "incident": "true"}}),
            ),
            (
                "a[b][c]=1&a[b][d][]=2",
                json!({"a": {"b": {"c": "1", "d": ["2"]}}}),
            ),
            ("a[b=1", json!({"a[b": "1"})),
            ("[x]=1&y[z]w=2", json!({"[x]": "1", "y[z]w": "2"})),
            ("a=1&a[]=2", json!({"a": ["2"]})),
            ("", json!({})),
            ("flag", json!({"flag": ""})),
        ];
        for (form, want) in cases {
            assert_eq!(Value::Object(parse(form.as_bytes())), want, "{form}");
        }
        let deep = format!("a{}", "[b]".repeat(DEPTH_MAX));
        let form = format!("{deep}=1");
        assert!(
            parse(form.as_bytes()).contains_key(&deep),
            "too deep stays one key"
        );
    }

    #[test]
    fn decode_by_content_type() {
        assert_eq!(decode(None, b"{\"a\":1}"), Ok(json!({"a": 1})));
        assert_eq!(
            decode(Some("application/json; charset=utf-8"), b"[1]"),
            Ok(json!([1]))
        );
        assert_eq!(decode(Some("application/vnd.x+json"), b"1"), Ok(json!(1)));
        assert_eq!(
            decode(Some("Application/X-WWW-Form-Urlencoded"), b"a=1"),
            Ok(json!({"a": "1"}))
        );
        assert!(matches!(
            decode(Some("text/plain"), b"a"),
            Err(DecodeError::UnsupportedMediaType(t)) if t == "text/plain"
        ));
        assert!(matches!(decode(None, b"{"), Err(DecodeError::BadJson(_))));
    }

    #[test]
    fn query_parameters_fill_in_but_the_body_and_token_win() {
        let body = json!({"event_type": "create", "Id": "from-body"});
        let merged = with_query(body, Some("Id=from-query&Title=T&token=secret&Tags[]=a"));
        assert_eq!(
            merged,
            json!({"event_type": "create", "Id": "from-body", "Title": "T", "Tags": ["a"]})
        );
        assert_eq!(with_query(json!([1]), Some("a=1")), json!([1]));
        assert_eq!(with_query(json!({}), None), json!({}));
    }
}
