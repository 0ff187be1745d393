//! String helpers: case, trimming, truncating, replacing, splitting and prefix tests.

use serde_json::Value;

use super::{count, optional_text, text};
use crate::template::registry::{Call, Spec, spec};

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("upper", 1, 1, |c| Ok(text(c.arg(0))?.to_uppercase().into())).doc(
        "`text` in upper case",
        "{{upper data.host}}",
        "DB-1",
    ),
    spec("lower", 1, 1, |c| Ok(text(c.arg(0))?.to_lowercase().into())).doc(
        "`text` in lower case",
        "{{lower data.labels.alertname}}",
        "diskfull",
    ),
    spec("trim", 1, 1, |c| Ok(text(c.arg(0))?.trim().into())).doc(
        "`text` without leading and trailing whitespace",
        "{{trim \"  db-1  \"}}",
        "db-1",
    ),
    spec("truncate", 2, 3, truncate).doc(
        "at most `length` characters of `text`, ending with `suffix` when cut",
        "{{truncate data.subject 12 \"…\"}}",
        "PROBLEM: Di…",
    ),
    spec("replace", 3, 3, replace).doc(
        "`text` with every `from` replaced by `to`",
        "{{replace data.host \"-\" \"_\"}}",
        "db_1",
    ),
    spec("split", 2, 2, split).doc(
        "`text` cut at every `separator`, as an array",
        "{{first (split data.labels.instance \":\")}}",
        "db-1",
    ),
    spec("startsWith", 2, 2, |c| {
        Ok(text(c.arg(0))?.starts_with(text(c.arg(1))?.as_ref()).into())
    })
    .doc(
        "`true` if `text` starts with `prefix`",
        "{{startsWith data.subject \"PROBLEM\"}}",
        "true",
    ),
    spec("endsWith", 2, 2, |c| {
        Ok(text(c.arg(0))?.ends_with(text(c.arg(1))?.as_ref()).into())
    })
    .doc(
        "`true` if `text` ends with `suffix`",
        "{{endsWith data.host \"-1\"}}",
        "true",
    ),
];

fn truncate(c: &Call<'_>) -> Result<Value, String> {
    let s = text(c.arg(0))?;
    let limit = count(c.arg(1), "the length")?;
    let suffix = optional_text(c, 2, "")?;
    if s.chars().count() <= limit {
        return Ok(s.into());
    }
    let keep = limit.saturating_sub(suffix.chars().count());
    let out: String = s
        .chars()
        .take(keep)
        .chain(suffix.chars())
        .take(limit)
        .collect();
    Ok(out.into())
}

fn replace(c: &Call<'_>) -> Result<Value, String> {
    let s = text(c.arg(0))?;
    let from = text(c.arg(1))?;
    if from.is_empty() {
        return Ok(s.into());
    }
    Ok(s.replace(from.as_ref(), &text(c.arg(2))?).into())
}

fn split(c: &Call<'_>) -> Result<Value, String> {
    let s = text(c.arg(0))?;
    let sep = text(c.arg(1))?;
    let parts: Vec<Value> = if s.is_empty() {
        Vec::new()
    } else if sep.is_empty() {
        s.chars().map(|ch| Value::from(ch.to_string())).collect()
    } else {
        s.split(sep.as_ref()).map(Value::from).collect()
    };
    Ok(Value::Array(parts))
}
