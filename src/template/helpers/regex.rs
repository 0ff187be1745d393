//! Regular-expression helpers: handlebars-helpers' `toRegex` and `test`, and Siren's
//! `matchRegex` (was `match`) and `extract`. Patterns use the `regex` crate (linear time,
//! bounded size); JavaScript syntax it lacks (look-around, backreferences) is an error.

use serde_json::{Map, Value};

use super::{count, js, text};
use crate::template::registry::{Call, Spec, spec};

/// The marker key of a regex value made by `toRegex`.
pub(crate) const REGEX_KEY: &str = "\u{0}regex";

fn to_regex(c: &Call<'_>) -> Result<Value, String> {
    let source = js::string(c.arg(0));
    let flags = js::string(c.hash("flags"));
    if let Some(bad) = flags.chars().find(|f| !"gimsuy".contains(*f)) {
        return Err(format!(
            "invalid flags supplied to RegExp constructor '{bad}'"
        ));
    }
    c.regexes.get(&rust_pattern(&source, &flags))?;
    let mut m = Map::new();
    m.insert(
        REGEX_KEY.into(),
        Value::Array(vec![source.into(), flags.into()]),
    );
    Ok(Value::Object(m))
}

/// A JavaScript pattern and flags as a `regex` crate pattern.
fn rust_pattern(source: &str, flags: &str) -> String {
    let inline: String = flags.chars().filter(|f| "ims".contains(*f)).collect();
    if inline.is_empty() {
        source.to_string()
    } else {
        format!("(?{inline}){source}")
    }
}

/// The `/source/flags` text JavaScript prints for a regex made by `toRegex`.
pub(crate) fn regex_text(v: &Value) -> Option<String> {
    let parts = v.as_object()?.get(REGEX_KEY)?.as_array()?;
    let source = parts.first()?.as_str()?;
    Some(format!(
        "/{}/{}",
        if source.is_empty() { "(?:)" } else { source },
        parts.get(1)?.as_str()?
    ))
}

fn test(c: &Call<'_>) -> Result<Value, String> {
    let Some(s) = c.arg(0).as_str().filter(|s| !s.is_empty()) else {
        return Ok(false.into());
    };
    let parts = c
        .arg(1)
        .as_object()
        .and_then(|m| m.get(REGEX_KEY))
        .and_then(Value::as_array)
        .ok_or("regex.test is not a function: pass a regex made by toRegex")?;
    let source = parts.first().and_then(Value::as_str).unwrap_or("");
    let flags = parts.get(1).and_then(Value::as_str).unwrap_or("");
    Ok(c.regexes
        .get(&rust_pattern(source, flags))?
        .is_match(s)
        .into())
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("toRegex", 1, 1, to_regex).doc(
        "a regular expression from text (`flags=\"i\"`), for `test`",
        "{{toRegex \"^db\" flags=\"i\"}}",
        "/^db/i",
    ),
    spec("test", 2, 2, test).missing_ok().doc(
        "`true` when the regex made by `toRegex` matches `text`",
        "{{test data.host (toRegex \"^db-\\\\d$\")}}",
        "true",
    ),
    // Siren's own.
    spec("matchRegex", 2, 2, |c| {
        let re = c.regexes.get(&text(c.arg(1))?)?;
        Ok(re.is_match(&text(c.arg(0))?).into())
    })
    .doc(
        "Siren (was `match` before 0.2): `true` if the pattern matches anywhere in `text`",
        "{{matchRegex data.subject \"^(PROBLEM|RECOVERY)\"}}",
        "true",
    ),
    spec("extract", 2, 3, extract).doc(
        "Siren: the first capture group of the pattern in `text` (or the group named or numbered)",
        "{{extract data.subject \"on (\\\\S+)\"}}",
        "db-1",
    ),
];

fn extract(c: &Call<'_>) -> Result<Value, String> {
    let s = text(c.arg(0))?;
    let re = c.regexes.get(&text(c.arg(1))?)?;
    // No match is a missing value, as an undefined one in handlebars.js: it renders as
    // nothing, and `default` replaces it.
    let Some(caps) = re.captures(&s) else {
        return Ok(Value::Null);
    };
    let group = match c.args.get(2) {
        // No group asked for: the first group, or the whole match when there is none.
        None => caps.get(1).or_else(|| caps.get(0)),
        Some(Value::String(name)) if name.parse::<usize>().is_err() => {
            if !re.capture_names().flatten().any(|n| n == name) {
                return Err(format!("the pattern has no group named \"{name}\""));
            }
            caps.name(name)
        }
        Some(v) => {
            let index = count(v, "the group")?;
            if index >= re.captures_len() {
                return Err(format!("the pattern has no group {index}"));
            }
            caps.get(index)
        }
    };
    Ok(group.map_or(Value::Null, |m| m.as_str().into()))
}
