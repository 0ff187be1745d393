//! The match category of handlebars-helpers: glob patterns over file-like names, as
//! micromatch reads them (`*` within a segment, `**` across, `?`, `[…]`, `{a,b}`, `!` to
//! exclude; names starting with a dot only when the pattern says so).

use serde_json::Value;

use super::js;
use crate::template::registry::{Call, Spec, spec};

/// A glob as an anchored `regex` pattern.
fn glob_regex(glob: &str) -> String {
    let mut re = String::from("^");
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    let mut braces = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    i += 1;
                    re.push_str("(?:[^/]*/)*");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                let close = chars[i + 1..].iter().position(|&c| c == ']');
                match close {
                    Some(n) => {
                        let body: String = chars[i + 1..i + 1 + n].iter().collect();
                        let body = body
                            .strip_prefix('!')
                            .map_or(body.clone(), |b| format!("^{b}"));
                        re.push('[');
                        re.push_str(&body.replace('\\', "\\\\").replace('[', "\\["));
                        re.push(']');
                        i += n + 1;
                    }
                    None => re.push_str("\\["),
                }
            }
            '{' if chars[i..].contains(&'}') => {
                braces += 1;
                re.push_str("(?:");
            }
            ',' if braces > 0 => re.push('|'),
            '}' if braces > 0 => {
                braces -= 1;
                re.push(')');
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                re.push_str(&regex::escape(&chars[i].to_string()));
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    re.push('$');
    re
}

fn is_match(c: &Call<'_>, name: &str, glob: &str) -> Result<bool, String> {
    let name = name.strip_prefix("./").unwrap_or(name);
    // A segment starting with a dot matches only a pattern segment that does too.
    let dot_ok = |seg: &str| !seg.starts_with('.') || glob.split('/').any(|g| g.starts_with('.'));
    if !name.split('/').all(dot_ok) {
        return Ok(false);
    }
    Ok(c.regexes.get(&glob_regex(glob))?.is_match(name))
}

fn patterns(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(js::string).collect(),
        Value::String(s) => {
            let mut out = Vec::new();
            for part in s.split(',') {
                out.push(part.trim_start_matches(' ').to_string());
            }
            out
        }
        other => vec![js::string(other)],
    }
}

fn matches(c: &Call<'_>, name: &str, globs: &[String]) -> Result<bool, String> {
    let (neg, pos): (Vec<&String>, Vec<&String>) = globs.iter().partition(|g| g.starts_with('!'));
    let mut hit = pos.is_empty();
    for g in pos {
        if is_match(c, name, g)? {
            hit = true;
            break;
        }
    }
    for g in neg {
        if is_match(c, name, &g[1..])? {
            return Ok(false);
        }
    }
    Ok(hit)
}

fn select(c: &Call<'_>) -> Result<Value, String> {
    let names: Vec<String> = match c.arg(0) {
        Value::Array(items) => items.iter().map(js::string).collect(),
        Value::Null => vec![],
        other => vec![js::string(other)],
    };
    let globs = patterns(c.arg(1));
    let mut out = Vec::new();
    for n in names {
        if matches(c, &n, &globs)? {
            out.push(Value::from(n));
        }
    }
    Ok(Value::Array(out))
}

pub(in crate::template) const HELPERS: &[Spec] = &[
    spec("match", 2, 3, select).missing_ok().doc(
        "the names that match the glob patterns (text is split at commas)",
        "{{match (split \"a.log,b.txt,c.log\" \",\") \"*.log\"}}",
        "a.log,c.log",
    ),
    spec("isMatch", 2, 3, |c| {
        let globs = patterns(c.arg(1));
        Ok(matches(c, &js::string(c.arg(0)), &globs)?.into())
    })
    .missing_ok()
    .doc(
        "`true` when the name matches the glob",
        "{{isMatch \"db-1.log\" \"db-*.log\"}}",
        "true",
    ),
    spec("mm", 2, 3, select).missing_ok().doc(
        "`match` by its old name",
        "{{mm (split \"a.log,b.txt\" \",\") \"*.txt\"}}",
        "b.txt",
    ),
];
