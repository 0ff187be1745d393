//! The helper library, one file per category (handlebars-helpers' categories, Siren's own
//! helpers beside them), and the conversions Siren's own helpers share: text, numbers and
//! counts read from template arguments, with errors that say what was expected.

use std::borrow::Cow;

use serde_json::Value;

use super::registry::Call;

pub(super) mod array;
pub(super) mod builtins;
pub(super) mod collection;
pub(super) mod comparison;
pub(super) mod date;
pub(super) mod html;
pub(super) mod inflection;
pub(super) mod js;
pub(super) mod markdown;
pub(super) mod matching;
pub(super) mod math;
pub(super) mod misc;
pub(super) mod number;
pub(super) mod object;
pub(super) mod regex;
pub(super) mod string;
mod transform;
pub(super) mod url;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Text, numbers and booleans as text; nothing as empty text.
fn text(v: &Value) -> Result<Cow<'_, str>, String> {
    match v {
        Value::String(s) => Ok(Cow::Borrowed(s)),
        Value::Number(n) => Ok(Cow::Owned(n.to_string())),
        Value::Bool(b) => Ok(Cow::Owned(b.to_string())),
        Value::Null => Ok(Cow::Borrowed("")),
        other => Err(format!("expects text, got {}", type_name(other))),
    }
}

fn optional_text<'a>(c: &'a Call<'_>, i: usize, default: &'a str) -> Result<Cow<'a, str>, String> {
    match c.args.get(i) {
        Some(v) => text(v),
        None => Ok(Cow::Borrowed(default)),
    }
}

fn count(v: &Value, what: &str) -> Result<usize, String> {
    match number(v)? {
        Num::Int(n) if n >= 0 => usize::try_from(n).map_err(|e| e.to_string()),
        _ => Err(format!(
            "{what} must be a whole number of 0 or more, got {v}"
        )),
    }
}

/// Equality that lets `"5"` match `5` (alert data carries numbers as text often enough).
fn same(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    scalar(a) && scalar(b) && text(a).ok() == text(b).ok()
}

/// Text contains text; an array contains an element; an object contains a key.
fn contains(haystack: &Value, needle: &Value) -> Result<bool, String> {
    Ok(match haystack {
        Value::Array(items) => items.iter().any(|v| same(v, needle)),
        Value::Object(map) => map.contains_key(text(needle)?.as_ref()),
        Value::Null => false,
        other => text(other)?.contains(text(needle)?.as_ref()),
    })
}

#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn float(self) -> f64 {
        match self {
            Num::Int(n) => n as f64,
            Num::Float(f) => f,
        }
    }
}

/// Numbers, and text that reads as one (`"42"`, `" 1.5 "`).
fn number(v: &Value) -> Result<Num, String> {
    let from_text = |s: &str| {
        let s = s.trim();
        s.parse::<i64>().map(Num::Int).ok().or_else(|| {
            s.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && !s.contains(char::is_alphabetic))
                .map(Num::Float)
        })
    };
    let n = match v {
        Value::Number(n) => n
            .as_i64()
            .map(Num::Int)
            .or_else(|| n.as_f64().map(Num::Float)),
        Value::String(s) => from_text(s),
        _ => None,
    };
    n.ok_or_else(|| match v {
        Value::String(s) => format!("expects a number, got \"{s}\""),
        other => format!("expects a number, got {}", type_name(other)),
    })
}
