//! Comparison helpers beyond handlebars' own `eq ne gt gte lt lte and or not`: fallbacks and
//! containment.

use serde_json::Value;

use super::contains;
use crate::template::registry::{Call, Spec, spec};

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("default", 2, 2, default).variadic().missing_ok().doc(
        "the first value that is present, not null and not empty text; else the last",
        "{{default data.runbook \"none\"}}",
        "none",
    ),
    spec("contains", 2, 2, |c| {
        Ok(contains(c.arg(0), c.arg(1))?.into())
    })
    .doc(
        "`true` if text contains text, an array an element, or an object a key",
        "{{#if (contains data.subject \"PROBLEM\")}}down{{else}}up{{/if}}",
        "down",
    ),
];

/// The first value that is present, not null and not empty text; else the last one.
fn default(c: &Call<'_>) -> Result<Value, String> {
    let empty = |v: &Value| v.is_null() || v.as_str().is_some_and(str::is_empty);
    let chosen = c
        .args
        .iter()
        .find(|v| !empty(v))
        .or(c.args.last())
        .copied()
        .unwrap_or(&Value::Null);
    Ok(chosen.clone())
}
