//! Array helpers: joining, ends, length and membership.

use std::borrow::Cow;

use serde_json::Value;

use super::{contains, optional_text, text, type_name};
use crate::template::registry::{Call, Spec, spec};

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("join", 1, 2, join).doc(
        "the elements of an array joined with `separator` (default `, `)",
        "{{join data.tags \" + \"}}",
        "disk + prod",
    ),
    spec("first", 1, 1, |c| ends(c.arg(0), true)).doc(
        "the first element of an array (or character of text)",
        "{{first data.tags}}",
        "disk",
    ),
    spec("last", 1, 1, |c| ends(c.arg(0), false)).doc(
        "the last element of an array (or character of text)",
        "{{last data.tags}}",
        "prod",
    ),
    spec("length", 1, 1, length).doc(
        "the number of elements, characters or keys",
        "{{length data.tags}}",
        "2",
    ),
    spec("includes", 2, 2, |c| {
        Ok(contains(c.arg(0), c.arg(1))?.into())
    })
    .doc(
        "`true` if the array has the element",
        "{{includes data.tags \"prod\"}}",
        "true",
    ),
];

fn join(c: &Call<'_>) -> Result<Value, String> {
    let sep = optional_text(c, 1, ", ")?;
    match c.arg(0) {
        Value::Array(items) => {
            let parts = items
                .iter()
                .map(|v| match v {
                    Value::Array(_) | Value::Object(_) => Ok(Cow::Owned(v.to_string())),
                    other => text(other),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(parts.join(&sep).into())
        }
        other => Ok(text(other)?.into()),
    }
}

fn ends(v: &Value, first: bool) -> Result<Value, String> {
    match v {
        Value::Array(items) => {
            let item = if first { items.first() } else { items.last() };
            Ok(item.cloned().unwrap_or(Value::Null))
        }
        Value::String(s) => {
            let ch = if first {
                s.chars().next()
            } else {
                s.chars().next_back()
            };
            Ok(ch.map(String::from).unwrap_or_default().into())
        }
        Value::Null => Ok(Value::Null),
        other => Err(format!(
            "expects an array or text, got {}",
            type_name(other)
        )),
    }
}

fn length(c: &Call<'_>) -> Result<Value, String> {
    match c.arg(0) {
        Value::Array(items) => Ok(items.len().into()),
        Value::Object(map) => Ok(map.len().into()),
        Value::String(s) => Ok(s.chars().count().into()),
        Value::Null => Ok(0.into()),
        other => Err(format!(
            "expects an array, text or an object, got {}",
            type_name(other)
        )),
    }
}
