//! Regular-expression helpers over the registry's regex cache (linear-time, bounded patterns).

use serde_json::Value;

use super::{count, text};
use crate::template::registry::{Call, Spec, spec};

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("match", 2, 2, |c| {
        let re = c.regexes.get(&text(c.arg(1))?)?;
        Ok(re.is_match(&text(c.arg(0))?).into())
    })
    .doc(
        "`true` if the pattern matches anywhere in `text`",
        "{{match data.subject \"^(PROBLEM|RECOVERY)\"}}",
        "true",
    ),
    spec("extract", 2, 3, extract).doc(
        "the first capture group of the pattern in `text` (or the group named or numbered)",
        "{{extract data.subject \"on (\\\\S+)\"}}",
        "db-1",
    ),
];

fn extract(c: &Call<'_>) -> Result<Value, String> {
    let s = text(c.arg(0))?;
    let re = c.regexes.get(&text(c.arg(1))?)?;
    let Some(caps) = re.captures(&s) else {
        return Ok("".into());
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
    Ok(group.map_or("", |m| m.as_str()).into())
}
