//! A rule's `id` key: `"$host/$service"` names the matchers' groups whose matches make the
//! third-party id. Parsed and checked once, at load; `adapt::email` expands it per message.

use crate::domain::{IdPart, IdTemplate, Matcher};

use super::ConfigError;
use super::key::Key;

/// Parses `source`: `$name` or `${name}` is the match of the group `name` of one of
/// `matchers`, `$$` is a dollar sign, anything else is text. Every group named must exist,
/// in exactly one matcher (two matchers with one group name would make the id ambiguous).
pub(super) fn parse(
    at: &Key,
    source: &str,
    matchers: &[Matcher],
) -> Result<IdTemplate, ConfigError> {
    let mut names: Vec<&str> = Vec::new();
    for m in matchers {
        for name in m.regex.capture_names().flatten() {
            if names.contains(&name) {
                return Err(at.err(format!(
                    "the group \"{name}\" is in two matchers of this rule; name them apart"
                )));
            }
            names.push(name);
        }
    }
    let parts = split(source).map_err(|e| at.err(e))?;
    let mut groups = 0;
    for part in &parts {
        if let IdPart::Group(name) = part {
            if !names.contains(&name.as_str()) {
                return Err(at.err(format!(
                    "names the group \"{name}\", which no matcher of this rule has (groups: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )));
            }
            groups += 1;
        }
    }
    if groups == 0 {
        return Err(
            at.err("names no group: use $name for the match of a group (?P<name>…) of a matcher")
        );
    }
    Ok(IdTemplate {
        source: source.to_string(),
        parts,
    })
}

/// The text and group references of `source`, in order.
fn split(source: &str) -> Result<Vec<IdPart>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = source;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            text.push('$');
            rest = after;
            continue;
        }
        let (name, after) = match rest.strip_prefix('{') {
            Some(braced) => {
                let end = braced
                    .find('}')
                    .ok_or("has \"${\" without its closing \"}\"")?;
                (&braced[..end], &braced[end + 1..])
            }
            None => {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        if name.is_empty() {
            return Err("has a \"$\" without a group name; write $$ for a dollar sign".into());
        }
        if !text.is_empty() {
            parts.push(IdPart::Text(std::mem::take(&mut text)));
        }
        parts.push(IdPart::Group(name.to_string()));
        rest = after;
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(IdPart::Text(text));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Field;
    use std::path::Path;

    fn matcher(pattern: &str) -> Matcher {
        Matcher {
            field: Field::Subject,
            regex: regex::Regex::new(pattern).unwrap(),
        }
    }

    #[test]
    fn templates_by_table() {
        let text = |s: &str| IdPart::Text(s.into());
        let group = |s: &str| IdPart::Group(s.into());
        let cases: &[(&str, Vec<IdPart>)] = &[
            ("$host", vec![group("host")]),
            (
                "monit/$host/$service",
                vec![text("monit/"), group("host"), text("/"), group("service")],
            ),
            ("${host}x$$", vec![group("host"), text("x$")]),
            ("a-$host.b", vec![text("a-"), group("host"), text(".b")]),
        ];
        for (source, want) in cases {
            assert_eq!(&split(source).unwrap(), want, "{source}");
        }
        for bad in ["$", "a$ b", "${host"] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_must_exist_once() {
        let file = Path::new("t.toml");
        let at = Key::root(file).at("id");
        let ms = [
            matcher("(?P<host>\\S+) (?P<service>\\S+)"),
            matcher("(?P<kind>\\w+)"),
        ];
        assert!(parse(&at, "$host/$service/$kind", &ms).is_ok());
        let err = parse(&at, "$host/$nope", &ms).unwrap_err().to_string();
        assert!(err.contains("\"nope\", which no matcher"), "{err}");
        let err = parse(&at, "plain", &ms).unwrap_err().to_string();
        assert!(err.contains("names no group"), "{err}");
        let twice = [matcher("(?P<host>a)"), matcher("(?P<host>b)")];
        let err = parse(&at, "$host", &twice).unwrap_err().to_string();
        assert!(err.contains("in two matchers"), "{err}");
    }
}
